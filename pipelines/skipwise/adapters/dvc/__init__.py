"""DVC's files, read directly (the project never imports dvc): .dvc files, dvc.lock, .dir manifests.

Imports the core and the store at module level (tests/unit/test_layers.py)."""
