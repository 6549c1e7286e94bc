"""SAC's tanh-Gaussian actor and an ensemble of Q critics.

Policies act in the *normalised* action box [-1, 1]^d: the tanh squashing maps onto it, log
probabilities are densities there (so SAC's usual target entropy ``-d`` means the same for every
family), and ``jaxomrl.types.scale_action`` maps to the family's box before an environment step.
Datasets store environment-scale actions; ``jaxomrl.types.unscale_action`` maps them back.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxomrl.nets.mlp import MLP

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TanhGaussianActor(nn.Module):
    """``obs [..., obs_dim] -> (mean, log_std)``, each ``[..., action_dim]`` (pre-tanh)."""

    hidden: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.action_dim, output_scale=0.01)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, bounded_log_std(raw)


def bounded_log_std(raw: jax.Array) -> jax.Array:
    """Maps a raw network output smoothly into [LOG_STD_MIN, LOG_STD_MAX] (no dead gradient at a
    clip boundary)."""
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)


class Critic(nn.Module):
    """``num`` independent Q networks: ``(obs [..., o], action [..., d]) -> q [num, ...]``."""

    hidden: Sequence[int]
    num: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=None, out_axes=0, axis_size=self.num)
        x = jnp.concatenate([obs, action], axis=-1)
        return ensemble(self.hidden, 1)(x)[..., 0]


def tanh_gaussian_sample(mean: jax.Array, log_std: jax.Array, key: jax.Array
                         ) -> Tuple[jax.Array, jax.Array]:
    """Reparameterised sample ``a = tanh(mean + std * eps)`` and its log density in [-1, 1]^d.

    ``log pi(a) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)]`` with the Jacobian term
    written as ``2 (log 2 - u - softplus(-2u))`` for numerical stability.
    Shapes: mean, log_std ``[..., d]`` -> action ``[..., d]``, log_prob ``[...]``.
    """
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    log_normal = -0.5 * eps ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_normal - log_det, axis=-1)


def tanh_gaussian_mode(mean: jax.Array) -> jax.Array:
    """The deterministic action ``tanh(mean)``."""
    return jnp.tanh(mean)

