"""Storage: atomic partition writes, manifests, the cost ledger, metered I/O."""
