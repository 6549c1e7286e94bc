"""Jittable, task-balanced sampling from a multi-task dataset on the device.

``TaskData`` is the dataset as a pytree of device arrays ``[T, N, ...]``. The samplers draw the
same number of items from every requested task, so batches have static shapes ``[M, B, ...]``
(``M`` tasks, ``B`` per task) and work inside ``jit``, ``vmap`` and ``lax.scan``:

    data = TaskData.from_dataset(dataset)
    batch = sample_transitions(data, key, 256)                 # Transition [T, 256]
    ctx, mask = sample_windows(data, key, 32, window=16)       # Transition [T, 32, 16], [T, 32, 16]
    tasks = sample_task_subset(key, data.num_tasks, 16)        # a meta-batch of 16 task indices
    batch = sample_transitions(data, key, 256, tasks)          # Transition [16, 256]
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxomrl.data.dataset import check_same_tasks, digest
from jaxomrl.types import Transition, unscale_action


@struct.dataclass
class TaskData:
    """A multi-task dataset on the device. Actions are normalised to [-1, 1] (policies' space).

    Shapes: ``transitions`` a :class:`Transition` with leaves ``[T, N, ...]``; ``episode``,
    ``timestep``, ``checkpoint`` ``[T, N]``; ``attributes`` ``[T, attr_dim]``.
    """

    transitions: Transition
    episode: jax.Array
    timestep: jax.Array
    checkpoint: jax.Array
    attributes: jax.Array

    @property
    def num_tasks(self) -> int:
        return int(self.episode.shape[0])

    @property
    def size(self) -> int:
        """Transitions per task."""
        return int(self.episode.shape[1])

    @classmethod
    def from_dataset(cls, ds) -> "TaskData":
        tr = ds.transitions
        low, high = float(ds.meta["action_low"]), float(ds.meta["action_high"])
        action = unscale_action(tr["action"], low, high).astype(np.float32)
        transitions = Transition(**{f: jnp.asarray(action if f == "action" else tr[f])
                                    for f in Transition.__dataclass_fields__})
        return cls(transitions=transitions, episode=jnp.asarray(tr["episode"]),
                   timestep=jnp.asarray(tr["timestep"]), checkpoint=jnp.asarray(tr["checkpoint"]),
                   attributes=jnp.asarray(ds.attributes))

    def gather(self, tasks: jax.Array, index: jax.Array) -> Transition:
        """Transitions at ``index [M, ...]`` of tasks ``tasks [M]``."""
        return jax.tree_util.tree_map(lambda x: take(x, tasks, index), self.transitions)


def observation_moments(data: TaskData, min_std: float = 1e-3) -> Tuple[jax.Array, jax.Array]:
    """``(mean, std)``, each ``[obs_dim]``: the moments of every observation dimension over all
    tasks' transitions, ``std`` plus ``min_std`` (TD3+BC's state normalisation, Fujimoto & Gu
    2021, which adds 1e-3)."""
    obs = data.transitions.obs.reshape(-1, data.transitions.obs.shape[-1])
    return jnp.mean(obs, axis=0), jnp.std(obs, axis=0) + min_std


def standardise(moments: Optional[Tuple[jax.Array, jax.Array]], obs: jax.Array) -> jax.Array:
    """``(obs - mean) / std`` (``obs`` unchanged for ``moments`` None)."""
    return obs if moments is None else (obs - moments[0]) / moments[1]


def take(x: jax.Array, tasks: jax.Array, index: jax.Array) -> jax.Array:
    """``x [T, N, ...]`` at tasks ``[M]`` and per-task positions ``index [M, ...]`` (one gather
    of the rows asked for; the tasks' whole ``[M, N, ...]`` slices are never copied)."""
    rows = tasks.reshape((-1,) + (1,) * (index.ndim - 1))
    return x[rows, index]


def sample_where(key: jax.Array, allowed: jax.Array, num: int) -> jax.Array:
    """``[M, num]`` positions drawn uniformly, with replacement, among each row's True entries
    of ``allowed [M, N]`` (a row with none gives 0). The same distribution as a categorical
    over ``where(allowed, 0, -inf)``, at O(N + num log N) per row instead of ``num x N``
    Gumbel draws: a uniform rank among the row's allowed entries, found in their running
    count."""
    count = jnp.cumsum(allowed.astype(jnp.int32), axis=-1)                  # [M, N]
    total = count[:, -1:]
    rank = jax.random.randint(key, (allowed.shape[0], num), 0, jnp.maximum(total, 1))
    pos = jax.vmap(lambda c, r: jnp.searchsorted(c, r, side="right"))(count, rank)
    return jnp.where(total > 0, pos, 0)


def _tasks(data: TaskData, tasks: Optional[jax.Array]) -> jax.Array:
    if tasks is None:
        return jnp.arange(data.num_tasks)
    tasks = jnp.asarray(tasks)
    if tasks.ndim != 1:
        raise ValueError(f"tasks must be a 1-D array of task indices, got shape {tasks.shape}")
    return tasks


def sample_task_subset(key: jax.Array, num_tasks: int, meta_batch: int) -> jax.Array:
    """``meta_batch`` distinct task indices drawn uniformly from ``range(num_tasks)``."""
    if not 1 <= meta_batch <= num_tasks:
        raise ValueError(f"meta_batch must be in [1, {num_tasks}], got {meta_batch}")
    return jax.random.choice(key, num_tasks, (meta_batch,), replace=False)


def sample_indices(data: TaskData, key: jax.Array, batch_size: int,
                   tasks: Optional[jax.Array] = None) -> Tuple[jax.Array, jax.Array]:
    """``(tasks [M], index [M, B])``: ``batch_size`` uniform positions per task, with replacement.
    ``data.gather(tasks, index)`` gives the transitions; ``take(x, tasks, index)`` any per-transition
    array ``x [T, N, ...]`` aligned with them (e.g. precomputed task embeddings)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tasks = _tasks(data, tasks)
    return tasks, jax.random.randint(key, (tasks.shape[0], batch_size), 0, data.size)


def sample_meta_batch(data: TaskData, task_key: jax.Array, index_key: jax.Array, meta_batch: int,
                      per_task: int) -> Tuple[jax.Array, jax.Array]:
    """A meta-policy's batch positions ``(tasks [M], index [M, per_task])``: ``meta_batch``
    distinct tasks drawn with ``task_key`` (every task, in order, when ``meta_batch`` covers
    them all), and ``per_task`` uniform positions in each drawn with ``index_key``."""
    tasks = (sample_task_subset(task_key, data.num_tasks, meta_batch)
             if meta_batch < data.num_tasks else None)
    return sample_indices(data, index_key, per_task, tasks)


def sample_transitions(data: TaskData, key: jax.Array, batch_size: int,
                       tasks: Optional[jax.Array] = None) -> Transition:
    """``batch_size`` transitions per task, uniformly with replacement: ``Transition [M, B]``."""
    return data.gather(*sample_indices(data, key, batch_size, tasks))


def sample_windows(data: TaskData, key: jax.Array, batch_size: int, window: int,
                   tasks: Optional[jax.Array] = None, same_episode: bool = True
                   ) -> Tuple[Transition, jax.Array]:
    """Context windows: ``window`` consecutive transitions of one task ending at a uniform index.

    Returns ``(Transition [M, B, W], mask [M, B, W])``: ``mask`` is False for positions before the
    task's first transition and, with ``same_episode``, for transitions of an earlier episode than
    the window's last one (so a window never mixes episodes or behaviour checkpoints). The last
    position is always valid. Windows are right-aligned: padding comes first.
    """
    tasks, pos, mask = window_positions(data, key, batch_size, window, tasks, same_episode)
    return data.gather(tasks, pos), mask


def window_positions(data: TaskData, key: jax.Array, batch_size: int, window: int,
                     tasks: Optional[jax.Array] = None, same_episode: bool = True,
                     episode_ends: bool = False) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """The positions behind :func:`sample_windows`: ``(tasks [M], pos [M, B, W], mask [M, B,
    W])``, ``take(x, tasks, pos)`` giving any per-transition array's windows. With
    ``episode_ends`` the windows end at the last transition of a uniformly drawn episode (a
    trajectory's final steps: Prompt-DT's prompts) instead of at a uniform position."""
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
    if window > data.size:
        raise ValueError(f"window ({window}) is longer than the data per task ({data.size})")
    tasks = _tasks(data, tasks)
    shape = (tasks.shape[0], batch_size)
    if episode_ends:
        end = sample_where(key, episode_last(data)[tasks], batch_size)        # [M, B]
    else:
        end = jax.random.randint(key, shape, 0, data.size)
    pos = end[..., None] - (window - 1) + jnp.arange(window)
    mask = pos >= 0
    pos = jnp.maximum(pos, 0)
    if same_episode:
        same = take(data.episode, tasks, pos) == take(data.episode, tasks, end)[..., None]
        mask = mask & same
    return tasks, pos, mask


def episode_first(data: TaskData) -> jax.Array:
    """``[T, N]`` bool: the transition is its episode's first in the data."""
    return jnp.concatenate([jnp.ones((data.num_tasks, 1), bool),
                            data.episode[:, 1:] != data.episode[:, :-1]], axis=1)


def episode_last(data: TaskData) -> jax.Array:
    """``[T, N]`` bool: the transition is its episode's last in the data (the next one is
    another episode's first, or the data end)."""
    return jnp.concatenate([episode_first(data)[:, 1:], jnp.ones((data.num_tasks, 1), bool)],
                           axis=1)


def returns_to_go(data: TaskData) -> jax.Array:
    """``[T, N]``: every transition's undiscounted return from it to its episode's end in the
    data (the decision transformer's return-to-go)."""
    def one_task(reward, last):
        def body(g, inp):
            r, end = inp
            g = r + jnp.where(end, 0.0, g)
            return g, g
        return jax.lax.scan(body, jnp.zeros((), reward.dtype), (reward, last), reverse=True)[1]
    return jax.vmap(one_task)(data.transitions.reward, episode_last(data))


def episode_returns(data: TaskData) -> jax.Array:
    """``[T, N]``: every transition's whole-episode return (its episode's first transition's
    return-to-go; an episode cut by the data's end counts what the data hold of it)."""
    first = episode_first(data)
    start = jax.lax.cummax(jnp.where(first, jnp.arange(data.size), 0), axis=1)
    return jnp.take_along_axis(returns_to_go(data), start, axis=1)


def top_episodes(data: TaskData, fraction: float, among: Optional[jax.Array] = None
                 ) -> jax.Array:
    """``[T, N]`` float 0/1: the transition's episode is among the best ``fraction`` of its task's
    episodes by return (at least one episode per task; ties at the threshold kept). The episode
    filter of percentile behaviour cloning ("%BC", Chen et al. 2021, Decision Transformer).
    ``among [T, N]`` bool (whole episodes): only these episodes are ranked and counted, every
    other transition gets 0 (e.g. a task's own episodes among relabelled ones)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ret = episode_returns(data)
    first = episode_first(data)
    if among is not None:
        first = first & among
        ret = jnp.where(among, ret, -jnp.inf)

    def threshold(r, f):
        n = jnp.sum(f)
        keep = jnp.maximum(jnp.ceil(fraction * n), 1).astype(jnp.int32)
        ranked = jnp.sort(jnp.where(f, r, -jnp.inf))[::-1]        # episodes' returns, best first
        return ranked[keep - 1]
    cut = jax.vmap(threshold)(ret, first)
    keep = ret >= cut[:, None]
    return (keep if among is None else keep & among).astype(jnp.float32)


def sample_episodes(data: TaskData, key: jax.Array, batch_size: int, length: int,
                    tasks: Optional[jax.Array] = None, episodes: int = 1
                    ) -> Tuple[Transition, jax.Array]:
    """Trajectory prefixes: ``length`` transitions from the start of a uniformly drawn episode.

    Returns ``(Transition [M, B, L], mask [M, B, L])``; ``mask`` is False after the episode ends
    (or the task's data ends). Windows are left-aligned, as recurrent encoders need. With
    ``episodes > 1`` a prefix runs on into the following ``episodes - 1`` episodes of the same
    behaviour checkpoint (a multi-episode history, BOReL's belief horizon; episodes are stored
    in order, numbered consecutively), masked where they end or the checkpoint changes.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if batch_size < 1 or length < 1:
        raise ValueError(f"batch_size and length must be >= 1, got {batch_size}, {length}")
    if length > data.size:
        raise ValueError(f"length ({length}) is longer than the data per task ({data.size})")
    tasks = _tasks(data, tasks)
    start = sample_where(key, data.timestep[tasks] == 0, batch_size)        # [M, B]
    pos = start[..., None] + jnp.arange(length)
    mask = pos < data.size
    pos = jnp.minimum(pos, data.size - 1)
    ahead = take(data.episode, tasks, pos) - take(data.episode, tasks, start)[..., None]
    same_behaviour = take(data.checkpoint, tasks, pos) == take(data.checkpoint, tasks,
                                                                start)[..., None]
    # a transition counts only if every one before it does (no gaps, no return after a change)
    valid = mask & (ahead >= 0) & (ahead < episodes) & same_behaviour
    return data.gather(tasks, pos), jnp.cumprod(valid, axis=-1).astype(bool)


EVAL_SPLITS = ("train", "val", "test")


def run_data(ds, ood=None, splits=EVAL_SPLITS) -> Tuple[Dict[str, TaskData], Dict[str, Any]]:
    """``(data, eval_data)`` of a ``MultiTaskDataset``: phases train on its training tasks
    (``data["train"]``, with the tasks themselves in ``data["train_tasks"]``: what data
    transforms that need the tasks' reward functions read); the evaluation rolls out in those of
    ``splits`` (``train``, ``val``, ``test``) the dataset has. Training-time evaluation reads
    ``("train", "val")``: the test tasks are evaluated once, at the end. ``ood``: the
    collection's held-out-checkpoint dataset of the same tasks (the off-policy protocol's
    context source), or None."""
    unknown = set(splits) - set(EVAL_SPLITS)
    if unknown:
        raise ValueError(f"unknown evaluation splits {sorted(unknown)}; known: {EVAL_SPLITS}")
    masks = {"train": ds.is_train, "val": ds.is_val, "test": ds.is_test}
    train = np.flatnonzero(masks["train"])
    if train.size == 0:
        raise ValueError("the dataset has no training tasks")
    if ood is not None:
        check_same_tasks(ds, ood, "the training and ood datasets")
    tasks = ds.tasks()
    data = {"train": TaskData.from_dataset(ds.select_tasks(train)), "train_tasks": tasks[train]}
    eval_data = {"tasks": {}, "data": {}, "ood": {}}
    for split in splits:
        index = np.flatnonzero(masks[split])
        if not index.size:
            continue
        eval_data["tasks"][split] = tasks[index]
        eval_data["data"][split] = data["train"] if split == "train" else \
            TaskData.from_dataset(ds.select_tasks(index))
        if ood is not None:
            eval_data["ood"][split] = TaskData.from_dataset(ood.select_tasks(index))
    return data, eval_data


def describe_data(path: str, ds, ood=None) -> Dict[str, Any]:
    """The facts about a run's data that identify it (``run.json``'s ``description``): where the
    dataset is, its checksum (and its ood companion's), its task counts."""
    return {"family": ds.family, "dataset": os.path.abspath(path),
            "dataset_sha256": digest(ds), "num_train_tasks": int(ds.is_train.sum()),
            "num_test_tasks": int(ds.is_test.sum()),
            "ood_dataset_sha256": digest(ood) if ood is not None else None,
            **({"num_val_tasks": int(ds.is_val.sum())} if ds.is_val.any() else {})}
