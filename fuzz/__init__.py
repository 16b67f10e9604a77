"""Atheris harnesses for kwik_twisted; see docs/fuzzing.rst and fuzz/README.md."""
