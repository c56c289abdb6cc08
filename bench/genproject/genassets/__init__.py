"""A generated project for the benchmark: one DVC-tracked raw source of synthetic events, one daily feature asset."""
