"""Evaluation: task-identification metrics (and, in later modules, adaptation protocols, reports)."""
from jaxomrl.eval.metrics import centroid_accuracy, relative_representation_metric

__all__ = ["centroid_accuracy", "relative_representation_metric"]
