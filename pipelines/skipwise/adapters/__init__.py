"""Glue to outside systems, one package each."""
