"""Task-conditioned networks: concatenation ``[s, z]`` (the baselines) and R2PGO's adaptive policy
generation (§4.2), where shared lower layers read the state and a hypernetwork generates the last
layer's weights and bias from the task embedding:

    x2 = F_theta1(s),  x3 = F_theta2(x2),  out = F_H(z)(x3) = x3 W(z) + b(z)

Initialisation (bias-HyperInit, Beck et al. 2023): the hypernetwork's output layer starts with a
zero kernel and a bias equal to a freshly initialised ordinary layer, so at step 0 the generated
layer *is* a standard dense layer for every z -- training starts exactly like the unconditioned
network and the dependence on z is learnt from there (no exploding generated weights).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxomrl.nets.actor_critic import Critic, TanhGaussianActor, bounded_log_std
from jaxomrl.nets.mlp import MLP


class HyperDense(nn.Module):
    """A dense layer ``x [..., n_in] -> [..., features]`` whose weights come from ``z [..., D]``.

    The generator is a linear layer of the hypernetwork's features ``h``: ``theta = h K + c`` with
    ``theta = [vec W(z), b(z)]``. The output ``x W(z) + b(z)`` is computed without forming the
    per-sample ``W(z)`` (``[..., n_in, features]``, the largest array of the update): with
    ``K = [K_w, K_b]`` and ``c = [c_w, c_b]``,

        x W(z) + b(z) = sum_h h_h (x K_w[h]) + x c_w + h K_b + c_b,

    where ``x K_w`` is one ordinary matrix product ``[..., n_in] x [n_in, H * features]``. Same
    function as generating the weights first (only the order of the sums differs) and the same
    initial values (the generator's kernel starts at zero, its bias at the layer bias-HyperInit
    draws).
    """

    features: int
    hyper_hidden: Sequence[int] = (64,)
    init_scale: float = 1.0   # variance scaling of the layer generated at initialisation

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        n_in, f = x.shape[-1], self.features
        h = MLP(self.hyper_hidden)(z) if self.hyper_hidden else z
        return _Generator(n_in, f, self.init_scale, name="generator")(x, h)


class _Generator(nn.Module):
    """The hypernetwork's output layer applied to ``x`` through the weights it generates: kernel
    ``[n_in + 1, H, f]`` (``K_w`` in rows ``:n_in``, ``K_b`` in row ``n_in``; zeros at init, as
    bias-HyperInit asks) and bias ``[n_in * f + f]`` (``[vec c_w, c_b]``). ``K_w`` is laid out
    ``[n_in, H * f]`` so that ``x K_w`` is one matrix product of the stored array, with no
    transposed copy of the kernel in the forward or the backward pass."""

    n_in: int
    features: int
    init_scale: float

    @nn.compact
    def __call__(self, x: jax.Array, h: jax.Array) -> jax.Array:
        n_in, f, n_h = self.n_in, self.features, h.shape[-1]

        def bias_init(key, shape, dtype=jnp.float32):
            w = nn.initializers.variance_scaling(self.init_scale, "fan_in", "truncated_normal")(
                key, (n_in, f), dtype)
            return jnp.concatenate([w.reshape(-1), jnp.zeros((f,), dtype)])

        kernel = self.param("kernel", nn.initializers.zeros, (n_in + 1, n_h, f))
        bias = self.param("bias", bias_init, (n_in * f + f,))
        k_w, k_b = kernel[:n_in].reshape(n_in, n_h * f), kernel[n_in]
        c_w, c_b = bias[: n_in * f].reshape(n_in, f), bias[n_in * f:]
        xk = (x @ k_w).reshape(x.shape[:-1] + (n_h, f))
        return jnp.einsum("...ho,...h->...o", xk, h) + x @ c_w + h @ k_b + c_b


class ConditionedMLP(nn.Module):
    """``(x, z) -> [..., out]`` with ``head`` ``concat`` (MLP on ``[x, z]``) or ``hyper`` (MLP
    lower layers on ``x``, hypernetwork-generated output layer from ``z``)."""

    hidden: Sequence[int]
    out: int
    head: str = "hyper"
    hyper_hidden: Sequence[int] = (64,)
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        if self.head == "concat":
            return MLP(self.hidden, self.out, output_scale=self.output_scale)(
                jnp.concatenate([x, z], axis=-1))
        if self.head == "hyper":
            return HyperDense(self.out, self.hyper_hidden, self.output_scale)(
                MLP(self.hidden)(x), z)
        raise ValueError(f"head must be 'concat' or 'hyper', got {self.head!r}")


class ConditionedActor(nn.Module):
    """``(obs, z) -> (mean, log_std)`` of a tanh-Gaussian policy."""

    hidden: Sequence[int]
    action_dim: int
    head: str = "hyper"
    hyper_hidden: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, obs, z) -> Tuple[jax.Array, jax.Array]:
        out = ConditionedMLP(self.hidden, 2 * self.action_dim, self.head, self.hyper_hidden,
                             output_scale=0.01)(obs, z)
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, bounded_log_std(raw)


class ConditionedCritic(nn.Module):
    """``num`` Q networks ``(obs, action, z) -> q [num, ...]``; the hyper head generates each
    critic's last layer from z."""

    hidden: Sequence[int]
    num: int = 2
    head: str = "hyper"
    hyper_hidden: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, obs, action, z):
        ensemble = nn.vmap(ConditionedMLP, variable_axes={"params": 0},
                           split_rngs={"params": True}, in_axes=None, out_axes=0,
                           axis_size=self.num)
        x = jnp.concatenate([obs, action], axis=-1)
        return ensemble(self.hidden, 1, self.head, self.hyper_hidden)(x, z)[..., 0]


def actor_and_critic(hidden: Sequence[int], action_dim: int, head: str = "none",
                     hyper_hidden: Sequence[int] = (64,), num_critics: int = 2,
                     latent_dim: int = 0) -> Tuple[nn.Module, nn.Module]:
    """An agent's tanh-Gaussian actor and ``num_critics`` Q networks: on the state alone
    (``head="none"``) or conditioned on a task embedding of ``latent_dim >= 1`` by ``head``
    (``concat`` or ``hyper``). Conditioned modules take ``z`` as their last argument."""
    if head == "none":
        return TanhGaussianActor(hidden, action_dim), Critic(hidden, num_critics)
    if latent_dim < 1:
        raise ValueError(f"head {head!r} conditions on a task embedding: latent_dim >= 1")
    return (ConditionedActor(hidden, action_dim, head, hyper_hidden),
            ConditionedCritic(hidden, num_critics, head, hyper_hidden))
