"""The sans-I/O core of kwik_twisted."""
