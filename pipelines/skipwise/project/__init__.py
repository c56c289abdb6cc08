"""The user's project as code: where its root is and which module holds its definitions (`root`),
the graph snapshot that lets `plan` and `status` answer without importing Dagster (`snapshot`),
the bytes each project module was executed from (`recorder`), and what project code reads while it
runs or imports (`observing`).

Imports the core, the store and itself (tests/unit/test_layers.py).
"""
