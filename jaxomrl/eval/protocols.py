"""The evaluation protocols of R2PGO and ReDA, for any task-conditioned policy.

Where the context the policy infers its task from comes from:

* ``online`` (R2PGO's online adaptation; ReDA's *on-policy* protocol): the policy's own
  interaction. ``num_episodes`` consecutive episodes per task, the embedding re-inferred from the
  history at every step and the history carried across episodes (or reset); episode 1 is
  zero-shot adaptation. Returns ``[T, num_episodes]``.
* ``offline_ctx`` (FOCAL / CORRO): one episode of the task's offline *training* data (any of
  its behaviour checkpoints), read before the episode; the embedding is then held fixed.
  Returns ``[T, 1]``, the mean over ``num_contexts`` drawn episodes.
* ``offpolicy_ctx`` (ReDA's *off-policy* protocol): as ``offline_ctx`` but the episode comes from
  data of behaviour checkpoints held out of training (the collection's ``ood`` split).
* ``nonprior_ctx`` (CSRO's non-prior context collection, an ``online`` variant): the agent
  collects its own context in ``nonprior_episodes`` episodes, acting uniformly at random for the
  first half of their steps and by the policy (on the context so far) for the second half; then
  one episode with that context held fixed, whose return is reported (``[T, 1]``). No offline
  data is needed, and the random half makes the context independent of what the policy believes
  at first (CSRO's answer to contexts that only reflect the behaviour policy).

``evaluate_policy`` runs every protocol whose context source exists, for every task set (split),
and reports ``{split}_{protocol}``; the task sets of a protocol roll out together, as one batch.
Everything is jittable and ``vmap``s over seeds.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.eval.adaptation import Context, context_from_data, online_returns
from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.types import Policy

# Context source of each fixed-context protocol (keys of ``evaluate_policy``'s ``sources``).
CONTEXT_PROTOCOLS = {"offline_ctx": "data", "offpolicy_ctx": "ood"}


def fixed_context_returns(family: TaskFamily, tasks: Task, policy: Policy, context: Context,
                          data, key: jax.Array, num_contexts: int = 4) -> jax.Array:
    """``[T]``: return of one episode per task with the embedding inferred from one episode of
    ``data`` (a ``TaskData`` of the same tasks) and held fixed; mean over ``num_contexts`` episodes
    drawn uniformly from ``data``."""
    if num_contexts < 1:
        raise ValueError(f"num_contexts must be >= 1, got {num_contexts}")
    if data.num_tasks != tasks.num_tasks:
        raise ValueError(f"context data holds {data.num_tasks} tasks, the task set "
                         f"{tasks.num_tasks}")

    def one(k):
        k_ctx, k_run = jax.random.split(k)
        start = context_from_data(context, data, k_ctx, family.horizon)
        return online_returns(family, tasks, policy, context, k_run, 1, initial_context=start,
                              freeze_from=0)[:, 0]

    return jnp.mean(jax.vmap(one)(jax.random.split(key, num_contexts)), axis=0)


def nonprior_returns(family: TaskFamily, tasks: Task, policy: Policy, context: Context,
                     key: jax.Array, explore_episodes: int) -> jax.Array:
    """``[T]``: the return of one episode with the context collected beforehand by the agent in
    ``explore_episodes`` episodes, the first half of whose steps are uniformly random actions
    (CSRO's epsilon schedule: random while fewer than half the collection budget's steps have
    passed, then the policy), held fixed during the episode."""
    if explore_episodes < 1:
        raise ValueError(f"explore_episodes must be >= 1, got {explore_episodes}")
    returns = online_returns(family, tasks, policy, context, key, explore_episodes + 1,
                             carry_context=True,
                             random_steps=explore_episodes * family.horizon // 2,
                             freeze_from=explore_episodes)
    return returns[:, -1]


def _joinable(parts) -> bool:
    """Whether pytrees differ only in their leading (task) axis."""
    shapes = [[x.shape[1:] for x in jax.tree_util.tree_leaves(p)] for p in parts]
    return all(s == shapes[0] for s in shapes)


def evaluate_policy(family: TaskFamily, tasks: Mapping[str, Task], policy: Policy,
                    context: Optional[Context], key: jax.Array,
                    sources: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    num_episodes: int = 1, carry_context: bool = True,
                    num_contexts: int = 4, nonprior_episodes: int = 0) -> Dict[str, jax.Array]:
    """Every protocol for every task set.

    Args:
      family: the task family.
      tasks: ``{split: Task}`` (e.g. ``train`` = seen, ``test`` = unseen tasks).
      policy: ``policy(obs, z, key) -> action in [-1, 1]^d`` (``jaxomrl.types.Policy``) or a
        ``jaxomrl.types.RecurrentPolicy`` (its memory restarts at every episode of every
        protocol; the context is what the protocol makes it).
      context: the policy's online task inference (None: task-agnostic; only ``online`` runs).
      key: PRNG key.
      sources: ``{"data": {split: TaskData}, "ood": {split: TaskData}}``, the context data of the
        fixed-context protocols (a missing source or split skips that protocol there).
      num_episodes, carry_context: of the ``online`` protocol.
      num_contexts: context episodes drawn per task by the fixed-context protocols.
      nonprior_episodes: context-collection episodes of the ``nonprior_ctx`` protocol (0: not
        run).
    Returns ``{f"{split}_online": [T, K], f"{split}_offline_ctx": [T, 1],
    f"{split}_offpolicy_ctx": [T, 1], f"{split}_nonprior_ctx": [T, 1]}``.
    """
    sources = sources or {}
    splits = sorted(tasks)
    sizes = [tasks[s].num_tasks for s in splits]
    ends = np.cumsum(sizes)

    def joined(parts):  # every split's tasks (or data) in one batch: one rollout program
        return jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)

    def per_split(name, values):
        return {f"{s}_{name}": v for s, v in zip(splits, jnp.split(values, ends[:-1]))}

    k_on, k_fixed = jax.random.split(key)
    all_tasks = joined([tasks[s] for s in splits])
    out = per_split("online", online_returns(family, all_tasks, policy, context, k_on,
                                             num_episodes, carry_context))
    if context is None:
        return out
    if nonprior_episodes:   # its own key (fold_in), so the other protocols' keys stay as they were
        out.update(per_split("nonprior_ctx", nonprior_returns(
            family, all_tasks, policy, context, jax.random.fold_in(key, 2),
            nonprior_episodes)[:, None]))
    for i, (protocol, source) in enumerate(sorted(CONTEXT_PROTOCOLS.items())):
        have = [s for s in splits if sources.get(source, {}).get(s) is not None]
        k = jax.random.fold_in(k_fixed, i)
        if have == splits and _joinable([sources[source][s] for s in splits]):
            returns = fixed_context_returns(family, all_tasks, policy, context,
                                            joined([sources[source][s] for s in splits]), k,
                                            num_contexts)
            out.update(per_split(protocol, returns[:, None]))
            continue
        for j, s in enumerate(have):  # a source with some splits only: one rollout per split
            out[f"{s}_{protocol}"] = fixed_context_returns(
                family, tasks[s], policy, context, sources[source][s], jax.random.fold_in(k, j),
                num_contexts)[:, None]
    return out
