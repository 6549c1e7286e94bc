"""ReDA's adversarial data generation (Algorithm 1, lines 8-12), as pure jittable functions.

One call of :func:`adversarial_batch` rolls the adversarial policy out in every training task's
learned models from start states of the joint dataset (branch rollouts), embeds every prefix of
each rollout with the current context encoder, and rewards each model step with eq. 6:

    r_k = [R(z_{k-1}) - R(z_k)] - lambda_1 u(s, a) + lambda_2 r(s, a)

where ``z_k`` embeds the rollout's first ``k`` transitions (right-aligned, as the encoder's
context windows; the query is the state after them), ``R`` is the InfoNCE score against the
task's real contexts (positives) and the other tasks' real contexts (negatives)
(``jaxomrl.losses.adversarial``), ``u`` MOPO's ensemble uncertainty and ``r`` the shared reward
model. The first step of a rollout has no earlier embedding: its ``r_adv`` is 0. The returned
rollouts (with the reward model's task reward, as contexts carry it) are the adversarial contexts
the encoder trains on; with ``reward`` replaced by ``info["adv_reward"]`` they are the
adversary's SAC batch.

The training loop that alternates this with the adversary's SAC update and the encoder's InfoNCE
update, and the ``reda`` algorithm in the runner, are the next step (issue 7).
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.data.sampler import TaskData, sample_transitions, sample_windows
from jaxomrl.envs.base import Transition
from jaxomrl.losses.adversarial import adversarial_reward, infonce_score


def prefix_contexts(rollout: Transition) -> Tuple[Transition, jax.Array, Transition]:
    """Every prefix of one rollout ``[L]`` as a right-aligned context window of length ``L``:
    ``(ctx [L, L], mask [L, L], query [L])``; row ``k - 1`` holds the first ``k`` transitions at
    the window's end and its query is the transition whose ``obs`` is the state after them."""
    length = rollout.reward.shape[0]
    k = jnp.arange(1, length + 1)[:, None]                                 # prefix lengths
    pos = jnp.arange(length)[None, :] - (length - k)                       # [L, L]
    mask = pos >= 0
    ctx = jax.tree_util.tree_map(lambda x: x[jnp.clip(pos, 0, length - 1)], rollout)
    query = rollout.replace(obs=rollout.next_obs)
    return ctx, mask, query


def flat_rep(x: jax.Array, s: int, length: int) -> jax.Array:
    """``[T, ...] -> [T * s * length, ...]``: per-task rows repeated for every prefix."""
    t = x.shape[0]
    return jnp.broadcast_to(x[:, None, None], (t, s, length) + x.shape[1:]).reshape(
        (t * s * length,) + x.shape[1:])


def adversarial_batch(embed: Callable, encoder_params, rollout: Callable, reward_fn: Callable,
                      data: TaskData, key: jax.Array, starts_per_task: int, length: int,
                      num_positives: int, lambda_uncertainty: float = 1.0,
                      lambda_task: float = 1.0, temperature: float = 1.0
                      ) -> Tuple[Transition, Dict[str, jax.Array]]:
    """Adversarial rollouts in every task's models, rewarded by eq. 6.

    Args:
      embed: ``embed(params, ctx, mask, query) -> z`` of the context encoder (leading axes
        broadcast; ``EncoderLearner.embed`` with a transformer / window encoder).
      encoder_params: the current encoder.
      rollout: ``rollout(task_index, starts [S, obs], key, length) -> (Transition [S, L],
        u [S, L])``: the adversarial policy acting in task ``task_index``'s learned models
        (e.g. ``Dynamics.rollout`` with the adversary's ``act`` over that task's slice of the
        ensemble parameters).
      reward_fn: ``reward_fn(obs, action) -> r`` (the shared reward model).
      data: the real data ``TaskData [T, N]`` (start states from the joint dataset; positives
        and negatives from the tasks' real contexts).
      starts_per_task, length: rollouts per task and model steps per rollout (= context length).
      num_positives: real contexts per task behind ``R``.
    Returns (rollouts ``Transition [T, S, L]`` with the model's task reward, info):
    ``adv_reward`` (eq. 6), ``uncertainty``, ``task_reward``, ``score`` (``R(z_k)``)
    ``[T, S, L]``, ``embeddings`` ``[T, S, L, D]``, ``positives`` (the real contexts'
    embeddings) ``[T, P, D]``.
    """
    t = data.num_tasks
    k_start, k_roll, k_real = jax.random.split(key, 3)
    # Start states from the joint dataset: every task draws from all tasks' states.
    pool = sample_transitions(data, k_start, starts_per_task).obs            # [T, S, obs]
    shuffle = jax.random.permutation(jax.random.fold_in(k_start, 1), t * starts_per_task)
    starts = pool.reshape((t * starts_per_task, -1))[shuffle].reshape(pool.shape)
    tr, u = jax.vmap(lambda i, s, k: rollout(i, s, k, length))(
        jnp.arange(t), starts, jax.random.split(k_roll, t))                  # [T, S, L]
    task_r = jax.vmap(jax.vmap(jax.vmap(reward_fn)))(tr.obs, tr.action)
    tr = tr.replace(reward=task_r)

    # Real contexts: positives of their own task, negatives of the others.
    real, real_mask = sample_windows(data, k_real, num_positives, length + 1)
    real_ctx = jax.tree_util.tree_map(lambda x: x[:, :, :-1], real)
    real_query = jax.tree_util.tree_map(lambda x: x[:, :, -1], real)
    z_real = embed(encoder_params, real_ctx, real_mask[:, :, :-1], real_query)   # [T, P, D]
    other = np.array([[j for j in range(t) if j != i] for i in range(t)]).reshape(t, t - 1)
    others = z_real[other].reshape(t, -1, z_real.shape[-1])                  # [T, (T-1)P, D]

    ctx, mask, query = jax.vmap(jax.vmap(prefix_contexts))(tr)               # [T, S, L, L]
    z = embed(encoder_params, ctx, mask, query)                               # [T, S, L, D]
    s, d = starts_per_task, z.shape[-1]
    flat = lambda x: x.reshape((t * s * (length - 1),) + x.shape[3:])
    rep = lambda x: jnp.broadcast_to(x[:, None, None], (t, s, length - 1) + x.shape[1:])
    # R(z_k) for every prefix, then eq. 6 through the standalone loss (r_adv_1 = 0: no z_0).
    score = infonce_score(z.reshape(-1, d), flat_rep(z_real, s, length),
                          flat_rep(others, s, length), temperature).reshape(t, s, length)
    reward = adversarial_reward(
        flat(z[:, :, :-1]), flat(z[:, :, 1:]), flat(rep(z_real)), flat(rep(others)),
        flat(u[:, :, 1:]), flat(task_r[:, :, 1:]), lambda_uncertainty, lambda_task,
        temperature).reshape(t, s, length - 1)
    first = -lambda_uncertainty * u[:, :, :1] + lambda_task * task_r[:, :, :1]
    total = jnp.concatenate([first, reward], axis=2)
    info = {"adv_reward": total, "uncertainty": u, "task_reward": task_r, "score": score,
            "positives": z_real, "embeddings": z}
    return tr, info
