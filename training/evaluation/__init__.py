"""Thresholds, metrics, evaluation of an exported model, model comparison and the evaluation report."""
