"""Evaluation: adaptation rollouts, the papers' protocols, task-identification metrics, reports."""
from jaxomrl.eval.adaptation import (Context, context_from_data, encoder_context, online_returns,
                                     online_rollout)
from jaxomrl.eval.metrics import (relative_representation_metric, representation_metric_parts,
                                  task_representation_metric)
from jaxomrl.eval.protocols import evaluate_policy, fixed_context_returns

__all__ = ["Context", "context_from_data", "encoder_context", "online_returns", "online_rollout",
           "relative_representation_metric", "representation_metric_parts",
           "task_representation_metric",
           "evaluate_policy", "fixed_context_returns"]
