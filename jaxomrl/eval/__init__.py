"""Evaluation: online / offline-context adaptation rollouts and task-identification metrics."""
from jaxomrl.eval.adaptation import Context, context_from_data, encoder_context, online_returns
from jaxomrl.eval.metrics import centroid_accuracy, relative_representation_metric

__all__ = ["Context", "context_from_data", "encoder_context", "online_returns",
           "centroid_accuracy", "relative_representation_metric"]
