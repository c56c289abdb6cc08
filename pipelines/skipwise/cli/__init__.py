"""The `skipwise` command: the parser and plan/status/materialize (`main`), one module per other
verb (`cost`, `gc`, `models`, `cache`, `verify`), and what they share (`console`).

The top layer: may import every other.
"""
