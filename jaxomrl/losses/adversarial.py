"""ReDA's adversarial-policy reward (§3.2, eq. 5-6). Pure and jittable.

Shapes: ``B`` rollouts, ``D`` embedding size, ``P`` positives (embeddings of other contexts of
the same task), ``K`` negatives (other tasks).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def infonce_score(z: jax.Array, positives: jax.Array, negatives: jax.Array,
                  temperature: float = 1.0) -> jax.Array:
    """ReDA's ``R(z) = E_{z*}[ log exp(z.z* / tau) / Phi(z) ]`` with
    ``Phi(z) = exp(z.z* / tau) + sum_k exp(z.z_k^- / tau)``: the InfoNCE log-probability that
    ``z`` is matched with its task's embeddings, averaged over the positives.

    ``z [B, D]``, ``positives [B, P, D]``, ``negatives [B, K, D]`` -> ``[B]``.
    """
    pos = jnp.einsum("bd,bpd->bp", z, positives) / temperature            # [B, P]
    neg = jnp.einsum("bd,bkd->bk", z, negatives) / temperature            # [B, K]
    neg_lse = jax.nn.logsumexp(neg, axis=-1, keepdims=True)               # [B, 1]
    return jnp.mean(pos - jnp.logaddexp(pos, neg_lse), axis=-1)


def adversarial_reward(z: jax.Array, next_z: jax.Array, positives: jax.Array,
                       negatives: jax.Array, uncertainty: jax.Array, task_reward: jax.Array,
                       lambda_uncertainty: float = 1.0, lambda_task: float = 1.0,
                       temperature: float = 1.0) -> jax.Array:
    """The adversarial policy's reward for one model step (eq. 6):

        r = r_adv - lambda_1 * u(s, a) + lambda_2 * r(s, a),   r_adv = R(z_t) - R(z_{t+1})

    ``z`` / ``next_z [B, D]`` embed the rollout's context before / after the step; ``r_adv`` is
    the step's *decrease* of the InfoNCE score (eq. 5 is printed as R(z_{t+1}) - R(z_t); the
    adversary is rewarded for "actions that decrease the task representation similarity within
    the same task", i.e. for lowering R, which is this sign). ``uncertainty``, ``task_reward``
    ``[B]`` (max ensemble std; the learned reward model). Returns ``[B]``.
    """
    return adversarial_reward_from_scores(
        infonce_score(z, positives, negatives, temperature),
        infonce_score(next_z, positives, negatives, temperature), uncertainty, task_reward,
        lambda_uncertainty, lambda_task)


def adversarial_reward_from_scores(score: jax.Array, next_score: jax.Array,
                                   uncertainty: jax.Array, task_reward: jax.Array,
                                   lambda_uncertainty: float = 1.0,
                                   lambda_task: float = 1.0) -> jax.Array:
    """:func:`adversarial_reward` from the InfoNCE scores ``R(z_t)``, ``R(z_{t+1})`` already
    computed (e.g. of every prefix of a rollout): ``R(z_t) - R(z_{t+1}) - lambda_1 u +
    lambda_2 r``, elementwise."""
    return score - next_score - lambda_uncertainty * uncertainty + lambda_task * task_reward
