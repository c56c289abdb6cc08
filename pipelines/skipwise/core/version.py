"""The library's version (the snapshot of a graph and the run records name it)."""

__version__ = "0.2.0"
