"""The one gradient step every learner takes (the role of Brax's ``training/gradients.py``)."""
from __future__ import annotations

from typing import Any, Callable, Tuple

import jax
import optax


def gradient_step(loss_fn: Callable[..., Tuple[jax.Array, Any]], tx: optax.GradientTransformation,
                  params: Any, opt_state: Any, *args) -> Tuple[Any, Any, jax.Array, Any]:
    """One optimiser step on ``loss_fn(params, *args) -> (loss, aux)``.

    Returns ``(params, opt_state, loss, aux)``: the updated parameters and optimiser state, and
    the loss and auxiliary output at the parameters before the step.
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux


def scan_updates(update: Callable[[Any, Any, jax.Array], Tuple[Any, Any]], state: Any, batch: Any,
                 key: jax.Array, num_steps: int) -> Tuple[Any, Any]:
    """``num_steps`` calls of a learner's ``update(state, batch, key)`` in one ``lax.scan`` (keys
    split from ``key``); returns the final state and the metrics stacked ``[num_steps]``."""
    return jax.lax.scan(lambda s, k: update(s, batch, k), state,
                        jax.random.split(key, num_steps))
