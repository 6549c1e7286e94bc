"""The experiment runner: every seed of a run in one jitted, ``vmap``-ped program, checkpointed.

    result = run(algorithm, data, eval_data, RunConfig(workdir="runs/x", seeds=(0, 1, 2)))

For each phase of the algorithm (``jaxomrl.algos.base``) the runner ``vmap``s ``init`` and a
``lax.scan`` of ``chunk_steps`` updates over seeds and ``jit``s it; between chunks it logs the
chunk-mean metrics (CSV, TensorBoard, a progress line with steps/s and ETA) and saves an orbax
checkpoint of ``(inputs, state)``. With ``shard_seeds`` the seed axis is split over all devices
(``jax.sharding``; seeds must divide evenly).

Randomness is a pure function of (seed, phase, chunk index), so a run killed at any point and
started again with the same workdir resumes from its last checkpoint and ends with the same
parameters as an uninterrupted run. A workdir remembers its configuration (``run.json``) and
refuses a different one -- finished or not -- naming the fields that differ (``check_workdir``;
``archive_run`` moves an old run aside); a finished run with the same identity is reused.

At every chunk boundary the runner checks, inside the jitted chunk, that every metric of every
step and the whole state are finite. On the first NaN / inf it stops with a ``NonFiniteError``
naming the algorithm, phase, step, first non-finite metric and seeds, saves nothing from that
chunk and writes no results; ``diverged.json`` records where. The same workdir then accepts the
same algorithm with other settings (same seeds, chunking and data) and resumes from the last
finite checkpoint; ``settings_changes.json`` and ``results.json`` record the change.

With ``share_dir``, a phase's outputs are published there when it ends, keyed by a digest of
the configs of the phases up to it (``Phase.config``), the seeds, chunking and data; a fresh run whose first phases have the same digest starts after them from the
published outputs (e.g. the ablations of a policy head share one trained encoder), with the same
result as training them again. A phase that declares ``done`` (``Phase.done``: its output can no
longer change, e.g. ReDA's models once every member has early-stopped) stops a seed's updates
when it is done and ends when every seed is, inside a chunk or between chunks, with the same
outputs; ``results.json``'s ``phases_ended_early_in_this_call`` names the step. At the end
``results.json`` holds the final evaluation per seed and as mean +- std over seeds, and the
per-task arrays.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import time
from typing import Any, Callable, Collection, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxomrl.algos.base import FIRST_INPUTS, Algorithm
from jaxomrl.errors import (Interrupted, JaxomrlError, NonFiniteError, steps_finite,
                            tree_all_finite)
from jaxomrl.experiment import guards
from jaxomrl.experiment.provenance import MADE_WITH, made_with
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.logger import RunLogger
from jaxomrl.io import atomic_write_text, require_free_space

EVAL_KEY = 10_000  # fold-in constant of the evaluation key (the same key at every evaluation)


class RunConfigError(JaxomrlError, ValueError):
    """The workdir holds a different run (or one the request cannot continue)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    workdir: str
    seeds: Tuple[int, ...] = (0,)
    chunk_steps: int = 500          # updates per jitted chunk (and per log row)
    checkpoint_every_chunks: int = 1    # chunks between checkpoints
    eval_every: int = 0             # last-phase updates between evaluations (0: only at the end)
    shard_seeds: bool = False       # split the seed axis over all devices
    verbose: bool = True
    share_dir: Optional[str] = None  # outputs of phases other runs can reuse (see ``run``)

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.chunk_steps < 1 or self.checkpoint_every_chunks < 1 or self.eval_every < 0:
            raise ValueError("chunk_steps and checkpoint_every_chunks must be >= 1, "
                             "eval_every >= 0")
        if self.eval_every and self.eval_every % self.chunk_steps:
            raise ValueError(f"eval_every ({self.eval_every}) must be a multiple of chunk_steps "
                             f"({self.chunk_steps})")


def _schedule(algorithm: Algorithm, chunk_steps: int) -> List[Tuple[int, int, int, int]]:
    """Every chunk of the run: (phase index, chunk index in phase, first step, num steps)."""
    out = []
    for p, phase in enumerate(algorithm.phases):
        for c, start in enumerate(range(0, phase.num_steps, chunk_steps)):
            out.append((p, c, start, min(chunk_steps, phase.num_steps - start)))
    return out


def _templates(algorithm: Algorithm, data: Any, num_seeds: int, phase: int) -> Tuple[Any, Any]:
    """Shapes and dtypes of the checkpointed ``(inputs, state)`` of ``phase`` for ``num_seeds``
    seeds, derived abstractly (``jax.eval_shape``) through the earlier phases."""
    keys = jax.eval_shape(lambda: jax.vmap(jax.random.PRNGKey)(jnp.zeros((num_seeds,),
                                                                         jnp.uint32)))
    inputs = jax.ShapeDtypeStruct((num_seeds,) + FIRST_INPUTS.shape, FIRST_INPUTS.dtype)
    for p, ph in enumerate(algorithm.phases[:phase + 1]):
        aux = jax.eval_shape(jax.vmap(ph.prepare, in_axes=(0, None)), inputs, data)
        state = jax.eval_shape(jax.vmap(ph.init, in_axes=(0, 0, None)), keys, aux, data)
        if p < phase:
            inputs = jax.eval_shape(jax.vmap(ph.output), state, aux)
    return inputs, state


def _phase_digests(algorithm: Algorithm, identity: Dict[str, Any]) -> List[Optional[str]]:
    """For every phase but the last: a digest of everything its output depends on (the configs
    of the phases up to it, seeds, chunking, data description), or None if a phase up to it
    declares no ``config``."""
    out, prefix = [], []
    for ph in algorithm.phases[:-1]:
        if ph.config is None or (out and out[-1] is None):
            out.append(None)
            continue
        prefix.append({"name": ph.name, "num_steps": ph.num_steps, "config": ph.config})
        blob = json.dumps({"phases": prefix, "seeds": identity["seeds"],
                           "chunk_steps": identity["chunk_steps"],
                           "description": identity["description"]}, sort_keys=True, default=str)
        out.append(hashlib.sha256(blob.encode()).hexdigest()[:24])
    return out


def _published(where: str) -> bool:
    """Whether a shared phase's directory ``<share_dir>/<digest>`` holds published outputs: its
    ``phase.json`` is written last (:func:`_publish`), so its presence means they are complete."""
    return os.path.exists(os.path.join(where, "phase.json"))


def _pending_shares(algorithm: Algorithm, config: RunConfig,
                    description: Optional[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """``(share_dir, digest)`` of every phase of the run that other runs could share and that
    no run has published yet."""
    if not config.share_dir:
        return []
    identity = run_identity(algorithm, config, description)
    return [(config.share_dir, d) for d in _phase_digests(algorithm, identity)
            if d and not _published(os.path.join(config.share_dir, d))]


def share_groups(runs: Dict[str, Tuple[Algorithm, RunConfig]],
                 description: Optional[Dict[str, Any]] = None,
                 published: Collection[Tuple[str, str]] = ()) -> List[List[str]]:
    """The names of ``runs`` grouped so that runs that can share a phase's outputs (the same
    ``share_dir`` and a phase with the same digest, :func:`_phase_digests`, not yet published
    there nor in ``published``) are in one group. Runs that only share phases already published
    take them and are apart. Groups are in the order of their first run, each in the order
    given."""
    names = list(runs)
    parent = list(range(len(names)))          # union-find over the runs

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: Dict[Tuple[str, str], int] = {}    # (share_dir, digest) -> first run with it
    for i, (algorithm, config) in enumerate(runs.values()):
        for key in _pending_shares(algorithm, config, description):
            if key in published:
                continue
            j = first.setdefault(key, i)
            if root(j) != root(i):
                parent[root(i)] = root(j)
    groups: Dict[int, List[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(root(i), []).append(name)
    return list(groups.values())


def share_schedule(runs: Dict[str, Tuple[Algorithm, RunConfig]],
                   description: Optional[Dict[str, Any]] = None
                   ) -> List[Tuple[str, Optional[int]]]:
    """An order in which ``runs`` can train side by side, each shared phase trained once:
    ``[(name, after)]``, ``after`` the index of the entry whose run must have finished first
    (it publishes the phases this one takes), or None. Of each group of :func:`share_groups`
    the first run goes first; the others follow it, side by side with each other unless they
    share a further phase (then the same again among them)."""
    out: List[Tuple[str, Optional[int]]] = []

    def add(names: List[str], after: Optional[int], published: frozenset) -> None:
        for group in share_groups({n: runs[n] for n in names}, description, published):
            out.append((group[0], after))
            if len(group) > 1:
                head = runs[group[0]]
                add(group[1:], len(out) - 1,
                    published | set(_pending_shares(*head, description)))

    add(list(runs), None, frozenset())
    return out


def evaluation_keys(seeds) -> jax.Array:
    """``[len(seeds)]`` keys of the evaluations of seeds ``seeds`` (the same at every evaluation
    of a run, and for ``experiments/evaluate.py``)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(list(seeds), jnp.uint32))
    return jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY))(keys)


def seed_summary(values: np.ndarray) -> Dict[str, Any]:
    """Mean, sample std (ddof = 1; null for one seed), n and the per-seed values of ``[seeds]``
    values (``results.json`` entries; the tables' intervals: ``jaxomrl.eval.stats``)."""
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else None, "n": int(values.size),
            "per_seed": [float(v) for v in values]}


def task_scores(evaluation: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """``{column: [seeds, tasks]}`` float64 scores of an evaluation: for ``name [seeds, tasks,
    episodes]`` every episode (``name/ep1`` ...); other arrays over their non-seed axes."""
    out = {}
    for name, v in evaluation.items():
        v = np.asarray(v, np.float64)
        if v.ndim == 3:
            for e in range(v.shape[2]):
                out[f"{name}/ep{e + 1}"] = v[:, :, e]
        else:
            out[name] = v.reshape(v.shape[0], -1)
    return out


def scalar_metrics(evaluation: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``[seeds]`` scalars from an evaluation: the mean over tasks of :func:`task_scores`.
    Means in float64: the same returns give the same scalars whether they come from the device
    (float32) or from a ``results.json`` (``evaluate.py --from_training``)."""
    return {k: v.mean(axis=1) for k, v in task_scores(evaluation).items()}


RUN_JSON, RESULTS_JSON = "run.json", "results.json"
DIVERGED_JSON, CHANGES_JSON = "diverged.json", "settings_changes.json"


def run_identity(algorithm: Algorithm, config: RunConfig,
                 description: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Everything that changes a run's numbers, as stored in ``run.json`` (standard JSON)."""
    identity = {"algorithm": algorithm.name, "config": algorithm.config,
                "seeds": list(config.seeds), "chunk_steps": config.chunk_steps,
                "eval_every": config.eval_every, "description": description or {}}
    return json.loads(json.dumps(identity, default=str, allow_nan=False))


def identity_diff(old: Any, new: Any, path: str = "") -> List[str]:
    """``["config.policy.hidden: [16, 16] -> [32, 32]", ...]``: the leaves that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += identity_diff(old.get(k, "(absent)"), new.get(k, "(absent)"),
                                 f"{path}.{k}" if path else str(k))
        return out
    if old == new:
        return []
    show = lambda v: (v if len(v) < 60 else v[:57] + "...") if isinstance(v, str) else \
        json.dumps(v)[:60]
    return [f"{path or '(run)'}: {show(old)} -> {show(new)}"]


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _saved_identity(workdir: str) -> Optional[Dict[str, Any]]:
    """``run.json`` without its ``made_with`` record (where and how, not what: not compared)."""
    saved = _read_json(os.path.join(workdir, RUN_JSON))
    if saved is not None:
        saved.pop(MADE_WITH, None)
    return saved


def check_workdir(workdir: str, identity: Dict[str, Any],
                  read_config: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> str:
    """What ``workdir`` holds for a run of ``identity``, checked before any work.

    Returns ``"new"`` (nothing yet), ``"unfinished"`` (the same run, to resume), ``"finished"``
    (the same run, done: its ``results.json`` is reused) or ``"diverged"`` (the same algorithm,
    seeds, chunking and data stopped on non-finite values; it resumes from its last finite
    checkpoint, with these settings). Raises ``RunConfigError`` naming the differing fields if the
    workdir holds any other run, finished or not, or is a file. ``read_config`` (the algorithm's)
    brings the saved ``config`` into today's form first (fields renamed or added since).
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise RunConfigError(f"workdir {workdir} is a file, not a directory")
    saved = _saved_identity(workdir)
    if saved is None:
        return "new"
    if read_config is not None and isinstance(saved.get("config"), dict):
        try:
            saved = {**saved, "config": json.loads(json.dumps(
                read_config(saved["config"]), default=str, allow_nan=False))}
        except (ValueError, TypeError, KeyError):
            pass                    # not a config of this algorithm: compared as written
    diverged = _read_json(os.path.join(workdir, DIVERGED_JSON))
    finished = os.path.exists(os.path.join(workdir, RESULTS_JSON))
    diff = identity_diff(saved, identity)
    if not diff:
        return "finished" if finished else "diverged" if diverged else "unfinished"
    if diverged and not finished and all(d.startswith("config.") for d in diff):
        return "diverged"
    state = "a finished" if finished else "an unfinished"
    shown = "; ".join(diff[:8]) + (f"; ... ({len(diff)} fields)" if len(diff) > 8 else "")
    raise RunConfigError(
        f"{workdir} holds {state} run of {saved.get('algorithm')} with other settings "
        f"(old -> requested: {shown}). Use another workdir, or overwrite it (train.py "
        f"--overwrite moves the old run to {archive_path(workdir)})")


def archive_path(workdir: str) -> str:
    """Where ``archive_run`` moves ``workdir``: ``<parent>/replaced/<name>-<UTC time>`` (outside
    the parent's run directories, so ``experiments/evaluate.py`` does not list it)."""
    workdir = os.path.abspath(workdir)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return os.path.join(os.path.dirname(workdir), "replaced",
                        f"{os.path.basename(workdir)}-{stamp}")


def archive_run(workdir: str) -> str:
    """Moves the run in ``workdir`` aside (``archive_path``) and returns where it went."""
    dest = archive_path(workdir)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    n, base = 1, dest
    while os.path.exists(dest):
        n, dest = n + 1, f"{base}.{n}"
    os.rename(workdir, dest)
    return dest


def _end_point(algorithm: Algorithm, schedule, chunks: int) -> Optional[List[Any]]:
    """``[phase name, step]`` at which the first ``chunks`` chunks of ``schedule`` end."""
    if not chunks:
        return None
    p, _, start, n = schedule[min(chunks, len(schedule)) - 1]
    return [algorithm.phases[p].name, start + n]


def _nonfinite_message(name: str, phase: str, start: int, n: int, finite_metrics, state_ok,
                       seeds: List[int]) -> Optional[str]:
    """A description of the first non-finite value of a chunk (None if all is finite).
    ``finite_metrics``: ``{metric: [seeds, n]}`` per-step flags; ``state_ok``: ``[seeds]``."""
    names = sorted(finite_metrics)
    ok = (np.stack([np.asarray(finite_metrics[k]) for k in names], -1) if names
          else np.ones((len(seeds), n, 0), bool))                     # [S, n, M]
    step_ok = ok.all(-1)                                                # [S, n]
    state_ok = np.asarray(state_ok, bool)
    bad_seeds = [s for i, s in enumerate(seeds) if not (step_ok[i].all() and state_ok[i])]
    if not bad_seeds:
        return None
    where = f"phase '{phase}' of {name}"
    if not step_ok.all():
        first = min(int(np.argmin(step_ok[i])) for i in range(len(seeds)) if not step_ok[i].all())
        metrics = [k for m, k in enumerate(names) if not ok[:, first, m].all()]
        what = (f"at {where}, step {start + first + 1} (chunk of steps {start + 1}-{start + n}): "
                f"first non-finite metric {metrics[0]}"
                + (f" (also {', '.join(metrics[1:])})" if metrics[1:] else ""))
    else:
        what = (f"at {where}, steps {start + 1}-{start + n}: the training state became "
                "non-finite while its metrics stayed finite")
    return f"{what}; seeds affected: {bad_seeds}"

class Programs:
    """The jitted, seed-``vmap``ped programs of one algorithm: every phase's ``prepare``,
    ``init``, ``output``, its chunk of ``n`` updates (built once per ``(phase, n)``), and the
    evaluation. ``sequential_seeds``: the chunks of phases with ``seeds_in_sequence`` run the
    seeds one after another (``lax.map``) instead (the runner's choice on a CPU backend without
    ``shard_seeds``; :func:`sequential_seeds`)."""

    def __init__(self, algorithm: Algorithm, sequential_seeds: bool = False):
        phases = algorithm.phases
        self.phases = phases
        self.sequential_seeds = sequential_seeds
        self.prepare = [jax.jit(jax.vmap(ph.prepare, in_axes=(0, None))) for ph in phases]
        self.init = [jax.jit(jax.vmap(ph.init, in_axes=(0, 0, None))) for ph in phases]
        self.output = [jax.jit(jax.vmap(ph.output)) for ph in phases]
        self.evaluate = jax.jit(jax.vmap(algorithm.evaluate, in_axes=(0, 0, None)))
        self.done = [None if ph.done is None else jax.jit(jax.vmap(ph.done)) for ph in phases]
        self._chunks: Dict[Tuple[int, int], Callable] = {}

    def chunk(self, p: int, n: int) -> Callable:
        """``(state, key, aux, data) -> (state, chunk-mean metrics, (per-step metric
        finiteness, state finiteness), updates run)`` of ``n`` updates of phase ``p``, every
        seed. A phase with ``done`` stops a seed's updates once it is done (a ``while_loop``
        with the same per-update keys; the metrics are the mean over the updates run), and
        the chunk ends when every seed is done."""
        if (p, n) not in self._chunks:
            phase = self.phases[p]

            def one_seed(state, key, aux, data):
                keys = jax.random.split(key, n)
                if phase.done is None:
                    state, metrics = jax.lax.scan(lambda s, k: phase.update(s, k, aux, data),
                                                  state, keys)
                    finite = (steps_finite(metrics, n), tree_all_finite(state))
                    return state, jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0),
                                                         metrics), finite, jnp.asarray(n)
                like = jax.eval_shape(lambda s, k: phase.update(s, k, aux, data)[1], state,
                                      keys[0])
                rows = jax.tree_util.tree_map(lambda m: jnp.zeros((n,) + m.shape, m.dtype),
                                              like)

                def body(carry):
                    i, s, rows = carry
                    s, m = phase.update(s, keys[i], aux, data)
                    return i + 1, s, jax.tree_util.tree_map(lambda r, v: r.at[i].set(v),
                                                            rows, m)

                ran, state, rows = jax.lax.while_loop(
                    lambda carry: (carry[0] < n) & ~phase.done(carry[1]), body,
                    (jnp.asarray(0), state, rows))
                run_rows = jnp.arange(n) < ran          # rows not run stay zero: finite

                def mean(r):
                    mask = run_rows.reshape((n,) + (1,) * (r.ndim - 1))
                    return jnp.sum(jnp.where(mask, r, 0), axis=0) / jnp.maximum(ran, 1)
                finite = (steps_finite(rows, n), tree_all_finite(state))
                return state, jax.tree_util.tree_map(mean, rows), finite, ran

            if self.sequential_seeds and phase.seeds_in_sequence:
                def every_seed(state, key, aux, data):
                    return jax.lax.map(lambda a: one_seed(*a, data), (state, key, aux))
            else:
                every_seed = jax.vmap(one_seed, in_axes=(0, 0, 0, None))
            self._chunks[(p, n)] = jax.jit(every_seed)
        return self._chunks[(p, n)]


def sequential_seeds(config: RunConfig) -> bool:
    """Whether phases hinting ``seeds_in_sequence`` run their seeds one after another: on a CPU
    backend, unless the seeds are sharded over devices."""
    return jax.default_backend() == "cpu" and not config.shard_seeds


def _placement(config: RunConfig, data: Any, eval_data: Any) -> Tuple[Callable, Any, Any]:
    """``(put_seeds, data, eval_data)``: seeds on the leading axis, split over the devices with
    ``shard_seeds`` (the data then replicated on every device)."""
    if not config.shard_seeds:
        return (lambda t: t), data, eval_data
    devices = jax.devices()
    if len(config.seeds) % len(devices):
        raise ValueError(f"shard_seeds: {len(config.seeds)} seeds do not split evenly over "
                         f"{len(devices)} devices")
    mesh = Mesh(np.array(devices), ("seeds",))
    seed_sharding, shared = NamedSharding(mesh, P("seeds")), NamedSharding(mesh, P())
    data, eval_data = jax.device_put((data, eval_data), shared)
    return (lambda t: jax.device_put(t, seed_sharding)), data, eval_data


@dataclasses.dataclass
class _Position:
    """Where training stands: the outputs of the phases before ``phase`` (``inputs``), and
    ``phase``'s prepared ``aux`` and ``state`` (``phase`` None: no phase started yet)."""
    inputs: Any
    phase: Optional[int] = None
    aux: Any = None
    state: Any = None


def _restore(algorithm: Algorithm, programs: Programs, ckpt: Checkpointer, schedule,
             done_chunks: int, diverged: Optional[Dict[str, Any]], data: Any, num_seeds: int,
             put_seeds: Callable, workdir: str) -> _Position:
    """The position saved after chunk ``done_chunks``; after a divergence the new settings must
    end that chunk at the same point and fit its state's shapes."""
    p_done = schedule[min(done_chunks, len(schedule)) - 1][0]
    if diverged is not None and _end_point(algorithm, schedule, done_chunks) \
            != diverged["resume_point"]:
        raise RunConfigError(
            f"{workdir}: with the new settings, chunk {done_chunks} no longer ends at "
            f"{diverged['resume_point']} (the last finite checkpoint of the diverged run); "
            "keep the steps of the phases before it, or start over (--overwrite)")
    like_inputs, like_state = _templates(algorithm, data, num_seeds, p_done)
    try:
        saved = ckpt.restore(done_chunks, {"inputs": like_inputs, "state": like_state})
    except (ValueError, KeyError) as e:
        if diverged is None:
            raise
        raise RunConfigError(
            f"{workdir}: the last finite checkpoint of the diverged run does not fit "
            f"the new settings (shapes of the state differ: {str(e)[:200]}); change only "
            "weights, rates and step counts of later phases, or start over (--overwrite)"
        ) from e
    inputs = put_seeds(saved["inputs"])
    return _Position(inputs, p_done, programs.prepare[p_done](inputs, data),
                     put_seeds(saved["state"]))


def _record_settings_change(workdir: str, identity: Dict[str, Any],
                            diverged: Dict[str, Any], done_chunks: int) -> List[str]:
    """Appends the change of settings after a divergence to ``settings_changes.json``, makes the
    new settings the workdir's identity and clears ``diverged.json``; returns what changed."""
    run_json = os.path.join(workdir, RUN_JSON)
    previous = _read_json(run_json)
    made = previous.pop(MADE_WITH, None)
    changes = _read_json(os.path.join(workdir, CHANGES_JSON)) or []
    changes.append({"resumed_after_chunk": done_chunks, "diverged": diverged["message"],
                    "changed": identity_diff(previous, identity),
                    "previous_config": previous["config"]})
    atomic_write_text(os.path.join(workdir, CHANGES_JSON),
                      json.dumps(changes, indent=1, allow_nan=False))
    atomic_write_text(run_json, json.dumps({**identity, **({MADE_WITH: made} if made else {})},
                                           indent=1, sort_keys=True))
    os.remove(os.path.join(workdir, DIVERGED_JSON))
    return changes[-1]["changed"]


def _take_shared(algorithm: Algorithm, digests, share_dir: str, data: Any, num_seeds: int,
                 put_seeds: Callable, workdir: str
                 ) -> Optional[Tuple[Any, int, List[str], str]]:
    """The published outputs of this run's longest prefix of phases another run trained
    (``share_dir``), with their logs copied into ``workdir``: ``(inputs, number of phases
    taken, their names, where they were)``, or None."""
    for p in reversed(range(len(digests))):
        outputs, where = published_outputs(algorithm, digests, share_dir, data, num_seeds, p)
        if outputs is not None:
            _copy_phase_logs(algorithm.phases[:p + 1], where, workdir)
            return put_seeds(outputs), p + 1, [ph.name for ph in algorithm.phases[:p + 1]], where
    return None


def published_outputs(algorithm: Algorithm, digests: List[Optional[str]], share_dir: str,
                      data: Any, num_seeds: int, p: int) -> Tuple[Any, str]:
    """``(outputs, where)``: phase ``p``'s outputs (every seed stacked) as a run published them
    in ``share_dir`` (``digests``: :func:`_phase_digests`), or ``(None, where)`` if none did."""
    where = os.path.join(share_dir, digests[p] or "")
    if not digests[p] or not _published(where):
        return None, where
    like = _templates(algorithm, data, num_seeds, p + 1)[0]
    return _restore_outputs(where, like), where


def _publish(algorithm: Algorithm, p: int, outputs: Any, digest: Optional[str],
             config: RunConfig) -> None:
    """Publishes phase ``p``'s outputs (and the CSV logs up to it) for other runs."""
    if not config.share_dir or digest is None:
        return
    where = os.path.join(config.share_dir, digest)
    if _published(where):
        return
    os.makedirs(where, exist_ok=True)
    _copy_phase_logs(algorithm.phases[:p + 1], config.workdir, where)
    saver = Checkpointer(os.path.join(where, "outputs"))
    saver.save(0, {"outputs": outputs})
    saver.close()
    atomic_write_text(os.path.join(where, "phase.json"), json.dumps(
        {"phases": [ph.name for ph in algorithm.phases[:p + 1]], "from": config.workdir,
         "algorithm": algorithm.name, "seeds": list(config.seeds)}, indent=1))


def _diverged(algorithm: Algorithm, schedule, ckpt: Checkpointer, workdir: str,
              message: str) -> NonFiniteError:
    """Records where the run diverged (``diverged.json``; the last finite checkpoint stays) and
    returns the error to raise."""
    last = ckpt.latest_step() or 0
    point = _end_point(algorithm, schedule, last)
    atomic_write_text(os.path.join(workdir, DIVERGED_JSON), json.dumps(
        {"message": message, "resume_point": point, "last_finite_chunk": last}, indent=1))
    kept = (f"the last finite checkpoint ({point[0]} step {point[1]}) is kept in "
            f"{workdir}" if last else "no earlier checkpoint exists in this workdir")
    return NonFiniteError(
        f"training became non-finite {message}. Nothing was saved from it and no results "
        f"were written; {kept}. Rerun into the same workdir with other settings (e.g. a "
        "smaller weight or learning rate) to resume from there, or start over elsewhere")


def _progress_line(name: str, phase, start: int, n: int, rate: float, num_seeds: int,
                   metrics: Dict[str, Any]) -> str:
    eta = (phase.num_steps - start - n) / max(rate, 1e-9)
    shown = " ".join(f"{k}={float(np.mean(v)):.4g}" for k, v in sorted(metrics.items())
                     if k in ("loss", "actor_loss", "critic_loss", "infonce", "bc_loss",
                              "batch_task_accuracy"))
    return (f"[{name}] {phase.name} {start + n}/{phase.num_steps} | {rate:.0f} steps/s x "
            f"{num_seeds} seeds | phase ETA {eta:.0f}s | {shown}")


def _check_evaluation(name: str, evaluation: Dict[str, np.ndarray], seeds: List[int]) -> None:
    """Raises ``NonFiniteError`` if the evaluation (from finite parameters) is not finite."""
    bad = sorted(k for k, v in evaluation.items()
                 if np.issubdtype(np.asarray(v).dtype, np.inexact)
                 and not np.all(np.isfinite(v)))
    if bad:
        which = [s for i, s in enumerate(seeds)
                 if not all(np.all(np.isfinite(evaluation[k][i])) for k in bad)]
        raise NonFiniteError(
            f"the evaluation of {name} gave non-finite values ({', '.join(bad)}; "
            f"seeds {which}) from finite parameters, so no results were written: the "
            "simulation of the evaluation episodes is the first suspect")


def run(algorithm: Algorithm, data: Any, eval_data: Any, config: RunConfig,
        description: Optional[Dict[str, Any]] = None,
        stop_after_chunks: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """Trains (or resumes) every seed of ``algorithm`` and evaluates it.

    Args:
      algorithm: phases and evaluation (one seed each; see ``jaxomrl.algos.base``).
      data: pytree of device arrays the phases read (shared by all seeds).
      eval_data: pytree the evaluation reads.
      config: run settings.
      description: JSON-serialisable facts that identify the run beyond the algorithm's config
        (dataset path and checksum, family, ...); stored in ``run.json`` and ``results.json``.
      stop_after_chunks: stop (checkpointed) after this many chunks in this call; for tests of
        resumption. Returns None in that case.

    Returns the results dictionary also written to ``workdir/results.json`` (that of the
    finished run if ``workdir`` already holds this run, finished). Raises ``RunConfigError`` if
    the workdir holds another run, ``DirectoryInUse`` if another process is training in it
    (``guards.directory_lock``), ``NonFiniteError`` if training or evaluation goes non-finite,
    ``Interrupted`` after SIGINT (Ctrl-C), at the next chunk boundary, checkpointed
    (``guards.StopRequests``).
    """
    identity = run_identity(algorithm, config, description)
    check_workdir(config.workdir, identity, algorithm.read_config)   # a file, another run: refused
    with guards.directory_lock(config.workdir, f"training {algorithm.name}"):
        # read again under the lock: another command may have trained it meanwhile
        status = check_workdir(config.workdir, identity, algorithm.read_config)
        return _run(algorithm, data, eval_data, config, identity, status, stop_after_chunks)


def _run(algorithm: Algorithm, data: Any, eval_data: Any, config: RunConfig,
         identity: Dict[str, Any], status: str, stop_after_chunks: Optional[int]
         ) -> Optional[Dict[str, Any]]:
    name, workdir, verbose = algorithm.name, config.workdir, config.verbose
    if status == "finished":
        if verbose:
            print(f"[{name}] finished run with the same settings found in {workdir}; reusing "
                  "its results.json", flush=True)
        return _read_json(os.path.join(workdir, RESULTS_JSON))
    os.makedirs(workdir, exist_ok=True)
    if status == "new":
        atomic_write_text(os.path.join(workdir, RUN_JSON),
                          json.dumps({**identity, MADE_WITH: made_with()}, indent=1,
                                     sort_keys=True))
    diverged = _read_json(os.path.join(workdir, DIVERGED_JSON)) if status == "diverged" \
        else None

    seeds = list(config.seeds)
    put_seeds, data, eval_data = _placement(config, data, eval_data)
    seed_keys = put_seeds(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32)))
    phase_keys = [jax.vmap(lambda k: jax.random.fold_in(k, p))(seed_keys)
                  for p in range(len(algorithm.phases))]
    eval_keys = put_seeds(evaluation_keys(seeds))
    schedule = _schedule(algorithm, config.chunk_steps)
    last_phase = len(algorithm.phases) - 1
    programs = Programs(algorithm, sequential_seeds(config))

    # Restore, or start (from the outputs of phases another run published, if any).
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    done_chunks = ckpt.latest_step() or 0
    at = _Position(put_seeds(jnp.broadcast_to(FIRST_INPUTS, (len(seeds),) + FIRST_INPUTS.shape)))
    if done_chunks:
        try:
            at = _restore(algorithm, programs, ckpt, schedule, done_chunks, diverged, data,
                          len(seeds), put_seeds, workdir)
        except BaseException:
            ckpt.close()
            raise
    if diverged is not None:
        changed = _record_settings_change(workdir, identity, diverged, done_chunks)
        if verbose:
            print(f"[{name}] resuming the diverged run after chunk {done_chunks}, settings "
                  f"changed: {'; '.join(changed) or 'none'}", flush=True)
    digests = _phase_digests(algorithm, identity)
    first_chunk, shared = done_chunks, []
    taken = (_take_shared(algorithm, digests, config.share_dir, data, len(seeds), put_seeds,
                          workdir) if not done_chunks and config.share_dir else None)
    if taken is not None:
        at.inputs, phases_taken, shared, where = taken
        first_chunk = next(g for g, c in enumerate(schedule) if c[0] == phases_taken)
        if verbose:
            print(f"[{name}] phases {shared} shared from {where}", flush=True)

    purge = sum(s[3] for s in schedule[:first_chunk])  # updates done before this call
    logger = RunLogger(workdir, seeds, purge_step=purge or None)
    if done_chunks:
        p_done, _, start, n = schedule[done_chunks - 1]
        logger.truncate(algorithm.phases[p_done].name, start + n)
        for p in range(p_done + 1, len(algorithm.phases)):
            logger.truncate(algorithm.phases[p].name, -1)
        logger.truncate("eval", start + n if p_done == last_phase else -1)
        if verbose:
            print(f"[{name}] resuming after chunk {done_chunks}/{len(schedule)} "
                  f"({algorithm.phases[p_done].name} step {start + n})", flush=True)

    def log_eval(position: _Position, step: int, global_step: int, seconds: float):
        outs = programs.output[last_phase](position.state, position.aux)
        ev = jax.device_get(programs.evaluate(outs, eval_keys, eval_data))
        logger.write("eval", step, global_step, seconds, scalar_metrics(ev))
        return ev

    t_start = time.time()
    global_step = purge
    chunks_this_call = 0
    ended_early = {}
    g = first_chunk
    with guards.StopRequests() as stop:
        try:
            while g < len(schedule):
                p, c, start, n = schedule[g]
                if at.phase == p and programs.done[p] is not None and \
                        np.all(jax.device_get(programs.done[p](at.state))):
                    # Every seed's phase is done: its remaining updates would change no output.
                    last = max(i for i, chunk in enumerate(schedule) if chunk[0] == p)
                    ckpt.save(last + 1, {"inputs": at.inputs, "state": at.state})
                    global_step += sum(chunk[3] for chunk in schedule[g:last + 1])
                    done_at = ended_early.setdefault(algorithm.phases[p].name, start)
                    if verbose:
                        print(f"[{name}] {algorithm.phases[p].name}: done for every seed after "
                              f"{done_at} of {algorithm.phases[p].num_steps} steps; the rest are "
                              "skipped (they would change no output)", flush=True)
                    g = last + 1
                    continue
                phase = algorithm.phases[p]
                if at.phase != p:
                    if at.phase is not None:
                        at.inputs = programs.output[at.phase](at.state, at.aux)
                        _publish(algorithm, at.phase, at.inputs, digests[at.phase], config)
                    k_init = jax.vmap(lambda k: jax.random.fold_in(k, 0))(phase_keys[p])
                    at.aux = programs.prepare[p](at.inputs, data)
                    at.state = programs.init[p](k_init, at.aux, data)
                    at.phase = p
                    t_phase, steps_phase = time.time(), 0
                elif chunks_this_call == 0:
                    t_phase, steps_phase = time.time(), 0
                key = jax.vmap(lambda k: jax.random.fold_in(k, 1 + c))(phase_keys[p])
                at.state, metrics, finite, ran = programs.chunk(p, n)(at.state, key, at.aux, data)
                metrics, finite, ran = jax.device_get((metrics, finite, ran))
                if int(np.max(ran)) < n:               # every seed done within the chunk
                    ended_early[phase.name] = start + int(np.max(ran))
                problem = _nonfinite_message(name, phase.name, start, n, finite[0], finite[1],
                                             seeds)
                if problem:
                    raise _diverged(algorithm, schedule, ckpt, workdir, problem)
                global_step += n
                steps_phase += n
                elapsed = time.time() - t_start
                require_free_space(workdir)
                logger.write(phase.name, start + n, global_step, elapsed, metrics)
                if p == last_phase and config.eval_every and (start + n) % config.eval_every == 0 \
                        and start + n < phase.num_steps:
                    log_eval(at, start + n, global_step, elapsed)
                chunks_this_call += 1
                stopping = (stop_after_chunks is not None and chunks_this_call >= stop_after_chunks
                            or stop.requested is not None)
                phase_ends = g + 1 == len(schedule) or schedule[g + 1][0] != p
                if (g + 1) % config.checkpoint_every_chunks == 0 or phase_ends or stopping:
                    ckpt.save(g + 1, {"inputs": at.inputs, "state": at.state})
                if verbose:
                    rate = steps_phase / max(time.time() - t_phase, 1e-9)
                    print(_progress_line(name, phase, start, n, rate, len(seeds), metrics),
                          flush=True)
                if stop.requested is not None:
                    raise Interrupted(
                        f"[{name}] interrupted ({signal.Signals(stop.requested).name}) after "
                        f"chunk {g + 1}/{len(schedule)} ({phase.name} step {start + n}); its "
                        f"checkpoint is kept in {workdir}: rerun the same command to resume")
                if stopping and g + 1 < len(schedule):
                    return None
                g += 1

            final_step = algorithm.phases[last_phase].num_steps
            evaluation = log_eval(at, final_step, global_step, time.time() - t_start)
        finally:
            ckpt.close()
            logger.close()
    _check_evaluation(name, evaluation, seeds)
    changes = _read_json(os.path.join(workdir, CHANGES_JSON))
    results = {
        "algorithm": name,
        "seeds": seeds,
        "metrics": {k: seed_summary(v) for k, v in scalar_metrics(evaluation).items()},
        "per_task": {k: np.asarray(v).tolist() for k, v in evaluation.items()},
        "train_seconds_this_call": time.time() - t_start,
        "devices": len(jax.tree_util.tree_leaves(at.state)[0].sharding.device_set),
        "phases_shared_in_this_call": shared,
        "phases_ended_early_in_this_call": ended_early,
        "run": identity,
        MADE_WITH: made_with(),
    }
    if changes:
        results["settings_changes"] = changes
    atomic_write_text(os.path.join(workdir, RESULTS_JSON),
                      json.dumps(results, indent=1, sort_keys=True, allow_nan=False))
    return results


def _copy_phase_logs(phases, src_dir: str, dst_dir: str) -> None:
    """Copies the ``metrics_<phase>.csv`` of ``phases`` that exist in ``src_dir``."""
    for ph in phases:
        src = os.path.join(src_dir, f"metrics_{ph.name}.csv")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(dst_dir, f"metrics_{ph.name}.csv"))


def _restore_outputs(where: str, like: Any) -> Any:
    loader = Checkpointer(os.path.join(where, "outputs"))
    try:
        return loader.restore(0, {"outputs": like})["outputs"]
    finally:
        loader.close()


def final_outputs(algorithm: Algorithm, data: Any, workdir: str, num_seeds: int) -> Any:
    """The last phase's outputs (e.g. trained parameters) of a finished run, from its checkpoint."""
    with open(os.path.join(workdir, "run.json")) as f:
        schedule = _schedule(algorithm, json.load(f)["chunk_steps"])
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    step = ckpt.latest_step()
    if step != len(schedule):
        raise ValueError(f"{workdir}: the run is not finished ({step} of {len(schedule)} chunks)")
    like_inputs, like_state = _templates(algorithm, data, num_seeds, len(algorithm.phases) - 1)
    saved = ckpt.restore(step, {"inputs": like_inputs, "state": like_state})
    ckpt.close()
    last = algorithm.phases[-1]
    aux = jax.jit(jax.vmap(last.prepare, in_axes=(0, None)))(saved["inputs"], data)
    return jax.jit(jax.vmap(last.output))(saved["state"], aux)
