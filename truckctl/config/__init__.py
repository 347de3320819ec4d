"""The race and stage configuration: typed model, loader and validation."""
