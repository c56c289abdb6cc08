"""Storage: atomic partition writes, manifests and kept versions, the stat cache, the cost ledger,
metered I/O, the input cache, and the same on object storage (bucket, leases, object ledger).

Imports the core and itself at module level (tests/unit/test_layers.py); S3 clients inside functions.
"""
