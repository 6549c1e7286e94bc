"""Task encoders: recurrent VAE (R2PGO / VariBAD), transformer context encoder (ReDA), and a
transition-MLP set encoder with mean or attention pooling (FOCAL / CORRO).

Encoders read transitions as feature vectors ``[s, a, r, s']`` (:func:`transition_features`) and
work on unbatched inputs; ``vmap`` them over batch axes.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxomrl.nets.mlp import MLP
from jaxomrl.types import Transition

LOGVAR_MIN, LOGVAR_MAX = -10.0, 4.0


def transition_features(tr: Transition) -> jax.Array:
    """``[..., 2 obs_dim + action_dim + 1]``: ``[s, a, r, s']`` of every transition."""
    return jnp.concatenate([tr.obs, tr.action, tr.reward[..., None], tr.next_obs], axis=-1)


class GRUEncoder(nn.Module):
    """Recurrent posterior ``q(m | tau_{:t})``: ``x [L, F] -> (mu, logvar) [L+1, latent]``.

    Row 0 is the posterior before any transition (from the zero hidden state); row t after t
    transitions. ``step(h, x)`` advances one transition for online inference.

    The GRU reads one ReLU embedding (``embed_dim``) of the whole feature vector ``[s, a, r, s']``,
    or, with ``input_embeddings=(state, action, reward)`` sizes and ``obs_dim`` / ``action_dim``,
    VariBAD's separate ReLU embeddings of ``s'``, ``a`` and ``r``, concatenated (VariBAD / BOReL's
    encoder: 32 / 16 / 16; the transition's ``s`` is not read, it is the previous ``s'``).
    """

    hidden: int = 64
    latent_dim: int = 5
    embed_dim: int = 32
    input_embeddings: Tuple[int, ...] = ()
    obs_dim: int = 0
    action_dim: int = 0

    def setup(self):
        if self.input_embeddings:
            if len(self.input_embeddings) != 3 or min(self.obs_dim, self.action_dim) < 1:
                raise ValueError("input_embeddings are (state, action, reward) sizes and need "
                                 "obs_dim and action_dim")
            self.input_embeds = [nn.Dense(n) for n in self.input_embeddings]
        else:
            self.embed = nn.Dense(self.embed_dim)
        self.cell = nn.GRUCell(self.hidden)
        self.head = nn.Dense(2 * self.latent_dim)

    def embed_input(self, x: jax.Array) -> jax.Array:
        """The GRU's input for features ``x [..., 2 obs_dim + action_dim + 1]``."""
        if not self.input_embeddings:
            return nn.relu(self.embed(x))
        o, a = self.obs_dim, self.action_dim
        parts = (x[..., o + a + 1:], x[..., o:o + a], x[..., o + a:o + a + 1])   # s', a, r
        return jnp.concatenate([nn.relu(e(p)) for e, p in zip(self.input_embeds, parts)], -1)

    def posterior(self, h):
        mu, logvar = jnp.split(self.head(h), 2, axis=-1)
        return mu, jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def initial_state(self) -> jax.Array:
        return jnp.zeros((self.hidden,))

    def step(self, h: jax.Array, x: jax.Array):
        h, _ = self.cell(h, self.embed_input(x))
        return h, self.posterior(h)

    def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
        if x.ndim != 2:
            raise ValueError(f"GRUEncoder takes one sequence [L, F]; vmap over batches, got "
                             f"{x.shape}")
        scan = nn.scan(lambda mdl, h, xt: mdl.cell(h, xt), variable_broadcast="params",
                       split_rngs={"params": False})
        h0 = self.initial_state()
        _, hs = scan(self, h0, self.embed_input(x))
        return self.posterior(jnp.concatenate([h0[None], hs], axis=0))


class RewardDecoder(nn.Module):
    """``p(r | m, s, a, s')``: ``(z [..., D], s, a, s' [..., F]) -> r [...]``; the leading axes
    broadcast (``z [P, 1, D]`` with transitions ``[1, T, F]``: every sample decodes every
    transition, ``[P, T]``, without tiling the inputs)."""

    hidden: Sequence[int] = (32, 32)

    @nn.compact
    def __call__(self, z, s, a, s_next):
        return MLP(self.hidden, 1)((z, jnp.concatenate([s, a, s_next], axis=-1)))[..., 0]


class StateDecoder(nn.Module):
    """``p(s' | m, s, a)``: predicts the next observation."""

    hidden: Sequence[int] = (64, 64)
    obs_dim: int = 1

    @nn.compact
    def __call__(self, z, s, a):
        return MLP(self.hidden, self.obs_dim)((z, jnp.concatenate([s, a], axis=-1)))


class TransformerContextEncoder(nn.Module):
    """ReDA's context encoder: one attention layer whose query comes from the current observation
    and last action and whose keys / values come from the context's state-action pairs.

    ``(query_in [Q], context [W, C], mask [W]) -> z [latent_dim]``. Defaults: width 64, one head,
    output 8 (ReDA appendix B.5).
    """

    width: int = 64
    num_heads: int = 1
    latent_dim: int = 8

    @nn.compact
    def __call__(self, query_in: jax.Array, context: jax.Array,
                 mask: Optional[jax.Array] = None) -> jax.Array:
        if context.ndim != 2 or context.shape[0] == 0:
            raise ValueError(f"context must be a non-empty [W, C] array, got {context.shape}")
        if mask is None:
            mask = jnp.ones(context.shape[:1], bool)
        q = nn.Dense(self.width)(query_in)[None]                          # [1, width]
        kv = nn.relu(nn.Dense(self.width)(context))                       # [W, width]
        attn = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.width)
        h = attn(q, kv, mask=mask[None, None, :])[0]                      # [width]
        h = nn.LayerNorm()(h + q[0])
        h = h + MLP((self.width,), self.width)(h)
        return nn.Dense(self.latent_dim)(nn.relu(h))


class TransitionSetEncoder(nn.Module):
    """FOCAL / CORRO style: an MLP embeds each transition, pooled over the context set.

    ``(features [W, F], mask [W]) -> z [latent_dim]``; ``pooling`` is ``mean`` or ``attention``
    (softmax weights from a learned score per transition). ``per_transition(features)`` gives the
    unpooled embeddings ``[..., latent_dim]`` (CORRO's InfoNCE works on single transitions).
    """

    hidden: Sequence[int] = (64, 64)
    latent_dim: int = 5
    pooling: str = "mean"
    normalize: bool = False
    output: str = "linear"           # per-transition output: linear | tanh (CSRO's encoder)

    def setup(self):
        if self.pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', got {self.pooling!r}")
        if self.output not in ("linear", "tanh"):
            raise ValueError(f"output must be 'linear' or 'tanh', got {self.output!r}")
        self.mlp = MLP(self.hidden, self.latent_dim)
        if self.pooling == "attention":
            self.score = nn.Dense(1)

    def per_transition(self, features: jax.Array) -> jax.Array:
        z = self.mlp(features)
        if self.output == "tanh":
            z = jnp.tanh(z)
        if self.normalize:
            z = z / (jnp.linalg.norm(z, axis=-1, keepdims=True) + 1e-8)
        return z

    def scored(self, features: jax.Array) -> Tuple[jax.Array, Optional[jax.Array]]:
        """What pooling reads of each transition: ``(per_transition [..., latent], attention
        score [...] or None)``; ``set_pool`` of a window of them is ``__call__``."""
        z = self.per_transition(features)
        return z, (self.score(features)[..., 0] if self.pooling == "attention" else None)

    def __call__(self, features: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"context must be a non-empty [W, F] array, got {features.shape}")
        if mask is None:
            mask = jnp.ones(features.shape[:1], bool)
        return set_pool(*self.scored(features), mask)


def set_pool(z: jax.Array, score: Optional[jax.Array], mask: jax.Array) -> jax.Array:
    """:class:`TransitionSetEncoder`'s pooling of one window's ``scored`` transitions (``z [W,
    latent]``, ``score [W]`` or None for mean pooling, ``mask [W]``) into ``[latent]``; an
    all-masked window gives zeros."""
    if score is None:
        w = mask.astype(z.dtype) / jnp.maximum(jnp.sum(mask), 1)
    else:
        w = jax.nn.softmax(jnp.where(mask, score, -1e9)) * jnp.any(mask)
    return jnp.sum(w[:, None] * z, axis=0)


class GaussianPredictor(nn.Module):
    """CSRO's variational ``q(z | x)``: ``x [..., F] -> (mean, var) [..., latent_dim]``, an MLP
    with a tanh output of size ``2 latent_dim``, the variance the softplus of its second half
    (CSRO's club_model: 200 x 3, tanh output, softplus variance, so var is in (0.31, 1.31))."""

    hidden: Sequence[int] = (64, 64)
    latent_dim: int = 5

    @nn.compact
    def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
        out = jnp.tanh(MLP(self.hidden, 2 * self.latent_dim)(x))
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, jax.nn.softplus(raw)


class TransitionCVAE(nn.Module):
    """CORRO's generative model of a transition's outcome (Yuan & Lu 2022, §4.2; its
    ``models/generative.py``): a conditional VAE of ``(s', r)`` given ``(s, a)``. The encoder
    reads ``[s, a, r, s']`` and gives the posterior ``(mean, logvar) [..., latent]``; the decoder
    reads ``[s, a, z]`` and gives ``(s' [..., obs_dim], r [...])``. Trained on every training
    task's transitions, its latent carries what differs between tasks at the same ``(s, a)``, so
    decoding a prior sample ``z ~ N(0, I)`` gives the outcome some task would produce
    (:meth:`sample`: CORRO's negatives). CORRO's sizes: one hidden layer of 128, latent 64."""

    obs_dim: int
    hidden: Sequence[int] = (128,)
    latent_dim: int = 64

    def setup(self):
        self.encoder = MLP(tuple(self.hidden), 2 * self.latent_dim)
        self.decoder = MLP(tuple(self.hidden), self.obs_dim + 1)

    def __call__(self, tr: Transition, key: jax.Array):
        """Posterior ``(mean, logvar)`` of ``tr`` and the decoding of one posterior sample:
        ``(mean, logvar, next_obs_pred, reward_pred)``."""
        mean, logvar = jnp.split(self.encoder(transition_features(tr)), 2, axis=-1)
        logvar = jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        next_obs, reward = self.decode(tr.obs, tr.action, z)
        return mean, logvar, next_obs, reward

    def decode(self, obs: jax.Array, action: jax.Array, z: jax.Array):
        out = self.decoder(jnp.concatenate([obs, action, z], axis=-1))
        return out[..., :-1], out[..., -1]

    def sample(self, obs: jax.Array, action: jax.Array, key: jax.Array):
        """``(next_obs, reward)`` decoded from ``z ~ N(0, I)`` at ``(obs, action) [..., ·]``."""
        z = jax.random.normal(key, obs.shape[:-1] + (self.latent_dim,))
        return self.decode(obs, action, z)
