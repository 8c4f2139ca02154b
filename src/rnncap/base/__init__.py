"""The bottom layer: errors, config fields, information measures and atomic output (no torch)."""
