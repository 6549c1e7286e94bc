"""Probabilistic dynamics-model losses (PETS / MBPO / MOPO, used by ReDA's model ensembles).

Pure and jittable. Shapes: ``[..., D]`` predictions and targets (any leading axes).
"""
from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp


def soft_bound_logvar(raw: jax.Array, max_logvar: jax.Array, min_logvar: jax.Array) -> jax.Array:
    """Smoothly bounds a raw log-variance to ``(min_logvar, max_logvar)`` (Chua et al. 2018):

        lv = max - softplus(max - raw);   lv = min + softplus(lv - min)
    """
    logvar = max_logvar - jax.nn.softplus(max_logvar - raw)
    return min_logvar + jax.nn.softplus(logvar - min_logvar)


def gaussian_nll(mean: jax.Array, logvar: jax.Array, target: jax.Array,
                 mask: jax.Array | None = None) -> jax.Array:
    """Gaussian negative log-likelihood without the constant, averaged over dimensions and
    (masked) samples:

        L = mean_{n, d} [ (mu_nd - y_nd)^2 exp(-logvar_nd) + logvar_nd ]
    """
    per = jnp.mean((mean - target) ** 2 * jnp.exp(-logvar) + logvar, axis=-1)
    if mask is None:
        return jnp.mean(per)
    return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1)


def ensemble_member_loss(mean: jax.Array, logvar: jax.Array, target: jax.Array,
                         max_logvar: jax.Array, min_logvar: jax.Array,
                         bound_weight: float = 0.01) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """One ensemble member's training loss: ``gaussian_nll`` plus MBPO's penalty that pulls the
    learned log-variance bounds together, ``bound_weight * (sum(max_logvar) - sum(min_logvar))``.
    Returns (loss, metrics with ``nll`` and ``mse``)."""
    nll = gaussian_nll(mean, logvar, target)
    loss = nll + bound_weight * (jnp.sum(max_logvar) - jnp.sum(min_logvar))
    return loss, {"nll": nll, "mse": jnp.mean((mean - target) ** 2)}
