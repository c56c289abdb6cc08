"""The skipwise benchmark: `python -m bench.run` (see bench/run.py)."""
