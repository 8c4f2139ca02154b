"""Analyses of finished runs and tuner studies (capacity fits, trainability)."""
