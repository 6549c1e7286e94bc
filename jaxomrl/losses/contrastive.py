"""Contrastive task-representation losses: InfoNCE, R2PGO's similarity-weighted negatives, FOCAL's
distance metric, CORRO's negative generation, CSRO's CLUB bound, and nearest-centroid task
accuracy. (ReDA's relative representation metric d(phi)
is an evaluation function: ``jaxomrl.eval.metrics``.)

All functions are pure and jittable. Shapes: ``D`` embedding size, ``B`` anchors, ``K`` negatives
per anchor, ``T`` tasks, ``S`` embeddings (samples) per task.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp


def _check_alpha(alpha) -> None:
    if isinstance(alpha, (int, float)) and alpha < 0:
        raise ValueError(f"kernel width alpha must be >= 0, got {alpha}")


def _check_temperature(temperature) -> None:
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def centroid_accuracy(z_reference: jax.Array, z_query: jax.Array) -> jax.Array:
    """Nearest-centroid task identification.

    ``z_reference [T, S, D]`` (embeddings of S contexts per task) defines one centroid per task;
    each query embedding in ``z_query [T, S', D]`` is assigned to the nearest centroid. Returns the
    fraction assigned to their own task (chance: 1 / T).
    """
    return jnp.mean(nearest_centroid_hits(z_reference, z_query))


def nearest_centroid_hits(z_reference: jax.Array, z_query: jax.Array) -> jax.Array:
    """``[T, S']`` booleans: whether each query embedding of ``z_query [T, S', D]`` is nearest to
    its own task's centroid of ``z_reference [T, S, D]`` (:func:`centroid_accuracy` is their
    mean)."""
    if z_reference.ndim != 3 or z_query.ndim != 3 or z_reference.shape[0] != z_query.shape[0]:
        raise ValueError(f"expected [T, S, D] and [T, S', D], got {z_reference.shape}, "
                         f"{z_query.shape}")
    centroids = jnp.mean(z_reference, axis=1)                                   # [T, D]
    d2 = jnp.sum((z_query[:, :, None] - centroids[None, None]) ** 2, axis=-1)    # [T, S', T]
    return jnp.argmin(d2, axis=-1) == jnp.arange(z_query.shape[0])[:, None]


def similarity(a: jax.Array, b: jax.Array, kind: str = "dot") -> jax.Array:
    """Similarity of the last axes: ``a . b`` (``dot``) or ``a . b / (|a| |b|)`` (``cosine``)."""
    if kind == "dot":
        return jnp.sum(a * b, axis=-1)
    if kind == "cosine":
        eps = 1e-8
        return jnp.sum(a * b, axis=-1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
                                          + eps)
    raise ValueError(f"similarity must be 'dot' or 'cosine', got {kind!r}")


def info_nce(anchor: jax.Array, positive: jax.Array, negatives: jax.Array,
             temperature: float = 1.0, kind: str = "dot",
             negative_mask: Optional[jax.Array] = None,
             positive_in_denominator: bool = True) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """InfoNCE (Oord et al. 2018):

        L = -mean_b log [ exp(s(x_b, x_b+)/tau) / (exp(s(x_b, x_b+)/tau) + sum_k exp(s(x_b, x_bk-)/tau)) ]

    Args:
      anchor ``[B, D]``, positive ``[B, D]``, negatives ``[B, K, D]``.
      temperature: tau > 0.
      kind: ``dot`` or ``cosine`` similarity.
      negative_mask: optional ``[B, K]`` bool; False entries are not negatives.
      positive_in_denominator: Oord's form (True). False drops the positive from the
        denominator, as R2PGO's eq. (5) is printed; that form is unbounded below (the loss keeps
        decreasing as positives approach), so it is offered for fidelity checks, not as default.
    Returns: (loss, metrics with ``accuracy``: fraction of anchors whose positive outscores every
    negative).
    """
    _check_temperature(temperature)
    if anchor.shape != positive.shape or anchor.ndim != 2:
        raise ValueError(f"anchor and positive must both be [B, D], got {anchor.shape}, "
                         f"{positive.shape}")
    if negatives.ndim != 3 or negatives.shape[0] != anchor.shape[0] or \
            negatives.shape[2] != anchor.shape[1]:
        raise ValueError(f"negatives must be [B, K, D] = [{anchor.shape[0]}, K, {anchor.shape[1]}]"
                         f", got {negatives.shape}")
    pos = similarity(anchor, positive, kind) / temperature                    # [B]
    neg = similarity(anchor[:, None], negatives, kind) / temperature           # [B, K]
    if negative_mask is None:
        negative_mask = jnp.ones(neg.shape, bool)
    neg = jnp.where(negative_mask, neg, -jnp.inf)
    if positive_in_denominator:
        terms, has_term = jnp.concatenate([pos[:, None], neg], 1), jnp.ones(pos.shape, bool)
    else:
        terms, has_term = neg, jnp.any(negative_mask, axis=1)
    # A row with no term at all (no negatives, positive excluded) has loss 0; the double
    # ``where`` keeps its gradient finite.
    terms = jnp.where(has_term[:, None], terms, 0.0)
    row = jnp.where(has_term, jax.nn.logsumexp(terms, axis=1) - pos, 0.0)
    loss = jnp.mean(row)
    accuracy = jnp.mean(pos > jnp.max(jnp.where(negative_mask, neg, -jnp.inf), axis=1))
    return loss, {"infonce": loss, "infonce_accuracy": accuracy}


def similarity_weights(attributes: jax.Array, alpha: float) -> jax.Array:
    """R2PGO eq. (4): ``b_ij = exp(-alpha ||p_i - p_j||^2)``; attributes ``[T, A]`` -> ``[T, T]``."""
    _check_alpha(alpha)
    if attributes.ndim != 2:
        raise ValueError(f"attributes must be [T, A], got {attributes.shape}")
    d2 = jnp.sum((attributes[:, None] - attributes[None]) ** 2, axis=-1)
    return jnp.exp(-alpha * d2)


def sample_negative_tasks(key: jax.Array, attributes: jax.Array, alpha: float,
                          num_negatives: int) -> Tuple[jax.Array, jax.Array]:
    """Which task each of a task's ``num_negatives`` negatives comes from (R2PGO eq. 4-5).

    Task ``j != i`` is drawn with probability ``b_ij / sum_{l != i} b_il``, so the expected number
    of negatives from task j is ``N_ij = N_total * b_ij / sum_l b_il`` -- eq. (5)'s
    ``N_ij = b_ij * N_total`` normalised so that every task has ``N_total`` negatives. ``alpha = 0``
    gives the uniform sampling of earlier methods. Static shapes: returns task indices
    ``[T, N_total]`` and a validity mask (all False when there is a single task).
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    _check_alpha(alpha)
    t = attributes.shape[0]
    d2 = jnp.sum((attributes[:, None] - attributes[None]) ** 2, axis=-1)
    logits = jnp.where(jnp.eye(t, dtype=bool), -jnp.inf, -alpha * d2)
    if t == 1:
        return jnp.zeros((1, num_negatives), jnp.int32), jnp.zeros((1, num_negatives), bool)
    idx = jax.random.categorical(key, logits[:, None, :], axis=-1, shape=(t, num_negatives))
    return idx.astype(jnp.int32), jnp.ones((t, num_negatives), bool)


def weighted_info_nce(key: jax.Array, embeddings: jax.Array, attributes: jax.Array,
                      alpha: float, num_negatives: int, temperature: float = 1.0,
                      kind: str = "dot", positive_in_denominator: bool = True
                      ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """R2PGO's contrastive loss, eq. (5), from ``S`` embeddings per task ``[T, S, D]``.

    Every embedding z_{i,s} is an anchor; its positive is another embedding of the same task
    (``z_{i,s'}``, ``s' != s``, uniformly); its ``num_negatives`` negatives are embeddings of other
    tasks, the task of each drawn by :func:`sample_negative_tasks` (proportional to b_ij) and the
    sample within that task uniformly.
    """
    if embeddings.ndim != 3:
        raise ValueError(f"embeddings must be [T, S, D], got {embeddings.shape}")
    t, s, d = embeddings.shape
    if s < 2:
        raise ValueError("weighted_info_nce needs at least 2 embeddings per task (anchor and "
                         f"positive), got {s}")
    if attributes.shape[0] != t:
        raise ValueError(f"attributes have {attributes.shape[0]} tasks, embeddings {t}")
    k_task, k_pos, k_neg = jax.random.split(key, 3)
    shift = jax.random.randint(k_pos, (t, s), 1, s)
    pos_idx = (jnp.arange(s)[None] + shift) % s
    positive = jnp.take_along_axis(embeddings, pos_idx[..., None], axis=1)
    neg_task, valid = jax.vmap(lambda k: sample_negative_tasks(k, attributes, alpha,
                                                               num_negatives),
                               out_axes=1)(jax.random.split(k_task, s))   # [T, S, K]
    neg_sample = jax.random.randint(k_neg, neg_task.shape, 0, s)
    negatives = embeddings[neg_task, neg_sample]                            # [T, S, K, D]
    loss, metrics = info_nce(embeddings.reshape(t * s, d), positive.reshape(t * s, d),
                             negatives.reshape(t * s, num_negatives, d), temperature, kind,
                             valid.reshape(t * s, num_negatives), positive_in_denominator)
    return loss, metrics


def focal_distance_loss(embeddings: jax.Array, task_ids: jax.Array, power: float = 2.0,
                        epsilon: float = 0.1, negative_weight: float = 1.0
                        ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """FOCAL's distance-metric loss (Li et al. 2021) over all pairs of ``[B, D]`` embeddings:

        same task:      ||z_i - z_j||^2
        different task: negative_weight / (||z_i - z_j||^power + epsilon)

    averaged over the pairs ``i < j`` of each kind (a kind with no pairs contributes 0).
    """
    if embeddings.ndim != 2 or task_ids.shape != embeddings.shape[:1]:
        raise ValueError(f"embeddings must be [B, D] and task_ids [B], got {embeddings.shape}, "
                         f"{task_ids.shape}")
    b = embeddings.shape[0]
    d2 = jnp.sum((embeddings[:, None] - embeddings[None]) ** 2, axis=-1)
    upper = jnp.triu(jnp.ones((b, b), bool), k=1)
    same = (task_ids[:, None] == task_ids[None]) & upper
    diff = (task_ids[:, None] != task_ids[None]) & upper
    dist_p = jnp.where(diff, d2, 1.0) ** (power / 2.0)
    pos_term = jnp.sum(jnp.where(same, d2, 0.0)) / jnp.maximum(jnp.sum(same), 1)
    neg_term = jnp.sum(jnp.where(diff, negative_weight / (dist_p + epsilon), 0.0)) / \
        jnp.maximum(jnp.sum(diff), 1)
    loss = pos_term + neg_term
    return loss, {"focal": loss, "focal_same": pos_term, "focal_diff": neg_term}


def corro_negatives(key: jax.Array, reward: jax.Array, next_obs: jax.Array, num_negatives: int,
                    reward_std: float = 0.5, next_obs_std: float = 0.0
                    ) -> Tuple[jax.Array, jax.Array]:
    """CORRO's noise negatives (Yuan & Lu 2022): keep the anchor's ``(s, a)``, perturb its outcome.

    ``reward [...]``, ``next_obs [..., O]`` -> ``(reward [..., K], next_obs [..., K, O])`` with
    Gaussian noise of the given standard deviations, so that a transition encoder must read the
    task from ``(r, s')`` given ``(s, a)``.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    k_r, k_s = jax.random.split(key)
    r = reward[..., None] + reward_std * jax.random.normal(k_r, reward.shape + (num_negatives,))
    noise = jax.random.normal(k_s, next_obs.shape[:-1] + (num_negatives, next_obs.shape[-1]))
    s = next_obs[..., None, :] + next_obs_std * noise
    return r, s


def _masked_mean(x: jax.Array, weight: jax.Array) -> jax.Array:
    return jnp.sum(x * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _gaussian_rows(z, mean, var, mask) -> jax.Array:
    """Row weights ``[N]`` (1: valid) of ``z``, ``mean``, ``var`` ``[N, D]``, shapes checked."""
    if not z.shape == mean.shape == var.shape or z.ndim != 2:
        raise ValueError(f"z, mean and var must all be [N, D], got {z.shape}, {mean.shape}, "
                         f"{var.shape}")
    return jnp.ones(z.shape[:1]) if mask is None else mask.astype(z.dtype)


def gaussian_nll(z: jax.Array, mean: jax.Array, var: jax.Array,
                 mask: Optional[jax.Array] = None) -> jax.Array:
    """Negative log-likelihood of ``z [N, D]`` under ``N(mean, diag var)`` (each ``[N, D]``),
    without the constant, averaged over valid rows (``mask [N]``) and dimensions:

        mean_{n,d} [ (z - mean)^2 / (2 var) + log(var) / 2 ]

    CSRO's objective for its variational ``q(z | s, a)`` (trained on detached embeddings)."""
    weight = _gaussian_rows(z, mean, var, mask)
    per = jnp.mean((z - mean) ** 2 / (2.0 * var) + 0.5 * jnp.log(var), axis=-1)
    return _masked_mean(per, weight)


def club_upper_bound(z: jax.Array, mean: jax.Array, var: jax.Array,
                     mask: Optional[jax.Array] = None) -> jax.Array:
    """CLUB (Cheng et al. 2020), the contrastive log-ratio upper bound on ``I(z; x)``, with a
    Gaussian variational ``q(z | x) = N(mean(x), diag var(x))``, over the ``N`` valid rows of one
    task (CSRO, Gao et al. 2023: ``x`` the transition's (s, a), ``z`` its embedding; the negatives
    are the embeddings of the task's other transitions):

        CLUB = mean_i log q(z_i | x_i) - mean_{i,j} log q(z_j | x_i)
             = mean_{i,j,d} (z_j - mean_i)^2 / var_i - mean_{i,d} (z_i - mean_i)^2 / var_i

    The log-variance terms cancel between the two means (the same ``x_i``). Log-likelihoods are
    averaged over dimensions and scaled by 2 as CSRO's code computes them, so that CSRO's
    weights (10-50) carry over: this equals ``2 / D`` times Cheng et al.'s per-sample estimate.
    ``z``, ``mean``, ``var`` are ``[N, D]``; ``mask [N]`` marks the valid rows (pairs of valid
    rows only). Minimising it over the encoder (``q`` held fixed) pushes ``z`` towards being
    unpredictable from ``x`` within the task: an embedding that does not carry the behaviour
    policy's (s, a)."""
    weight = _gaussian_rows(z, mean, var, mask)
    positive = jnp.mean((z - mean) ** 2 / var, axis=-1)                          # [N]
    # the mean over pairs (i, j) without the [N, N] matrix: mean_j (z_j - m_i)^2 is
    # E[z^2] - 2 E[z] m_i + m_i^2 with the moments over the valid j (O(N D) memory, so that
    # CSRO's whole-task negatives fit for contexts of thousands of transitions)
    moment = lambda x: jnp.sum(x * weight[:, None], axis=0) / jnp.maximum(jnp.sum(weight), 1.0)
    m1, m2 = moment(z), moment(z ** 2)
    pairs = jnp.mean((m2 - 2.0 * m1 * mean + mean ** 2) / var, axis=-1)         # [N]
    return _masked_mean(pairs - positive, weight)
