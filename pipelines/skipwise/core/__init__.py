"""The pure core: fingerprints, plans, cost vectors, prices, budgets. Standard library only."""
