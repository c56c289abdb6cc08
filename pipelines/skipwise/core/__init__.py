"""The pure core: partition keys, fingerprints and manifests, code versions, observed reads, plans,
cost vectors, prices, budgets, errors.

Standard library only, and imports nothing else of skipwise (tests/unit/test_core_purity.py,
tests/unit/test_layers.py): every other layer may import it.
"""
