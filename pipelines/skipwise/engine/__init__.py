"""The incremental engine: versions, the planner, the executor, inputs and accounting.

`project.Project` is one loaded project: it resolves input versions, plans (its `planner`) and
materializes (its `execution`) only what changed, handed its stores (`skipwise.store.backends`). Around it: the
registry of asset bodies (`bodies`), the partition being computed (`computing`), cost metering
(`metering`; the OS's figures in `usage`; the process's run record in `processmeter`), the
collector while a command loads (`collector`), observed reads as keyed digests (`observations`),
progress (`progress`), the cache's self-audit (`verifying`), and loading a project from its
definitions (`loading`).

Knows nothing of Dagster: imports the layers below it (core, formats, store, adapters.dvc/git,
project, sources) and itself (tests/unit/test_layers.py).
"""
