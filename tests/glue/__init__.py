"""Tests of the Twisted glue: stream transports, endpoints, conformance, applications."""
