"""The VAE objective of R2PGO (eq. 2-3), VariBAD-style.

A recurrent encoder gives a Gaussian posterior ``q(m | tau_{:t}) = N(mu_t, diag exp(logvar_t))``
after every prefix ``t = 0..L`` of a trajectory (``t = 0``: before any transition). From a sample of
each posterior the decoders reconstruct the *whole* trajectory's rewards (and next states), and the
KL term ties each posterior to the previous one (the first to the prior N(0, I)):

    L_VAE = sum_t [ -E_q_t log p(tau | m) + kl_weight * KL(q_t || q_{t-1}) ]

with Gaussian likelihoods of unit variance (squared errors up to constants). Averaged over
posteriors and transitions here so that its scale does not depend on the trajectory length.

Decoding every transition from every posterior costs ``(L+1) x L`` decoder calls per trajectory
(40,200 for a 200-step episode). ``vae_loss`` also takes a uniform subsample of that grid
(``posterior_index`` / ``transition_index``): the reconstruction term is then an unbiased estimate
of the full one (VariBAD's code offers the same, ``--vae_subsample_elbos`` /
``--vae_subsample_decodes``, Zintgraf et al. 2020); the KL term always uses every posterior.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp


def gaussian_kl(mu_q: jax.Array, logvar_q: jax.Array, mu_p: jax.Array, logvar_p: jax.Array
                ) -> jax.Array:
    """``KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p))`` summed over the last axis."""
    return 0.5 * jnp.sum(logvar_p - logvar_q + (jnp.exp(logvar_q) + (mu_q - mu_p) ** 2)
                         / jnp.exp(logvar_p) - 1.0, axis=-1)


def sequential_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """``[L+1]`` KL of each posterior to the previous one (the first to N(0, I)); inputs ``[L+1, D]``."""
    prev_mu = jnp.concatenate([jnp.zeros_like(mu[:1]), mu[:-1]])
    prev_logvar = jnp.concatenate([jnp.zeros_like(logvar[:1]), logvar[:-1]])
    return gaussian_kl(mu, logvar, prev_mu, prev_logvar)


def vae_loss(mu: jax.Array, logvar: jax.Array, reward_pred: jax.Array, reward: jax.Array,
             mask: Optional[jax.Array] = None, next_obs_pred: Optional[jax.Array] = None,
             next_obs: Optional[jax.Array] = None, kl_weight: float = 1.0,
             state_weight: float = 1.0, posterior_index: Optional[jax.Array] = None,
             transition_index: Optional[jax.Array] = None
             ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """R2PGO eq. (2-3) for one trajectory of ``L`` transitions.

    Args:
      mu, logvar: ``[L+1, D]`` posteriors after each prefix (row 0: before any transition).
      reward_pred: ``[L+1, L]`` each posterior's sample decoded into every transition's reward;
        with a subsample, ``[E, K]``: posterior ``posterior_index[e]`` decoded into transition
        ``transition_index[e, k]``.
      reward: ``[L]`` rewards.
      mask: ``[L]`` valid transitions (padding False); posteriors after padding are ignored too.
      next_obs_pred, next_obs: optional ``[L+1, L, O]`` (subsample: ``[E, K, O]``) / ``[L, O]``
        next-state reconstruction.
      kl_weight, state_weight: weights of the KL and state terms.
      posterior_index, transition_index: optional ``[E]`` in ``0..L`` / ``[E, K]`` in
        ``0..L-1``, the decoded pairs (both or neither).
    Returns: (loss, metrics).
    """
    steps = reward.shape[0]
    if (posterior_index is None) != (transition_index is None):
        raise ValueError("give both posterior_index and transition_index, or neither")
    grid = ((steps + 1, steps) if posterior_index is None
            else (posterior_index.shape[0], transition_index.shape[-1]))
    if (mu.shape[0] != steps + 1 or reward_pred.shape != grid
            or (transition_index is not None and transition_index.shape != grid)):
        raise ValueError(f"expected mu [L+1, D] and reward_pred {list(grid)} for L={steps}, got "
                         f"{mu.shape}, {reward_pred.shape}")
    if mask is None:
        mask = jnp.ones((steps,), bool)
    m = mask.astype(reward.dtype)
    post = jnp.concatenate([jnp.ones((1,), m.dtype), m])                    # [L+1]
    if posterior_index is None:
        pair = post[:, None] * m[None]                                      # [L+1, L]
        target_r, target_s = reward[None], None if next_obs is None else next_obs[None]
    else:
        pair = post[posterior_index][:, None] * m[transition_index]        # [E, K]
        target_r = reward[transition_index]
        target_s = None if next_obs is None else next_obs[transition_index]
    n_pair = jnp.maximum(jnp.sum(pair), 1.0)
    rec_r = jnp.sum(pair * (reward_pred - target_r) ** 2) / n_pair
    rec_s = jnp.zeros(())
    if next_obs_pred is not None:
        err = jnp.sum((next_obs_pred - target_s) ** 2, axis=-1)
        rec_s = jnp.sum(pair * err) / n_pair
    kl = jnp.sum(post * sequential_kl(mu, logvar)) / jnp.sum(post)
    loss = rec_r + state_weight * rec_s + kl_weight * kl
    return loss, {"vae": loss, "vae_reward_mse": rec_r, "vae_state_mse": rec_s, "vae_kl": kl}


def cvae_loss(mean: jax.Array, logvar: jax.Array, next_obs_pred: jax.Array, next_obs: jax.Array,
              reward_pred: jax.Array, reward: jax.Array, kl_weight: float = 0.2
              ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """CORRO's conditional-VAE objective for ``N`` transitions (Yuan & Lu 2022; its
    ``train_generative_model.py``, beta = 0.2):

        kl_weight * mean_n KL(q(z | s, a, r, s') || N(0, I)) + mean_{n,o} (s'_pred - s')^2
        + mean_n (r_pred - r)^2

    ``mean, logvar [N, Z]``, ``next_obs_pred, next_obs [N, O]``, ``reward_pred, reward [N]``."""
    if mean.ndim != 2 or next_obs.ndim != 2 or reward.ndim != 1:
        raise ValueError(f"expected mean [N, Z], next_obs [N, O], reward [N]; got {mean.shape}, "
                         f"{next_obs.shape}, {reward.shape}")
    kl = jnp.mean(gaussian_kl(mean, logvar, jnp.zeros_like(mean), jnp.zeros_like(logvar)))
    rec_s = jnp.mean((next_obs_pred - next_obs) ** 2)
    rec_r = jnp.mean((reward_pred - reward) ** 2)
    loss = kl_weight * kl + rec_s + rec_r
    return loss, {"cvae": loss, "cvae_kl": kl, "cvae_state_mse": rec_s, "cvae_reward_mse": rec_r}
