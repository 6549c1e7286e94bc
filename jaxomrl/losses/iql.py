"""Implicit Q-learning losses (Kostrikov, Nair & Levine 2022, "Offline reinforcement learning
with implicit Q-learning"): in-sample value learning that never queries the critic at actions
outside the data, and advantage-weighted policy extraction.

Written on network outputs (batch axes ``[B]``, ``n`` critics), pure and jittable; the caller
decides what is differentiated.
"""
from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """``L_2^tau(u) = |tau - 1(u < 0)| u^2`` elementwise, ``u = Q(s, a) - V(s)`` (IQL eq. 5):
    minimised over V it gives the ``tau``-expectile of Q over the data's actions (``tau = 0.5``:
    the mean, ``tau -> 1``: the maximum)."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff ** 2


def value_loss(q: jax.Array, v: jax.Array, expectile: float
               ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """``L_V = mean_B L_2^tau(min_k Q'_k(s, a) - V(s))`` with the data's ``(s, a)``.

    Args: q ``[n, B]`` target-critic values at the data's actions; v ``[B]``.
    """
    diff = jnp.min(q, axis=0) - v
    loss = jnp.mean(expectile_loss(diff, expectile))
    return loss, {"value_loss": loss, "v_mean": jnp.mean(v), "advantage": jnp.mean(diff)}


def value_target(reward: jax.Array, terminated: jax.Array, next_v: jax.Array,
                 discount: float) -> jax.Array:
    """``y = r + gamma (1 - d) V(s')`` (IQL eq. 6; gradients stopped). ``terminated`` only: a
    time-limit truncation is not terminal."""
    not_done = 1.0 - terminated.astype(reward.dtype)
    return jax.lax.stop_gradient(reward + discount * not_done * next_v)


def awr_actor_loss(log_prob: jax.Array, advantage: jax.Array, temperature: float,
                   max_weight: float = 100.0) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Advantage-weighted regression (IQL eq. 7): ``L_pi = -mean_B w log pi(a|s)`` with
    ``w = min(exp(beta A(s, a)), max_weight)``, the data's ``(s, a)``, ``A = Q - V`` (weights
    treated as constants). ``beta`` (``temperature``) -> 0 is behaviour cloning; large ``beta``
    clones only the data's best actions.

    Args: log_prob ``[B]`` at the data's actions; advantage ``[B]``.
    """
    weight = jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * advantage), max_weight))
    loss = -jnp.mean(weight * log_prob)
    return loss, {"actor_loss": loss, "awr_weight": jnp.mean(weight),
                  "awr_weight_clipped": jnp.mean(weight >= max_weight)}


def gaussian_log_prob(action: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """``log N(a; mean, diag(exp(log_std))^2)`` summed over the last axis (``[..., d] -> [...]``);
    IQL's policy is a Gaussian whose mean is already squashed into the action box."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
