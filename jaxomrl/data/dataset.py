"""The on-disk multi-task dataset format (one ``.npz`` file), with atomic writes and validation.

Format ``jaxomrl.MultiTaskDataset`` version 1. Every task holds the same number ``N`` of
transitions, so the arrays are rectangular ``[num_tasks, N, ...]`` and sampling needs no ragged
indexing. Transitions of a task are stored as contiguous streams: checkpoint by checkpoint, and
within a checkpoint environment by environment, in time order.

=================  ==================  =========  =================================================
array              shape               dtype      meaning
=================  ==================  =========  =================================================
obs                [T, N, obs_dim]     float32    observation acted on
action             [T, N, action_dim]  float32    action taken, in the family's action box
reward             [T, N]              float32    the task's reward
next_obs           [T, N, obs_dim]     float32    observation reached (before any reset)
terminated         [T, N]              bool       true terminal state (no bootstrapping)
truncated          [T, N]              bool       episode cut by the horizon
episode            [T, N]              int32      episode index within the task, from 0
timestep           [T, N]              int32      step index within the episode, from 0
checkpoint         [T, N]              int32      behaviour-policy checkpoint that produced it
attributes         [T, attr_dim]       float32    task attribute vectors p_i
is_test            [T]                 bool       task belongs to the family's unseen test split
param/<name>       [T, ...]            float32    the task's physical parameters
meta.json          [bytes]             uint8      metadata, JSON (below)
=================  ==================  =========  =================================================

``done`` is ``terminated | truncated``; an episode ends where ``episode`` changes (the last
episode of a stream may be cut by the collection budget without a done flag). Metadata keys:
``format``, ``version``, ``family``, ``family_config``, ``obs_dim``, ``action_dim``, ``attr_dim``,
``action_low``, ``action_high``, ``num_tasks``, ``transitions_per_task``, ``checkpoints`` (ids
present), ``checkpoint_env_steps`` (environment steps per task of checkpoint k is ``k * value``),
``checkpoint_returns`` (``[T][C]`` mean completed-episode return per checkpoint), ``split``
(``train`` or ``ood``), ``val_tasks`` (indices of the tasks of the family's validation split,
unseen in training like the test tasks, what settings are chosen on; absent: none), ``physics`` (the simulator that produced it: ``mjx``, ``c`` for MuJoCo C,
``jax`` for a pure-JAX family, ``imported`` for data of another codebase
(``jaxomrl.data.imports``); absent in datasets written before the choice, which are MJX's),
``provenance`` (how it was made: collection config), ``sha256`` (of every array). No wall-clock
time is stored, so the same collection gives byte-identical files.

Writes go to a temporary file in the destination directory, are flushed and fsync-ed, and are
renamed over the destination, so a crash never leaves a half-written dataset under its name.
Loading checks the container, format, version, keys, dtypes, shapes, checksums, finiteness,
index ranges and (if asked) the family, and raises :class:`DatasetError` naming the problem.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import jax
import numpy as np

from jaxomrl import __version__
from jaxomrl.errors import JaxomrlError
from jaxomrl.io import atomic_write

if TYPE_CHECKING:  # annotations only: loading a dataset does not import the simulators
    from jaxomrl.envs.base import Task, TaskFamily

FORMAT = "jaxomrl.MultiTaskDataset"
VERSION = 1

# name -> (dtype, trailing shape as metadata keys or ints)
TRANSITION_FIELDS = {
    "obs": (np.float32, ("obs_dim",)),
    "action": (np.float32, ("action_dim",)),
    "reward": (np.float32, ()),
    "next_obs": (np.float32, ("obs_dim",)),
    "terminated": (np.bool_, ()),
    "truncated": (np.bool_, ()),
    "episode": (np.int32, ()),
    "timestep": (np.int32, ()),
    "checkpoint": (np.int32, ()),
}
REQUIRED_META = ("format", "version", "family", "family_config", "obs_dim", "action_dim",
                 "attr_dim", "action_low", "action_high", "num_tasks", "transitions_per_task",
                 "checkpoints", "checkpoint_env_steps", "checkpoint_returns", "split",
                 "provenance", "sha256")


class DatasetError(JaxomrlError, ValueError):
    """A dataset file is missing, unreadable, of another version or family, or inconsistent."""


@dataclasses.dataclass
class MultiTaskDataset:
    """Host-side dataset: numpy arrays (``transitions``, ``attributes``, ``is_test``,
    ``task_params``) and a metadata dict. See the module docstring for shapes."""

    transitions: Dict[str, np.ndarray]
    attributes: np.ndarray
    is_test: np.ndarray
    task_params: Dict[str, np.ndarray]
    meta: Dict[str, Any]

    @property
    def num_tasks(self) -> int:
        return int(self.attributes.shape[0])

    @property
    def transitions_per_task(self) -> int:
        return int(self.transitions["reward"].shape[1])

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def is_val(self) -> np.ndarray:
        """``[T]`` bool: the task belongs to the family's validation split."""
        mask = np.zeros(self.num_tasks, bool)
        mask[np.asarray(self.meta.get("val_tasks", []), np.int64)] = True
        return mask

    @property
    def is_train(self) -> np.ndarray:
        """``[T]`` bool: a training task (neither test nor validation)."""
        return ~self.is_test & ~self.is_val

    def make_family(self, physics: Optional[str] = None):
        """The task family (with its configuration) that produced the data, simulated by
        ``physics`` (``envs.make``'s; default: MuJoCo C on CPUs, MJX on accelerators) --
        not necessarily the backend that collected the data, ``meta["physics"]``."""
        from jaxomrl import envs
        return envs.make(self.meta["family"], physics=physics, **self.meta["family_config"])

    def tasks(self):
        """The data's tasks as a batched :class:`jaxomrl.envs.Task` (rebuilt from parameters)."""
        return self.make_family().make_tasks(self.task_params)

    def select_tasks(self, index) -> "MultiTaskDataset":
        """A dataset with a subset of tasks (``index``: int array or bool mask over tasks)."""
        index = np.arange(self.num_tasks)[np.asarray(index)]
        if index.size == 0:
            raise DatasetError("task selection is empty")
        meta = dict(self.meta, num_tasks=int(index.size),
                    checkpoint_returns=[self.meta["checkpoint_returns"][i] for i in index])
        meta.pop("sha256", None)
        if "val_tasks" in meta:
            meta["val_tasks"] = np.flatnonzero(self.is_val[index]).tolist()
        return MultiTaskDataset(
            transitions={k: v[index] for k, v in self.transitions.items()},
            attributes=self.attributes[index], is_test=self.is_test[index],
            task_params={k: v[index] for k, v in self.task_params.items()}, meta=meta)

    def arrays(self) -> Dict[str, np.ndarray]:
        out = dict(self.transitions)
        out["attributes"] = self.attributes
        out["is_test"] = self.is_test
        out.update({f"param/{k}": v for k, v in self.task_params.items()})
        return out


def _sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _check_meta_types(meta: Dict[str, Any], where: str) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise DatasetError(f"{where}: metadata lacks {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise DatasetError(f"{where}: not a jaxomrl multi-task dataset (format {meta['format']!r})")
    if meta["version"] != VERSION:
        raise DatasetError(f"{where}: dataset format version {meta['version']} is not supported "
                           f"(this jaxomrl reads version {VERSION}); re-collect or convert it")


def validate(ds: MultiTaskDataset, where: str = "dataset", check_sha: bool = True) -> None:
    """Raises :class:`DatasetError` if ``ds`` is inconsistent (shapes, dtypes, values)."""
    meta = ds.meta
    _check_meta_types(dict(meta, sha256=meta.get("sha256", {})), where)
    t, n = int(meta["num_tasks"]), int(meta["transitions_per_task"])
    if t < 1 or n < 1:
        raise DatasetError(f"{where}: empty dataset ({t} tasks x {n} transitions)")
    dims = {k: int(meta[k]) for k in ("obs_dim", "action_dim", "attr_dim")}
    arrays = ds.arrays()
    for name, (dtype, trail) in TRANSITION_FIELDS.items():
        if name not in ds.transitions:
            raise DatasetError(f"{where}: missing array {name!r}")
        shape = (t, n) + tuple(dims[d] for d in trail)
        _check_array(where, name, ds.transitions[name], dtype, shape)
    _check_array(where, "attributes", ds.attributes, np.float32, (t, dims["attr_dim"]))
    _check_array(where, "is_test", ds.is_test, np.bool_, (t,))
    val = meta.get("val_tasks", [])
    if (not isinstance(val, list) or not all(isinstance(i, int) and 0 <= i < t for i in val)
            or len(set(val)) != len(val) or np.any(ds.is_test[val])):
        raise DatasetError(f"{where}: metadata val_tasks must be distinct indices of non-test "
                           f"tasks in 0..{t - 1}, got {val!r}")
    if not ds.task_params:
        raise DatasetError(f"{where}: no task parameters (param/<name> arrays)")
    for k, v in ds.task_params.items():
        if v.dtype != np.float32 or v.ndim < 1 or v.shape[0] != t:
            raise DatasetError(f"{where}: param/{k} must be float32 [{t}, ...], got "
                               f"{v.dtype} {list(v.shape)}")
    for name, v in arrays.items():
        if v.dtype == np.float32 and not np.all(np.isfinite(v)):
            bad = np.argwhere(~np.isfinite(v))[0].tolist()
            raise DatasetError(f"{where}: array {name!r} has non-finite values (first at index "
                               f"{bad})")
    tr = ds.transitions
    ckpts = np.asarray(meta["checkpoints"], np.int64)
    if not np.all(np.isin(tr["checkpoint"], ckpts)):
        raise DatasetError(f"{where}: 'checkpoint' holds ids outside metadata checkpoints "
                           f"{ckpts.tolist()}")
    if np.any(tr["episode"] < 0) or np.any(tr["timestep"] < 0):
        raise DatasetError(f"{where}: negative 'episode' or 'timestep' index")
    if np.any(np.diff(tr["episode"], axis=1) < 0):
        raise DatasetError(f"{where}: 'episode' indices must be non-decreasing within a task")
    if np.any(tr["terminated"] & tr["truncated"]):
        raise DatasetError(f"{where}: a transition is both terminated and truncated")
    if np.any(np.abs(tr["action"]) > max(abs(meta["action_low"]), abs(meta["action_high"])) + 1e-5):
        raise DatasetError(f"{where}: actions outside the action box "
                           f"[{meta['action_low']}, {meta['action_high']}]")
    returns = np.asarray(meta["checkpoint_returns"], np.float64)
    if returns.shape != (t, len(ckpts)):
        raise DatasetError(f"{where}: checkpoint_returns must be [{t}][{len(ckpts)}], got "
                           f"{list(returns.shape)}")
    if check_sha:
        sums = meta["sha256"]
        if set(sums) != set(arrays):
            raise DatasetError(f"{where}: checksums list {sorted(sums)} but the file holds "
                               f"{sorted(arrays)}")
        for name, v in arrays.items():
            if _sha256(v) != sums[name]:
                raise DatasetError(f"{where}: array {name!r} does not match its checksum "
                                   f"(corrupted file)")


def _check_array(where, name, x, dtype, shape):
    if x.dtype != dtype:
        raise DatasetError(f"{where}: array {name!r} has dtype {x.dtype}, expected "
                           f"{np.dtype(dtype)}")
    if tuple(x.shape) != tuple(shape):
        raise DatasetError(f"{where}: array {name!r} has shape {list(x.shape)}, expected "
                           f"{list(shape)}")


def _write_npz(f, arrays: Dict[str, np.ndarray]) -> None:
    """An ``np.load``-able zip of ``.npy`` members with fixed timestamps (reproducible bytes)."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                          allow_pickle=False)


def save(ds: MultiTaskDataset, path: str) -> str:
    """Validates and writes ``ds`` atomically to ``path`` (``.npz`` appended if missing)."""
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = ds.arrays()
    meta = dict(ds.meta, format=FORMAT, version=VERSION,
                sha256={k: _sha256(v) for k, v in arrays.items()})
    ds = dataclasses.replace(ds, meta=meta)
    validate(ds, where=path, check_sha=False)  # the checksums were computed from these arrays
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    atomic_write(path, lambda f: _write_npz(f, {"meta.json": blob, **arrays}))
    return path


def load(path: str, family: Optional[str] = None) -> MultiTaskDataset:
    """Reads and validates a dataset; ``family`` (a name) must match if given."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no dataset at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "meta.json" not in names:
                raise DatasetError(f"{path}: no meta.json entry; not a jaxomrl dataset")
            arrays = {k: z[k] for k in names}
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: unreadable dataset file (truncated or corrupted): "
                           f"{type(e).__name__}: {e}") from e
    try:
        meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: metadata must be a JSON object")
    _check_meta_types(meta, path)
    if family is not None and meta["family"] != family:
        raise DatasetError(f"{path}: dataset is from family {meta['family']!r}, expected "
                           f"{family!r}")
    expected = set(TRANSITION_FIELDS) | {"attributes", "is_test"}
    missing = expected - set(arrays)
    if missing:
        raise DatasetError(f"{path}: missing arrays {sorted(missing)}")
    extra = [k for k in arrays if k not in expected and not k.startswith("param/")]
    if extra:
        raise DatasetError(f"{path}: unexpected arrays {sorted(extra)}")
    ds = MultiTaskDataset(
        transitions={k: arrays[k] for k in TRANSITION_FIELDS},
        attributes=arrays["attributes"], is_test=arrays["is_test"],
        task_params={k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")},
        meta=meta)
    validate(ds, where=path)
    return ds


def digest(ds: MultiTaskDataset) -> str:
    """One checksum of a dataset's content (from its per-array SHA-256s in the metadata)."""
    return hashlib.sha256(json.dumps(ds.meta["sha256"], sort_keys=True).encode()).hexdigest()


def load_collection(path: str, family: Optional[str] = None):
    """``(train, ood)`` of a collection: ``path`` is its directory or its ``train.npz``; ``ood``
    (the held-out behaviour checkpoints' data, ``ood.npz`` beside it) is None if absent. Raises
    ``FileNotFoundError`` / ``DatasetError`` for a missing or invalid dataset, or an ood dataset
    of other tasks."""
    if os.path.isdir(path):
        path = os.path.join(path, "train.npz")
    train = load(path, family)
    ood_path = os.path.join(os.path.dirname(path), "ood.npz")
    if not os.path.exists(ood_path):
        return train, None
    ood = load(ood_path, train.family)
    check_same_tasks(train, ood, f"{ood_path} and {path}")
    return train, ood


def check_same_tasks(ds: MultiTaskDataset, other: MultiTaskDataset, where: str) -> None:
    """Raises ``DatasetError`` unless both datasets hold the same tasks of the same family, in
    the same order and split (e.g. a collection's ``train.npz`` and ``ood.npz``)."""
    if (other.family != ds.family or other.num_tasks != ds.num_tasks
            or not np.array_equal(other.is_test, ds.is_test)
            or not np.array_equal(other.is_val, ds.is_val)
            or not np.allclose(other.attributes, ds.attributes)):
        raise DatasetError(f"{where} do not hold the same tasks")


def episode_index(done: np.ndarray, stream_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """(episode, timestep) ``[T, N]`` from done flags ``[T, N]`` of streams of ``stream_len``
    contiguous transitions (a stream starts an episode even without a done flag before it)."""
    t, n = done.shape
    idx = np.arange(n)
    start = np.zeros_like(done)
    start[:, 0] = True
    start[:, 1:] = done[:, :-1]
    start[:, idx % stream_len == 0] = True
    episode = np.cumsum(start, axis=1) - 1
    last_start = np.maximum.accumulate(np.where(start, idx, 0), axis=1)
    return episode.astype(np.int32), (idx - last_start).astype(np.int32)


def _checkpoint_returns(reward, done, episode, ckpt_of, ids) -> list:
    """``[T][C]`` mean return of completed episodes per checkpoint (None if none completed).

    Episodes cut by the end of a rollout stream (no done flag) are not counted.
    """
    out = []
    for task in range(reward.shape[0]):
        ep = episode[task]
        totals = np.bincount(ep, weights=reward[task].astype(np.float64))
        ended = done[task]
        row = []
        for c in ids:
            sel = ended & (ckpt_of[task] == c)
            row.append(float(np.mean(totals[ep[sel]])) if np.any(sel) else None)
        out.append(row)
    return out


def from_rollouts(family: TaskFamily, tasks: Task, is_test, tr, ids, split: str,
                  provenance: Dict[str, Any], family_config: Optional[Dict[str, Any]] = None,
                  checkpoint_env_steps: int = 0, warmup_env_steps: int = 0, is_val=None
                  ) -> MultiTaskDataset:
    """A dataset from rollouts ``Transition [T, C, steps, envs]`` of behaviour policies ``ids``.

    ``ids``: the checkpoint of each of the ``C`` rollout groups, ``[C]`` for all tasks or
    ``[T, C]`` per task; the metadata lists the union, with a ``None`` return where a task has
    no data of a checkpoint. Any behaviour policies work (e.g. scripted ones for tests);
    ``provenance`` records how.
    """
    tr = jax.device_get(tr)
    num_tasks, c, steps, n_env = tr.reward.shape
    per_task = np.broadcast_to(np.asarray(ids, np.int32), (num_tasks, c))
    ids = list(dict.fromkeys(int(k) for k in per_task.ravel()))

    def flat(x):  # [T, C, steps, envs, ...] -> [T, C * envs * steps, ...] (streams contiguous)
        x = np.asarray(x)
        x = np.swapaxes(x, 2, 3)
        return x.reshape((num_tasks, c * n_env * steps) + x.shape[4:])

    terminated, truncated = flat(tr.terminated), flat(tr.truncated)
    done = terminated | truncated
    episode, timestep = episode_index(done, steps)
    checkpoint = np.repeat(per_task, n_env * steps, axis=1)
    reward = flat(tr.reward).astype(np.float32)
    returns = _checkpoint_returns(reward, done, episode, checkpoint, ids)
    meta = {
        "family": family.name, "family_config": dict(family_config or {}),
        "physics": family.backend,
        "obs_dim": family.obs_dim, "action_dim": family.action_dim, "attr_dim": family.attr_dim,
        "action_low": float(family.action_low), "action_high": float(family.action_high),
        "num_tasks": int(num_tasks), "transitions_per_task": int(reward.shape[1]),
        "checkpoints": [int(k) for k in ids],
        "checkpoint_env_steps": int(checkpoint_env_steps),
        "warmup_env_steps": int(warmup_env_steps),
        "checkpoint_returns": returns, "split": split,
        "provenance": dict(provenance, jaxomrl_version=__version__),
    }
    if is_val is not None and np.any(is_val):
        meta["val_tasks"] = np.flatnonzero(np.asarray(is_val, bool)).tolist()
    params = {k: np.asarray(v, np.float32) for k, v in jax.device_get(tasks.params).items()}
    return MultiTaskDataset(
        transitions={"obs": flat(tr.obs).astype(np.float32),
                     "action": flat(tr.action).astype(np.float32), "reward": reward,
                     "next_obs": flat(tr.next_obs).astype(np.float32),
                     "terminated": terminated, "truncated": truncated, "episode": episode,
                     "timestep": timestep, "checkpoint": checkpoint},
        attributes=np.asarray(tasks.attributes, np.float32), is_test=np.asarray(is_test, bool),
        task_params=params, meta=meta)


def checkpoint_termination_table(ds: MultiTaskDataset) -> np.ndarray:
    """``[T, C]``: the fraction of each task's completed episodes of each checkpoint (in
    ``ds.meta["checkpoints"]`` order) that ended by termination (a fall) rather than at the
    horizon; NaN where a task has no completed episode of that checkpoint. Episodes cut by the
    end of a rollout stream are not counted (as in ``checkpoint_returns``)."""
    tr = ds.transitions
    term, trunc = np.asarray(tr["terminated"], bool), np.asarray(tr["truncated"], bool)
    ckpt = np.asarray(tr["checkpoint"])
    out = np.full((ds.num_tasks, len(ds.meta["checkpoints"])), np.nan)
    for t in range(ds.num_tasks):
        for i, c in enumerate(ds.meta["checkpoints"]):
            ended = (term[t] | trunc[t]) & (ckpt[t] == c)
            if ended.any():
                out[t, i] = term[t][ended].sum() / ended.sum()
    return out


def checkpoint_return_table(ds: MultiTaskDataset, tasks=slice(None)
                            ) -> Dict[int, Tuple[float, float]]:
    """{checkpoint: (mean, sample std over tasks) of its mean episode return} of a dataset,
    over the ``tasks`` (index or mask) that have data of that checkpoint (None, None if none
    has)."""
    r = np.asarray(ds.meta["checkpoint_returns"], np.float64)[tasks]
    out = {}
    for i, c in enumerate(ds.meta["checkpoints"]):
        col = r[:, i][np.isfinite(r[:, i])]
        out[int(c)] = ((float(col.mean()), float(col.std(ddof=1)) if col.size > 1 else 0.0)
                      if col.size else (None, None))
    return out
