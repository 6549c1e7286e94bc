"""A collection's configuration: everything that determines its datasets, and its tasks."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl import envs
from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.errors import JaxomrlError, check_finite_fields
from jaxomrl.learners.online_sac import OnlineSACConfig
from jaxomrl.learners.sac import SACConfig


# The family's task splits a collection can hold ("all": training, validation and test tasks).
SPLITS = ("train", "val", "test", "all")


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Everything that determines a collection (and so its datasets)."""

    family: str
    family_config: Tuple[Tuple[str, Any], ...] = ()
    # The simulator (envs.make's physics: mjx | c | auto, MuJoCo C on CPUs; jax for a pure-JAX
    # family), held resolved, so a collection resumes only on the backend that began it;
    # collections written before the choice existed ran MJX.
    physics: str = "auto"
    split: str = "train"                 # which of the family's splits (SPLITS)
    num_tasks: Optional[int] = None      # first num_tasks of the split (None: all of it)
    task_seed: int = 0                   # seed of family.train_test_split
    seed: int = 0                        # seed of SAC and of the data rollouts
    online: OnlineSACConfig = OnlineSACConfig()
    num_checkpoints: int = 20            # checkpoints k = 0..num_checkpoints
    checkpoint_interval: int = 250       # SAC iterations per checkpoint (x num_envs env steps)
    train_checkpoints: Tuple[int, ...] = (20,)
    ood_checkpoints: Optional[Tuple[int, ...]] = None  # None: every checkpoint not in train
    transitions_per_task: int = 10_000
    ood_transitions_per_task: int = 0
    rollout_envs: int = 10
    deterministic: bool = False
    # Per-task target returns (one per task, or one for all): each task's train / ood data come
    # from its checkpoint nearest the target; they replace train_checkpoints / ood_checkpoints.
    train_returns: Optional[Tuple[float, ...]] = None
    ood_returns: Optional[Tuple[float, ...]] = None

    def __post_init__(self):
        check_finite_fields(self)
        object.__setattr__(self, "physics", envs.resolved_physics(self.family, self.physics))
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.num_tasks is not None and self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {self.num_tasks}")
        if self.num_checkpoints < 1 or self.checkpoint_interval < 1:
            raise ValueError("num_checkpoints and checkpoint_interval must be >= 1")
        if self.rollout_envs < 1:
            raise ValueError("rollout_envs must be >= 1")
        if self.ood_returns is not None and self.train_returns is None:
            raise ValueError("ood_returns needs train_returns (checkpoints are chosen by return "
                             "for both splits or for neither)")
        if self.train_returns is not None:   # train/ood_checkpoints are not used
            for name in ("train_returns", "ood_returns"):
                v = getattr(self, name)
                if v is not None and (not v or not all(np.isfinite(v))):
                    raise ValueError(f"{name} must be finite target returns, got {v}")
            if self.ood_transitions_per_task and self.ood_returns is None:
                raise ValueError("train_returns is set and ood_transitions_per_task > 0: give "
                                 "ood_returns too")
            self._check_budget("transitions_per_task", self.transitions_per_task, 1,
                               allow_zero=False)
            self._check_budget("ood_transitions_per_task", self.ood_transitions_per_task, 1,
                               allow_zero=True)
            return
        self._check_ids("train_checkpoints", self.train_checkpoints)
        if not self.train_checkpoints:
            raise ValueError("train_checkpoints must name at least one checkpoint")
        if self.ood_checkpoints is not None:
            self._check_ids("ood_checkpoints", self.ood_checkpoints)
            both = set(self.ood_checkpoints) & set(self.train_checkpoints)
            if both:
                raise ValueError(f"checkpoints {sorted(both)} are both train and ood")
        self._check_budget("transitions_per_task", self.transitions_per_task,
                           len(self.train_checkpoints), allow_zero=False)
        if self.ood_transitions_per_task:
            if not self.ood_ids:
                raise ValueError("ood_transitions_per_task > 0 but no checkpoint is held out")
            self._check_budget("ood_transitions_per_task", self.ood_transitions_per_task,
                               len(self.ood_ids), allow_zero=True)

    def _check_ids(self, name, ids):
        bad = [k for k in ids if not 0 <= k <= self.num_checkpoints]
        if bad:
            raise ValueError(f"{name} {bad} outside 0..{self.num_checkpoints}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name} has duplicates: {list(ids)}")

    def _check_budget(self, name, total, num_ckpts, allow_zero):
        unit = num_ckpts * self.rollout_envs
        if total < (0 if allow_zero else unit) or total % unit:
            raise ValueError(f"{name} ({total}) must be a positive multiple of "
                             f"#checkpoints ({num_ckpts}) x rollout_envs ({self.rollout_envs}) "
                             f"= {unit}")

    @property
    def ood_ids(self) -> Tuple[int, ...]:
        if self.ood_checkpoints is not None:
            return tuple(self.ood_checkpoints)
        return tuple(k for k in range(self.num_checkpoints + 1) if k not in self.train_checkpoints)

    @property
    def env_steps_per_checkpoint(self) -> int:
        return self.checkpoint_interval * self.online.num_envs

    def make_family(self) -> TaskFamily:
        return envs.make(self.family, physics=self.physics, **dict(self.family_config))

    def to_json(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["family_config"] = dict(self.family_config)
        return json.loads(json.dumps(d))  # tuples -> lists, as read back

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "CollectConfig":
        d = dict(d)
        if "tasks" in d:                       # written before the field was renamed
            d["split"] = d.pop("tasks")
        d.setdefault("physics", "mjx" if envs.has_physics(d["family"]) else "jax")
        online = dict(d.pop("online"))
        sac = SACConfig(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in online.pop("sac").items()})
        tup = lambda v: None if v is None else tuple(v)
        for name in ("train_checkpoints", "ood_checkpoints", "train_returns", "ood_returns"):
            d[name] = tup(d.get(name))
        return cls(online=OnlineSACConfig(sac=sac, **online),
                   family_config=tuple(sorted(d.pop("family_config").items())), **d)

    def checkpoint_ids(self, evaluated_returns: Optional[np.ndarray], num_tasks: int
                       ) -> Dict[str, np.ndarray]:
        """``{split: ids [T, C]}``: the behaviour checkpoints of each task's train / ood data.

        ``evaluated_returns [T, num_checkpoints + 1]`` (needed with target returns only): each
        task's train checkpoint is the one nearest its ``train_returns`` target, its ood
        checkpoint the nearest to ``ood_returns`` among the others.
        """
        if self.train_returns is None:
            out = {"train": np.tile(np.asarray(self.train_checkpoints), (num_tasks, 1))}
            if self.ood_transitions_per_task:
                out["ood"] = np.tile(np.asarray(self.ood_ids), (num_tasks, 1))
            return out
        targets = self.target_returns(num_tasks)
        r = np.asarray(evaluated_returns, np.float64)
        if r.shape != (num_tasks, self.num_checkpoints + 1):
            raise ValueError(f"evaluated_returns must be [{num_tasks}, "
                             f"{self.num_checkpoints + 1}], got {list(r.shape)}")
        out = {}
        for split, t in targets.items():
            dist = np.abs(r - t[:, None])
            if split == "ood":   # never the task's train checkpoint
                dist[np.arange(num_tasks), out["train"][:, 0]] = np.inf
            out[split] = np.argmin(dist, axis=1)[:, None]
        return out

    def target_returns(self, num_tasks: int) -> Dict[str, np.ndarray]:
        """``{split: [T]}`` target returns per task (``{}`` without targets); checks there is
        one target per task or one for all."""
        out = {}
        for split, v in (("train", self.train_returns), ("ood", self.ood_returns)):
            if v is None or (split == "ood" and not self.ood_transitions_per_task):
                continue
            if len(v) not in (1, num_tasks):
                raise ValueError(f"{split}_returns needs 1 or {num_tasks} (one per task) "
                                 f"targets, got {len(v)}")
            out[split] = np.broadcast_to(np.asarray(v, np.float64), (num_tasks,))
        return out


def select_tasks(config: CollectConfig) -> Tuple[Task, np.ndarray]:
    """The tasks of a collection and the split of each (``"train"``, ``"val"`` or ``"test"``):
    ``all`` is the family's training, validation and test tasks, in that order."""
    family = config.make_family()
    split = family.split(config.task_seed)
    names = [n for n in ("train", "val", "test") if n in split and config.split in (n, "all")]
    if not names:
        raise ValueError(f"{family.name} has no {config.split!r} split")
    tasks = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *[split[n] for n in names])
    roles = np.concatenate([np.full(split[n].num_tasks, n) for n in names])
    if config.num_tasks is not None:
        if config.num_tasks > tasks.num_tasks:
            raise ValueError(f"num_tasks={config.num_tasks} but the {config.split!r} split of "
                             f"{family.name} has {tasks.num_tasks} tasks")
        tasks, roles = tasks[: config.num_tasks], roles[: config.num_tasks]
    return tasks, roles


class CollectConfigError(JaxomrlError, ValueError):
    """The output directory holds a collection with another configuration (or, to evaluate,
    none completed)."""
