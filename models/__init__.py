"""The model manifest and the build/fetch of every model (see ``models/manifest.toml``)."""
