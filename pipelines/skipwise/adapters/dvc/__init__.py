"""DVC's files, read directly (the project never imports dvc): .dvc files, dvc.lock, .dir manifests."""
