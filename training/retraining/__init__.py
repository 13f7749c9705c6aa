"""Retraining from reviewed frames: the labelled rows, the fixed evaluation set and the `retrain` command."""
