"""The training core: config schema and validation, building, the Lightning module, one run."""
