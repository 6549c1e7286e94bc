"""Sequence-model losses: the decision transformer's action regression."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_action_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error of predicted actions ``pred [..., A]`` against ``target [..., A]``
    over the valid steps (``mask [...]``) and action dimensions (the DT's / Prompt-DT's loss):
    ``sum_{valid, d} (pred - target)^2 / (A * #valid)``."""
    if pred.shape != target.shape or pred.shape[:-1] != mask.shape:
        raise ValueError(f"pred and target must be [..., A] and mask [...], got {pred.shape}, "
                         f"{target.shape}, {mask.shape}")
    w = mask.astype(pred.dtype)[..., None]
    return jnp.sum(w * (pred - target) ** 2) / jnp.maximum(jnp.sum(w) * pred.shape[-1], 1.0)
