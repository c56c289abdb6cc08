"""Glue to outside systems, one package each: `dagster` (the only place that imports Dagster:
authoring, execution, the services profile), `dvc` (DVC's own files, read without importing dvc),
and `git.py` (the checked-out commit, from git's files)."""
