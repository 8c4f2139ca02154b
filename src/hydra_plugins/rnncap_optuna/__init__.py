"""rnncap's Optuna (>= 4) sweeper for Hydra: ``python train.py -m sweep=gp``."""

__version__ = "0.1.0"
