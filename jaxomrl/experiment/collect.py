"""Offline multi-task data collection: per-task SAC, policy checkpoints, datasets on disk.

Pipeline (``collect(config, out_dir)``):

1. Tasks: the family's fixed train / test split (``config.split``), first ``num_tasks`` of it.
2. SAC on every task in one jitted program (``vmap`` over tasks; see
   ``jaxomrl.learners.online_sac``) -- the papers' protocol -- or, with
   ``OnlineSACConfig(conditioned=True)`` (``--collector=conditioned``), one SAC agent for all
   tasks that sees each task's attributes beside the observation and trains on every task's
   environments at once (its checkpoints, conditioned on a task, are that task's behaviour
   policies). Training runs in ``num_checkpoints`` chunks of
   ``checkpoint_interval`` iterations. Policy checkpoint ``k`` is the actor after ``k`` chunks
   (``k = 0`` is the untrained initial policy); all of them are kept in a parameter bank inside
   the training state. After every chunk the whole state (agents, replay buffers, environments,
   PRNG keys, bank, learning curve) is saved with orbax, so a killed collection resumes from the
   last complete chunk and produces the same datasets as an uninterrupted one.
3. Data: every selected checkpoint is rolled out in ``rollout_envs`` parallel environments of its
   task (stochastic actions unless ``deterministic``), all tasks x checkpoints in one program.
   ``train.npz`` holds ``transitions_per_task`` transitions per task split evenly over
   ``train_checkpoints``; ``ood.npz`` (if ``ood_transitions_per_task > 0``) the same from the
   held-out ``ood_checkpoints`` (default: all others) -- ReDA's out-of-distribution split.
   Both are written atomically in the format of ``jaxomrl.data.dataset``.
   Alternatively ``train_returns`` / ``ood_returns`` pick, per task, the checkpoint whose
   evaluated return (one episode in each of ``rollout_envs`` environments) is nearest a target
   return of that task -- ReDA's didactic design, where task 1's data come from a return-100
   policy and task 2's from a return-50 one, so behaviour and task are spuriously correlated.

After training every checkpoint is evaluated on every task (one episode in each of
``rollout_envs`` environments): ``summary.json`` holds that ``[T, K + 1]`` return matrix (the
tasks' learning curves) and each task's best checkpoint.

``out_dir`` also gets ``collect_config.json`` (a directory belongs to one configuration),
``progress.csv`` (per-chunk mean training return of every task) and ``summary.json``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxomrl import envs
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.errors import (Interrupted, JaxomrlError, NonFiniteError, check_finite_fields,
                            tree_all_finite)
from jaxomrl.experiment import guards
from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.io import atomic_write_text
from jaxomrl.learners.online_sac import OnlineSACConfig, OnlineSACState, make_online_sac
from jaxomrl.learners.sac import SACConfig
from jaxomrl.types import scale_action


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


@struct.dataclass
class CollectState:
    """Everything a resumed collection needs; leading axis ``[T]`` on per-task leaves."""

    sac: OnlineSACState      # [T] (one agent, no task axis, if conditioned)
    bank: Any                # actor params [T, K + 1, ...] ([K + 1, ...] if conditioned)
    curve: jax.Array         # [K + 1, T] mean training-episode return per chunk (nan: none)
    chunk: jax.Array         # [] chunks completed


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


class _Programs:
    """The jitted programs of one configuration (cached: tests and reruns share compilations).
    Per-task SAC: one agent per task, ``vmap``-ped; conditioned: one agent for the batch."""

    def __init__(self, family: TaskFamily, online_config: OnlineSACConfig,
                 checkpoint_interval: int, num_checkpoints: int, rollout_envs: int,
                 deterministic: bool):
        online = make_online_sac(family, online_config)
        self.online = online
        self.conditioned = conditioned = online_config.conditioned
        k_total = num_checkpoints + 1

        def init(key, task):
            state = online.init(key, task)
            bank = jax.tree_util.tree_map(
                lambda p: jnp.zeros((k_total,) + p.shape, p.dtype).at[0].set(p),
                state.agent.actor_params)
            return state, bank

        def chunk(state, bank, task, k):
            state, metrics = online.iterate(state, task, checkpoint_interval)
            bank = jax.tree_util.tree_map(lambda b, p: b.at[k].set(p), bank,
                                          state.agent.actor_params)
            return state, bank, metrics

        def rollout(actor_params, task, key, num_steps):
            act = online.sac.make_policy(actor_params, deterministic)

            def policy(obs, k):
                a = act(online.policy_input(obs, task), None, k)
                return scale_action(a, family.action_low, family.action_high)
            return envs.rollout(family, task, key, policy, num_steps, rollout_envs)[1]

        def first_episode_return(actor_params, task, key):
            tr = rollout(actor_params, task, key, family.horizon)   # [horizon, envs]
            done = tr.terminated | tr.truncated
            before = jnp.cumsum(done, axis=0) - done                 # episodes ended earlier
            return jnp.mean(jnp.sum(jnp.where(before == 0, tr.reward, 0.0), axis=0))

        def finite(state, num_tasks):  # [T, 3]: agent, replay buffer, each task's observations
            obs = jnp.reshape(state.env.obs, (num_tasks, -1))
            shared = jnp.stack([tree_all_finite(state.agent), tree_all_finite(state.buffer)])
            return jnp.concatenate([jnp.broadcast_to(shared, (num_tasks, 2)),
                                    jnp.all(jnp.isfinite(obs), axis=1)[:, None]], axis=1)

        if conditioned:
            self.init = jax.jit(lambda keys, tasks: init(keys[0], tasks))
            self.chunk = jax.jit(chunk)
            self.finite = jax.jit(finite, static_argnums=1)
        else:
            self.init = jax.jit(jax.vmap(init))
            self.chunk = jax.jit(jax.vmap(chunk, in_axes=(0, 0, 0, None)))
            self.finite = jax.jit(jax.vmap(lambda st: finite(st, 1)[0]))
        bank_axis = None if conditioned else 0
        # tasks x checkpoints: mean return of every env's first episode [T, C]
        self.evaluate = jax.jit(jax.vmap(jax.vmap(first_episode_return, in_axes=(0, None, 0)),
                                         in_axes=(bank_axis, 0, 0)))
        # tasks (outer) x checkpoints (inner): Transition [T, C, steps, envs]
        self.rollout = jax.jit(
            jax.vmap(jax.vmap(rollout, in_axes=(0, None, 0, None)), in_axes=(0, 0, 0, None)),
            static_argnums=3)

    def task_params(self, bank, ids: np.ndarray):
        """Actor parameters ``[T, C, ...]`` of checkpoints ``ids [T, C]`` of every task."""
        if self.conditioned:
            return jax.tree_util.tree_map(lambda b: b[ids], bank)
        rows = np.arange(ids.shape[0])[:, None]
        return jax.tree_util.tree_map(lambda b: b[rows, ids], bank)

    def check_finite(self, sac_state, num_tasks: int) -> np.ndarray:
        return np.asarray(self.finite(sac_state, num_tasks) if self.conditioned
                          else self.finite(sac_state))


@functools.lru_cache(maxsize=8)
def _cached_programs(*args) -> _Programs:
    return _Programs(*args)


def _programs(config: CollectConfig) -> _Programs:
    """Programs depend on these fields only (seeds, tasks and budgets are arguments / shapes)."""
    return _cached_programs(config.make_family(), config.online, config.checkpoint_interval,
                            config.num_checkpoints, config.rollout_envs, config.deterministic)


class CollectConfigError(JaxomrlError, ValueError):
    """The output directory holds a collection with another configuration (or, to evaluate,
    none completed)."""


def _check_finite(progs: _Programs, config: CollectConfig, tasks: Task, state: CollectState,
                  metrics: Dict[str, Any], chunk: int, out_dir: str) -> None:
    """Raises ``NonFiniteError`` naming the tasks and env steps if SAC's parameters, replay
    buffer, the simulated observations or the losses of ``chunk`` (0: the warm-up) are not
    finite. Called before the chunk is checkpointed, so the last checkpoint stays finite."""
    parts = progs.check_finite(state.sac, tasks.num_tasks)               # [T, 3]
    losses = {k: np.broadcast_to(np.asarray(v), (tasks.num_tasks,)) for k, v in metrics.items()
              if k not in ("episode_return", "episodes")}                # [T] each
    bad_loss = {k: ~np.isfinite(v) for k, v in losses.items()}
    bad = ~parts.all(1) | np.any([v for v in bad_loss.values()] or [np.zeros(len(parts), bool)],
                                 axis=0)
    if not bad.any():
        return
    t = int(np.argmax(bad))
    agent_ok, buffer_ok, obs_ok = parts[t]
    nan_losses = [k for k, v in bad_loss.items() if v[t]]
    if not agent_ok:
        what = "the SAC agent diverged (non-finite parameters"
        what += f"; losses {', '.join(nan_losses)})" if nan_losses else ")"
    elif not (buffer_ok and obs_ok):
        what = ("the simulation blew up under a finite agent (non-finite "
                f"{'observations' if not obs_ok else 'replay-buffer transitions'})")
    else:
        what = f"non-finite losses {', '.join(nan_losses)}"
    per_chunk = config.env_steps_per_checkpoint
    warm = config.online.warmup_iterations * config.online.num_envs
    steps = (f"in the warm-up (env steps 1-{warm} per task)" if chunk == 0 else
             f"between env steps {warm + (chunk - 1) * per_chunk + 1:,} and "
             f"{warm + chunk * per_chunk:,} per task (checkpoint {chunk} of "
             f"{config.num_checkpoints})")
    attrs = np.round(np.asarray(tasks.attributes[t], np.float64), 4).tolist()
    kept = (f"checkpoint {chunk - 1}, the last finite one, is kept in "
            f"{os.path.join(out_dir, 'sac_checkpoints')}" if chunk else "nothing was saved")
    raise NonFiniteError(
        f"collection on {config.family} became non-finite {steps}: in task {t} (attributes "
        f"{attrs}) {what}; tasks affected: "
        f"{np.flatnonzero(bad).tolist()}. No dataset was written and {kept}; change the SAC "
        "settings (learning rate, batch, updates per iteration) and collect into a new "
        "--out_dir")


def _check_config_file(config: CollectConfig, out_dir: str) -> None:
    path = os.path.join(out_dir, "collect_config.json")
    mine = config.to_json()
    if os.path.exists(path):
        with open(path) as f:
            theirs = CollectConfig.from_json(json.load(f)).to_json()  # fields added since: defaults
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            shown = "; ".join(f"{k}: {json.dumps(theirs.get(k))} -> {json.dumps(mine.get(k))}"
                              for k in diff)
            raise CollectConfigError(
                f"{out_dir} holds a collection with a different configuration (old -> "
                f"requested: {shown}); use another output directory")
    else:
        atomic_write_text(path, json.dumps(mine, indent=1, sort_keys=True))








@dataclasses.dataclass
class CollectResult:
    train_path: str
    ood_path: Optional[str]
    summary: Dict[str, Any]


def _default_log(msg: str) -> None:
    print(msg, flush=True)


def collect(config: CollectConfig, out_dir: str, *, log: Callable[[str], None] = _default_log,
            stop_after_chunks: Optional[int] = None) -> Optional[CollectResult]:
    """Runs (or resumes) a collection into ``out_dir``; returns the dataset paths and summary.

    ``stop_after_chunks`` stops (returning ``None``) once that many chunks are complete and
    checkpointed in this call -- what a kill at that point leaves behind (used to test resume).
    Raises ``DirectoryInUse`` if another process is collecting into ``out_dir`` and
    ``Interrupted`` after SIGINT (Ctrl-C), once the chunk under way is checkpointed
    (``guards``).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CollectConfigError(f"--out_dir {out_dir} is a file, not a directory")
    with guards.directory_lock(out_dir, "collecting"):
        return _collect(config, out_dir, log, stop_after_chunks)


def _collect(config: CollectConfig, out_dir: str, log: Callable[[str], None],
             stop_after_chunks: Optional[int]) -> Optional[CollectResult]:
    _check_config_file(config, out_dir)
    finished = _finished(config, out_dir)
    if finished is not None:
        log(f"{out_dir}: collection already complete; reusing its datasets")
        return finished
    family = config.make_family()
    tasks, roles = select_tasks(config)
    is_test, is_val = roles == "test", roles == "val"
    progs = _programs(config)
    num_tasks, k_total = tasks.num_tasks, config.num_checkpoints
    ckpt = Checkpointer(os.path.join(out_dir, "sac_checkpoints"))
    with guards.StopRequests() as stop:
        try:
            t0 = time.time()
            keys = jax.random.split(jax.random.PRNGKey(config.seed), num_tasks)

            fresh = functools.partial(_fresh_state, progs, config, tasks, keys)
            latest = ckpt.latest_step()
            if latest is not None:
                state = ckpt.restore(latest, jax.eval_shape(fresh))
                log(f"resumed from {ckpt.directory} at checkpoint {latest}/{k_total}")
            else:
                state = fresh()
                _check_finite(progs, config, tasks, state, {}, 0, out_dir)
                ckpt.save(0, state)
                log(f"{family.name}: SAC on {num_tasks} tasks, {k_total} checkpoints x "
                    f"{config.env_steps_per_checkpoint} env steps per task")
            done_chunks = int(state.chunk)
            run_start, ran = time.time(), 0
            for k in range(done_chunks + 1, k_total + 1):
                sac_state, bank, metrics = progs.chunk(state.sac, state.bank, tasks, k)
                ret = metrics["episode_return"]
                state = CollectState(sac=sac_state, bank=bank, curve=state.curve.at[k].set(ret),
                                     chunk=jnp.asarray(k, jnp.int32))
                _check_finite(progs, config, tasks, state, metrics, k, out_dir)
                ckpt.save(k, state)
                ran += 1
                ret = np.asarray(ret)
                elapsed = time.time() - run_start
                sps = ran * config.env_steps_per_checkpoint * num_tasks / elapsed
                eta = elapsed / ran * (k_total - k)
                finite = ret[np.isfinite(ret)]
                rets = (f"train return mean {finite.mean():.3f} [min {finite.min():.3f}, max "
                        f"{finite.max():.3f}] ({finite.size}/{num_tasks} tasks ended episodes)"
                        if finite.size else "no training episode ended in this chunk")
                log(f"checkpoint {k}/{k_total} | {k * config.env_steps_per_checkpoint} env "
                    f"steps/task | {rets} | {sps:,.0f} env steps/s | {elapsed:.0f}s, ETA "
                    f"{eta:.0f}s")
                _write_progress(out_dir, config, np.asarray(state.curve), k)
                if stop.requested is not None:
                    raise Interrupted(
                        f"collection interrupted ({signal.Signals(stop.requested).name}) after "
                        f"checkpoint {k}/{k_total}, kept in {out_dir}: rerun the same command to "
                        "resume")
                if stop_after_chunks is not None and ran >= stop_after_chunks and k < k_total:
                    return None
        finally:
            ckpt.close()

    # Every checkpoint on every task (the learning curves; target returns choose from them).
    t_eval = time.time()
    evaluated = np.asarray(progs.evaluate(state.bank, tasks, _evaluation_keys(config, num_tasks)),
                           np.float64)
    best = evaluated.max(axis=1)
    log(f"evaluated every checkpoint on every task ({time.time() - t_eval:.0f}s): best "
        f"checkpoint's return {best.mean():.2f} +- {best.std(ddof=1):.2f} over tasks (min "
        f"{best.min():.2f}); mean return per checkpoint: "
        + " ".join(f"{x:.1f}" for x in evaluated.mean(axis=0)))
    selection = config.checkpoint_ids(evaluated, num_tasks)
    paths, datasets = {}, {}
    for split, total in (("train", config.transitions_per_task),
                         ("ood", config.ood_transitions_per_task)):
        if not total:
            continue
        idx = selection[split]                                   # [T, C]
        steps = total // (idx.shape[1] * config.rollout_envs)
        if steps < family.horizon:
            log(f"note: {split} rollouts are {steps} steps per environment, shorter than the "
                f"horizon ({family.horizon}); their episodes are cut by the collection budget")
        params = progs.task_params(state.bank, idx)
        base = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1 if split == "train" else 2)
        keys = jax.vmap(lambda t, row: jax.vmap(lambda c: jax.random.fold_in(
            jax.random.fold_in(base, t), c))(row))(jnp.arange(num_tasks), jnp.asarray(idx))
        tr = progs.rollout(params, tasks, keys, steps)
        provenance = {"collect_config": config.to_json(),
                      "policy": "deterministic" if config.deterministic else "stochastic"}
        if config.train_returns is not None:
            provenance["checkpoint_selection"] = {
                "evaluated_returns": evaluated.tolist(), "checkpoints": idx.tolist(),
                "targets": list(config.train_returns if split == "train"
                                else config.ood_returns)}
        ds = dataset_lib.from_rollouts(
            family, tasks, is_test, tr, idx, split, provenance=provenance, is_val=is_val,
            family_config=dict(config.family_config),
            checkpoint_env_steps=config.env_steps_per_checkpoint,
            warmup_env_steps=config.online.warmup_iterations * config.online.num_envs)
        paths[split] = dataset_lib.save(ds, os.path.join(out_dir, f"{split}.npz"))
        datasets[split] = ds
        which = (idx[0].tolist() if (idx == idx[:1]).all() else
                 "per task " + ", ".join(str(row.tolist()) for row in idx))
        log(f"wrote {paths[split]}: {num_tasks} tasks x {ds.transitions_per_task} transitions "
            f"from checkpoints {which}")
    summary = _summary(config, tasks, roles, np.asarray(state.curve), evaluated, paths,
                       datasets, time.time() - t0)
    atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
    return CollectResult(train_path=paths["train"], ood_path=paths.get("ood"), summary=summary)


def _fresh_state(progs: _Programs, config: CollectConfig, tasks: Task, keys: jax.Array
                 ) -> CollectState:
    sac_state, bank = progs.init(keys, tasks)
    return CollectState(sac=sac_state, bank=bank,
                        curve=jnp.full((config.num_checkpoints + 1, tasks.num_tasks), jnp.nan),
                        chunk=jnp.zeros((), jnp.int32))


def _evaluation_keys(config: CollectConfig, num_tasks: int) -> jax.Array:
    """``[T, K + 1]`` keys of the checkpoints' evaluation (one per task x checkpoint)."""
    return jax.vmap(lambda t: jax.random.split(jax.random.fold_in(
        jax.random.PRNGKey(config.seed), 3 + t), config.num_checkpoints + 1))(
            jnp.arange(num_tasks))


def evaluate_checkpoints(out_dir: str, deterministic: bool) -> Tuple[np.ndarray, Task, np.ndarray]:
    """``(returns [T, K + 1], tasks, is_test)``: every policy checkpoint of the completed
    collection in ``out_dir`` evaluated on every task as the collection evaluates them (the
    first episode in each of ``rollout_envs`` environments, the same keys), with the policies'
    mode actions if ``deterministic`` else sampled ones (``deterministic`` equal to the
    collection's: ``summary.json``'s ``evaluated_returns``)."""
    with open(os.path.join(out_dir, "collect_config.json")) as f:
        config = CollectConfig.from_json(json.load(f))
    config = dataclasses.replace(config, deterministic=deterministic)
    tasks, roles = select_tasks(config)
    progs = _programs(config)
    ckpt = Checkpointer(os.path.join(out_dir, "sac_checkpoints"))
    try:
        if ckpt.latest_step() != config.num_checkpoints:
            raise CollectConfigError(f"{out_dir} holds no completed collection (its last checkpoint is "
                             f"{ckpt.latest_step()} of {config.num_checkpoints})")
        keys = jax.random.split(jax.random.PRNGKey(config.seed), tasks.num_tasks)
        fresh = functools.partial(_fresh_state, progs, config, tasks, keys)
        state = ckpt.restore(config.num_checkpoints, jax.eval_shape(fresh))
    finally:
        ckpt.close()
    returns = progs.evaluate(state.bank, tasks, _evaluation_keys(config, tasks.num_tasks))
    return np.asarray(returns, np.float64), tasks, roles == "test"


def _finished(config: CollectConfig, out_dir: str) -> Optional[CollectResult]:
    """The result of a completed collection in ``out_dir`` (None if incomplete or invalid)."""
    summary_path = os.path.join(out_dir, "summary.json")
    paths = {"train": os.path.join(out_dir, "train.npz")}
    if config.ood_transitions_per_task:
        paths["ood"] = os.path.join(out_dir, "ood.npz")
    if not all(os.path.exists(p) for p in [summary_path, *paths.values()]):
        return None
    try:
        for p in paths.values():
            dataset_lib.load(p, family=config.family)
        with open(summary_path) as f:
            summary = json.load(f)
    except (dataset_lib.DatasetError, ValueError):
        return None
    return CollectResult(train_path=paths["train"], ood_path=paths.get("ood"), summary=summary)


def _write_progress(out_dir, config, curve, k):
    lines = ["checkpoint,env_steps_per_task," + ",".join(f"task{i}" for i in range(curve.shape[1]))]
    for j in range(1, k + 1):
        lines.append(f"{j},{j * config.env_steps_per_checkpoint}," +
                     ",".join(f"{x:.6g}" for x in curve[j]))
    atomic_write_text(os.path.join(out_dir, "progress.csv"), "\n".join(lines) + "\n")




def _summary(config, tasks, roles, curve, evaluated, paths, datasets, seconds
             ) -> Dict[str, Any]:
    rows = [row[~np.isnan(row)] for row in curve[1:]]
    best = evaluated.argmax(axis=1)
    out = {"family": config.family, "collect_seconds_this_call": seconds,
           "collector": "conditioned" if config.online.conditioned else "per_task",
           "training_curve_mean_return": [float(r.mean()) if r.size else None for r in rows],
           "checkpoint_env_steps": [k * config.env_steps_per_checkpoint
                                    for k in range(config.num_checkpoints + 1)],
           "task_attributes": np.asarray(tasks.attributes, np.float64).tolist(),
           "is_test": (roles == "test").tolist(), "split": roles.tolist(),
           "task_params": sorted(tasks.params),
           "evaluated_returns": evaluated.tolist(),         # [task, checkpoint 0..K]
           "best_checkpoint": best.tolist(),
           "best_return": evaluated[np.arange(len(best)), best].tolist(),
           "datasets": {}}
    for split, path in paths.items():
        ends = dataset_lib.checkpoint_termination_table(datasets[split])           # [T, C]
        out["datasets"][split] = {"path": path, "checkpoint_returns": {
            str(k): {"mean": m, "std": s}
            for k, (m, s) in dataset_lib.checkpoint_return_table(datasets[split]).items()},
            # per checkpoint, per task: completed episodes that ended in termination (a fall)
            "terminated_fraction": {str(k): [None if np.isnan(v) else float(v) for v in col]
                                    for k, col in zip(datasets[split].meta["checkpoints"],
                                                      ends.T)}}
    return out


def _conditioned(collector: str) -> bool:
    if collector not in ("per_task", "conditioned"):
        raise ValueError(f"collector must be 'per_task' or 'conditioned', got {collector!r}")
    return collector == "conditioned"


# Flat settings that configure the family (its episode length, its split's task counts).
FAMILY_SETTINGS = ("horizon", "num_train", "num_val", "num_test")


def config_from_settings(family: str, s: Dict[str, Any], **extra) -> CollectConfig:
    """A :class:`CollectConfig` from flat settings (preset keys; env-step counts per task;
    ``FAMILY_SETTINGS`` keys configure the family)."""
    num_envs = int(s["num_envs"])
    for name in ("sac_steps", "checkpoint_every_steps"):
        if s[name] % num_envs:
            raise ValueError(f"{name} ({s[name]}) must be a multiple of num_envs ({num_envs})")
    every = s["checkpoint_every_steps"]
    if s["sac_steps"] % every:
        raise ValueError(f"sac_steps ({s['sac_steps']}) must be a multiple of "
                         f"checkpoint_every_steps ({every})")
    sac = SACConfig(hidden=tuple(s["hidden"]), batch_size=int(s["batch_size"]))
    online = OnlineSACConfig(sac=sac, num_envs=num_envs, buffer_capacity=int(s["buffer_capacity"]),
                             warmup_steps=int(s["warmup_steps"]),
                             updates_per_iteration=int(s["updates_per_iteration"]),
                             train_reward=s["train_reward"],
                             conditioned=_conditioned(s.get("collector", "per_task")))
    ood = s.get("ood_checkpoints")
    # the family's episode length and task counts (family_config), unless the caller's
    configured = {k: int(s[k]) for k in FAMILY_SETTINGS if s.get(k) is not None}
    if configured:
        extra["family_config"] = tuple(sorted(
            dict(extra.get("family_config", ()), **configured).items()))
    return CollectConfig(
        family=family, online=online, num_checkpoints=s["sac_steps"] // every,
        checkpoint_interval=every // num_envs,
        train_checkpoints=tuple(int(k) for k in s["train_checkpoints"]),
        ood_checkpoints=None if not ood else tuple(int(k) for k in ood),
        transitions_per_task=int(s["transitions_per_task"]),
        ood_transitions_per_task=int(s["ood_transitions_per_task"]),
        rollout_envs=int(s["rollout_envs"]), **extra)


# Per-family collection presets, as CollectConfig values (the collect.py flags and the recipes
# override their fields through ``flat_settings`` / ``config_from_settings``, in env steps per
# task). The point robot's reward is sparse (1 within 0.2 of a goal 1 away, from a fixed start):
# SAC from scratch rarely finds it, so its collection agents learn from the dense reward
# -distance (an info key) while the datasets store the task's sparse reward. Locomotion follows
# the peer settings (256x256, lr 3e-4, batch 256). ``"*"``: every family without its own
# (its ``family`` replaced by the family asked for).
def _preset(family: str, *, hidden, batch_size, num_envs, buffer_capacity, warmup_steps,
            updates_per_iteration, train_reward, sac_steps, checkpoint_every_steps,
            train_checkpoints, transitions_per_task, ood_transitions_per_task, rollout_envs,
            ood_checkpoints=None, collector="per_task", split="train", horizon=None
            ) -> CollectConfig:
    return config_from_settings(family, dict(
        hidden=hidden, batch_size=batch_size, num_envs=num_envs,
        buffer_capacity=buffer_capacity, warmup_steps=warmup_steps,
        updates_per_iteration=updates_per_iteration, train_reward=train_reward,
        sac_steps=sac_steps, checkpoint_every_steps=checkpoint_every_steps,
        train_checkpoints=train_checkpoints, ood_checkpoints=ood_checkpoints,
        transitions_per_task=transitions_per_task,
        ood_transitions_per_task=ood_transitions_per_task, rollout_envs=rollout_envs,
        collector=collector, horizon=horizon), split=split,
        # a concrete simulator, so that building the presets asks no backend; preset() gives
        # them physics="auto"
        physics="c" if envs.has_physics(family) else "jax")


PRESETS: Dict[str, Dict[str, CollectConfig]] = {"default": {}, "cpu": {}}
PRESETS["default"]["point_robot_sparse"] = _preset(
    "point_robot_sparse", hidden=(64, 64), batch_size=128, num_envs=8, buffer_capacity=20_000,
    warmup_steps=400, updates_per_iteration=4, train_reward="dense_reward", sac_steps=24_000,
    checkpoint_every_steps=2_000, train_checkpoints=(2, 6, 12), transitions_per_task=6_000,
    ood_transitions_per_task=2_000, rollout_envs=10)
PRESETS["default"]["*"] = _preset(
    "halfcheetah_gravity", hidden=(256, 256), batch_size=256, num_envs=16,
    buffer_capacity=1_000_000, warmup_steps=5_000, updates_per_iteration=8,
    train_reward="reward", sac_steps=1_000_000, checkpoint_every_steps=20_000,
    train_checkpoints=(5, 25, 45), transitions_per_task=150_000,
    ood_checkpoints=(10, 20, 30, 40, 50), ood_transitions_per_task=50_000, rollout_envs=10)


# Sized for an hour on a 2-core CPU, where SAC updates, not environment steps, are the budget
# (benchmarks/collection_cost.py), so per-task SAC on 50 tasks gets too few updates per task; one
# agent conditioned on the target velocity serves all of them with each update: 2 envs per
# task, 50 updates per iteration (0.5 per env step), 20k env steps per task, a checkpoint every
# 1k steps per task (research/NOTES.md has the cost and the checkpoints' returns).
PRESETS["cpu"]["cheetah_vel"] = _preset(
    "cheetah_vel", split="all", collector="conditioned", hidden=(128, 128), batch_size=256,
    num_envs=2, buffer_capacity=1_000_000, warmup_steps=1_000, updates_per_iteration=50,
    train_reward="reward", sac_steps=20_000, checkpoint_every_steps=1_000,
    train_checkpoints=(1, 3, 6, 20), ood_checkpoints=(2, 4, 10, 15), transitions_per_task=8_000,
    ood_transitions_per_task=8_000, rollout_envs=10)
# ReDA's Gravity-1 task sets (gravity x{0.5, 1, 1.5} seen, x{0.8, 1.2} unseen), sized for about
# half an hour of collection on a 2-core CPU: one agent conditioned on the gravity attribute
# (five tasks share every update), 200-step episodes instead of 1,000, 50k env steps per task
# (one update per env step), 20 checkpoints. ReDA (appendix B.2) takes a one-checkpoint task
# set's training data from the middle checkpoint of its run (the 25th of 50) and the held-out
# contexts from all the others; here the 10th of 20 and the other 20 (0: untrained), 200
# episodes of the training checkpoint per task and one whole episode of each held-out
# checkpoint per environment (20 x 10 x 200 steps).
for _family in ("halfcheetah_gravity", "walker2d_gravity"):
    PRESETS["cpu"][_family] = _preset(
        _family, split="all", collector="conditioned", horizon=200, hidden=(128, 128),
        batch_size=256, num_envs=4, buffer_capacity=1_000_000, warmup_steps=1_000,
        updates_per_iteration=20, train_reward="reward", sac_steps=50_000,
        checkpoint_every_steps=2_500, train_checkpoints=(10,),
        ood_checkpoints=tuple(k for k in range(21) if k != 10), transitions_per_task=40_000,
        ood_transitions_per_task=40_000, rollout_envs=10)


def preset(family: str, name: str = "default") -> CollectConfig:
    """Preset ``name``'s ``CollectConfig`` for ``family`` (its own, else the preset's
    locomotion one, ``"*"``); ``ValueError`` if there is none."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    chosen = PRESETS[name].get(family)
    if chosen is None and "*" in PRESETS[name] and envs.has_physics(family):
        chosen = dataclasses.replace(PRESETS[name]["*"], family=family)
    if chosen is None:
        have = sorted(f for f in PRESETS[name] if f != "*")
        raise ValueError(f"preset {name!r} has no settings for {family!r} (it has {have})")
    return dataclasses.replace(chosen, physics="auto")


def flat_settings(config: CollectConfig) -> Dict[str, Any]:
    """The fields of ``config`` that ``config_from_settings`` takes, in its units (env steps
    per task): ``config_from_settings(family, flat_settings(c), ...)`` rebuilds ``c``."""
    o = config.online
    out = dict(hidden=tuple(o.sac.hidden), batch_size=o.sac.batch_size, num_envs=o.num_envs,
               buffer_capacity=o.buffer_capacity, warmup_steps=o.warmup_steps,
               updates_per_iteration=o.updates_per_iteration, train_reward=o.train_reward,
               collector="conditioned" if o.conditioned else "per_task",
               sac_steps=config.num_checkpoints * config.env_steps_per_checkpoint,
               checkpoint_every_steps=config.env_steps_per_checkpoint,
               train_checkpoints=tuple(config.train_checkpoints),
               ood_checkpoints=config.ood_checkpoints,
               transitions_per_task=config.transitions_per_task,
               ood_transitions_per_task=config.ood_transitions_per_task,
               rollout_envs=config.rollout_envs, split=config.split)
    out.update({k: v for k, v in config.family_config if k in FAMILY_SETTINGS})
    return out
