"""Experiment infrastructure shared by the drivers in ``experiments/``: checkpoints, logging."""
