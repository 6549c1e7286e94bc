"""Prompt decision transformer (Prompt-DT, Xu et al. 2022), written with Flax.

A causal transformer over the tokens (return-to-go, state, action) of every step of a trajectory
segment, with a *prompt* -- a few steps of another trajectory of the same task, embedded by its own
embeddings -- prepended. The prediction for step t's action is read from the output at step t's
state token, which the causal mask lets see the prompt, every earlier token and (R_t, s_t) but not
a_t.

Token layout (prompt of P steps, segment of K steps; each step R, s, a):

    [R^p_0, s^p_0, a^p_0, ..., R^p_{P-1}, s^p_{P-1}, a^p_{P-1}, R_0, s_0, a_0, ..., R_{K-1}, s_{K-1}, a_{K-1}]

Each token is its embedding plus the embedding of its step's within-episode timestep (separate
tables for the prompt and the segment), then LayerNorm (the DT's ``embed_ln``). Padding tokens
(``mask`` False) are never attended to (every token still attends to itself, so padded rows stay
finite; their outputs are not used). Defaults: Prompt-DT's (mxu34/prompt-dt ``pdt_main.py``:
width 128, 3 layers, 1 head, ReLU MLPs of 4 x width, dropout 0.1).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxomrl.types import Segment

TOKENS_PER_STEP = 3      # return-to-go, state, action
STATE_TOKEN = 1          # the offset of the state token within a step


def interleave(rtg: jax.Array, obs: jax.Array, action: jax.Array) -> jax.Array:
    """Token embeddings ``[L, W]`` each -> ``[3 L, W]`` in the order (R_0, s_0, a_0, R_1, ...)."""
    return jnp.stack([rtg, obs, action], axis=1).reshape((-1,) + rtg.shape[1:])


def attention_mask(valid: jax.Array) -> jax.Array:
    """``[N, N]`` bool: token i attends to token j iff ``j <= i`` and j is valid, or ``j == i``."""
    n = valid.shape[0]
    causal = jnp.tril(jnp.ones((n, n), bool))
    return (causal & valid[None, :]) | jnp.eye(n, dtype=bool)


class _Block(nn.Module):
    """A GPT-2 block: pre-LayerNorm causal self-attention and MLP, each with a residual."""

    width: int
    num_heads: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.width,
                                            dropout_rate=self.dropout)(
            nn.LayerNorm()(x), mask=mask[None], deterministic=deterministic)
        x = x + nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.Dense(4 * self.width)(nn.LayerNorm()(x))
        h = nn.Dense(self.width)(nn.relu(h))
        return x + nn.Dropout(self.dropout)(h, deterministic=deterministic)


class _StepEmbedding(nn.Module):
    """Embeds a segment's steps as its three tokens each, plus the timestep embedding."""

    width: int
    max_timestep: int

    @nn.compact
    def __call__(self, seg: Segment) -> jax.Array:
        t = nn.Embed(self.max_timestep, self.width)(jnp.clip(seg.timestep, 0,
                                                             self.max_timestep - 1))
        r = nn.Dense(self.width)(seg.rtg[..., None]) + t
        s = nn.Dense(self.width)(seg.obs) + t
        a = nn.Dense(self.width)(seg.action) + t
        return interleave(r, s, a)


class PromptDecisionTransformer(nn.Module):
    """``(segment [K], prompt [P] or None, deterministic) -> actions [K, action_dim]`` in
    (-1, 1) (tanh), one prediction per segment step, unbatched (``vmap`` over batches).
    ``max_timestep``: the timestep embeddings' table size (the family's horizon or more)."""

    action_dim: int
    max_timestep: int
    width: int = 128
    num_layers: int = 3
    num_heads: int = 1
    dropout: float = 0.1

    @nn.compact
    def __call__(self, segment: Segment, prompt: Segment | None = None,
                 deterministic: bool = True) -> jax.Array:
        if segment.obs.ndim != 2:
            raise ValueError(f"PromptDecisionTransformer takes one segment [K, O]; vmap over "
                             f"batches, got obs {segment.obs.shape}")
        x = _StepEmbedding(self.width, self.max_timestep, name="embed")(segment)
        valid = jnp.repeat(segment.mask, TOKENS_PER_STEP)
        if prompt is not None:
            p = _StepEmbedding(self.width, self.max_timestep, name="prompt_embed")(prompt)
            x = jnp.concatenate([p, x])
            valid = jnp.concatenate([jnp.repeat(prompt.mask, TOKENS_PER_STEP), valid])
        x = nn.Dropout(self.dropout)(nn.LayerNorm()(x), deterministic=deterministic)
        mask = attention_mask(valid)
        for _ in range(self.num_layers):
            x = _Block(self.width, self.num_heads, self.dropout)(x, mask, deterministic)
        x = nn.LayerNorm()(x)
        k = segment.mask.shape[0]
        states = x[-TOKENS_PER_STEP * k:][STATE_TOKEN::TOKENS_PER_STEP]            # [K, W]
        return jnp.tanh(nn.Dense(self.action_dim)(states))
