"""BOReL's reward relabelling (Dorfman et al. 2021, §4.2): tasks lend each other episodes.

With goal-directed data every task's episodes go to its own goal, so a context's states alone
tell the task and an agent never sees what the other tasks' rewards look like where it walks
("MDP ambiguity"). Relabelling gives each task episodes of other tasks, with their rewards
recomputed under this task's reward function (``TaskFamily.relabel_reward``): the same states
now come with different rewards in different tasks, so only the rewards identify the task.

BOReL's code (``mix_task_rollouts``) replaces the first episode of two-episode rollouts drawn
with replacement, as many draws as a task has rollouts: about (1 - 1/e) / 2 = 0.32 of a task's
episodes. Here ``fraction`` of each task's episodes (drawn without replacement) are replaced,
each by a uniformly drawn episode of a uniformly drawn other task.

Layout: every episode holds ``horizon`` consecutive transitions (jaxomrl's collection of a
family without termination writes them so); :func:`check_episode_layout` verifies it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.data.sampler import TaskData
from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.types import Transition, scale_action

# BOReL's share of relabelled episodes (module docstring).
BOREL_FRACTION = 0.32


def check_episode_layout(data: TaskData, horizon: int) -> None:
    """Raises ``ValueError`` unless every task's transitions are whole episodes of ``horizon``
    consecutive steps (timesteps 0..horizon-1 in order)."""
    size = data.size
    timestep = np.asarray(data.timestep)
    if size % horizon or not np.array_equal(
            timestep, np.broadcast_to(np.tile(np.arange(horizon), size // horizon), timestep.shape)):
        raise ValueError(f"reward relabelling swaps whole episodes and needs every episode to "
                         f"hold {horizon} consecutive transitions (a family without termination, "
                         "as collected); these data do not")


def relabelled_rewards(family: TaskFamily, task: Task, source: Task,
                       transitions: Transition) -> jax.Array:
    """Task ``task``'s rewards for ``transitions`` (any leading shape, actions in [-1, 1] as in
    ``TaskData``) recorded in task ``source``: ``TaskFamily.relabel_reward`` of every one."""
    low, high = family.action_low, family.action_high
    reward_of = lambda o, a, o2, r: family.relabel_reward(
        task, source, o, scale_action(a, low, high), o2, r)
    for _ in range(transitions.reward.ndim):
        reward_of = jax.vmap(reward_of)
    return reward_of(transitions.obs, transitions.action, transitions.next_obs,
                     transitions.reward)


def relabel_episodes(data: TaskData, tasks: Task, family: TaskFamily, key: jax.Array,
                     fraction: float, with_lent: bool = False):
    """``data`` of ``tasks`` (the same ``[T]`` tasks) with ``fraction`` of every task's episodes
    replaced by other tasks' episodes relabelled with its reward (jittable; the layout is that
    of :func:`check_episode_layout`). Episode ids and timesteps stay those of the slots; the
    behaviour checkpoint is the lent episode's. With ``with_lent``: ``(data, lent [T, N] bool)``,
    ``lent`` marking the transitions of lent episodes."""
    family.check_relabel_reward()
    num_tasks, horizon = data.num_tasks, family.horizon
    if num_tasks < 2:
        raise ValueError("reward relabelling needs at least 2 tasks")
    if data.size % horizon:
        raise ValueError(f"{data.size} transitions per task are not whole episodes of "
                         f"{horizon}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    episodes = data.size // horizon
    num_mixed = int(round(fraction * episodes))
    k_slot, k_task, k_episode = jax.random.split(key, 3)
    slots = jax.vmap(lambda k: jax.random.permutation(k, episodes)[:num_mixed])(
        jax.random.split(k_slot, num_tasks))                                  # [T, M]
    lender = (jnp.arange(num_tasks)[:, None] + jax.random.randint(
        k_task, (num_tasks, num_mixed), 1, num_tasks)) % num_tasks           # never itself
    lent = jax.random.randint(k_episode, (num_tasks, num_mixed), 0, episodes)
    by_episode = lambda x: x.reshape((num_tasks, episodes, horizon) + x.shape[2:])
    tr = jax.tree_util.tree_map(by_episode, data.transitions)
    src = jax.tree_util.tree_map(lambda x: x[lender, lent], tr)             # [T, M, H, ...]
    sources = jax.tree_util.tree_map(lambda x: x[lender], tasks)               # [T, M]
    per_lent = jax.vmap(lambda task, source, eps: relabelled_rewards(family, task, source, eps),
                        (None, 0, 0))                                            # [M, H]
    reward = jax.vmap(per_lent)(tasks, sources, src)                            # [T, M, H]
    src = src.replace(reward=reward.astype(src.reward.dtype))
    rows = jnp.arange(num_tasks)[:, None]
    merged = jax.tree_util.tree_map(lambda x, s: x.at[rows, slots].set(s), tr, src)
    flat = lambda x: x.reshape((num_tasks, data.size) + x.shape[3:])
    checkpoint = by_episode(data.checkpoint)
    checkpoint = checkpoint.at[rows, slots].set(checkpoint[lender, lent])
    out = data.replace(transitions=jax.tree_util.tree_map(flat, merged),
                       checkpoint=flat(checkpoint))
    if not with_lent:
        return out
    lent_mask = jnp.zeros((num_tasks, episodes, horizon), bool).at[rows, slots].set(True)
    return out, flat(lent_mask)
