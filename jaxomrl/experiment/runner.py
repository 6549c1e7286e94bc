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

The loop is this module's; its parts each have their own: the compiled programs and the
schedule of chunks (``programs``), the run directory's identity and archive (``run_dir``), phase
sharing (``sharing``), divergence (``divergence``), the settings (``run_config``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.algos.base import FIRST_INPUTS, Algorithm
from jaxomrl.errors import Interrupted
from jaxomrl.eval.stats import scalar_metrics, seed_summary
from jaxomrl.experiment import distributed, guards
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.divergence import (check_evaluation, end_point, nonfinite_message,
                                           record_divergence)
from jaxomrl.experiment.logger import NullLogger, RunLogger
from jaxomrl.experiment.programs import (Placement, Programs, chunk_schedule, evaluation_keys,
                                         placement, sequential_seeds, templates)
from jaxomrl.experiment.provenance import MADE_WITH, made_with
from jaxomrl.experiment.run_config import RunConfig, RunConfigError
from jaxomrl.experiment.run_dir import (CHANGES_JSON, DIVERGED_JSON, RESULTS_JSON, RUN_JSON,
                                        check_workdir, read_json, record_settings_change,
                                        run_identity)
from jaxomrl.experiment.sharing import phase_digests, publish, take_shared
from jaxomrl.io import atomic_write_text, require_free_space


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
             place: Placement, workdir: str) -> _Position:
    """The position saved after chunk ``done_chunks``; after a divergence the new settings must
    end that chunk at the same point and fit its state's shapes."""
    p_done = schedule[min(done_chunks, len(schedule)) - 1][0]
    if diverged is not None and end_point(algorithm, schedule, done_chunks) \
            != diverged["resume_point"]:
        raise RunConfigError(
            f"{workdir}: with the new settings, chunk {done_chunks} no longer ends at "
            f"{diverged['resume_point']} (the last finite checkpoint of the diverged run); "
            "keep the steps of the phases before it, or start over (--overwrite)")
    like_inputs, like_state = templates(algorithm, data, num_seeds, p_done)
    try:
        saved = ckpt.restore(done_chunks, {"inputs": like_inputs, "state": like_state},
                             place.seed_sharding)
    except (ValueError, KeyError) as e:
        if diverged is None:
            raise
        raise RunConfigError(
            f"{workdir}: the last finite checkpoint of the diverged run does not fit "
            f"the new settings (shapes of the state differ: {str(e)[:200]}); change only "
            "weights, rates and step counts of later phases, or start over (--overwrite)"
        ) from e
    inputs = place.put_seeds(saved["inputs"])
    return _Position(inputs, p_done, programs.prepare[p_done](inputs, data),
                     place.put_seeds(saved["state"]))


def _progress_line(name: str, phase, start: int, n: int, rate: float, num_seeds: int,
                   metrics: Dict[str, Any]) -> str:
    eta = (phase.num_steps - start - n) / max(rate, 1e-9)
    shown = " ".join(f"{k}={float(np.mean(v)):.4g}" for k, v in sorted(metrics.items())
                     if k in ("loss", "actor_loss", "critic_loss", "infonce", "bc_loss",
                              "batch_task_accuracy"))
    return (f"[{name}] {phase.name} {start + n}/{phase.num_steps} | {rate:.0f} steps/s x "
            f"{num_seeds} seeds | phase ETA {eta:.0f}s | {shown}")


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
    # a file, another run: refused
    status = check_workdir(config.workdir, identity, algorithm.read_config)
    distributed.barrier(f"checked {config.workdir}")    # every process read it before writes
    if not distributed.is_writer():     # process 0 holds the lock and writes the files
        return _run(algorithm, data, eval_data, config, identity, status, stop_after_chunks)
    with guards.directory_lock(config.workdir, f"training {algorithm.name}"):
        # read again under the lock: another command may have trained it meanwhile
        status = check_workdir(config.workdir, identity, algorithm.read_config)
        return _run(algorithm, data, eval_data, config, identity, status, stop_after_chunks)


def _run(algorithm: Algorithm, data: Any, eval_data: Any, config: RunConfig,
         identity: Dict[str, Any], status: str, stop_after_chunks: Optional[int]
         ) -> Optional[Dict[str, Any]]:
    name, workdir = algorithm.name, config.workdir
    writer = distributed.is_writer()
    verbose = config.verbose and writer
    if status == "finished":
        if verbose:
            print(f"[{name}] finished run with the same settings found in {workdir}; reusing "
                  "its results.json", flush=True)
        return read_json(os.path.join(workdir, RESULTS_JSON))
    os.makedirs(workdir, exist_ok=True)
    if status == "new" and writer:
        atomic_write_text(os.path.join(workdir, RUN_JSON),
                          json.dumps({**identity, MADE_WITH: made_with()}, indent=1,
                                     sort_keys=True))
    diverged = read_json(os.path.join(workdir, DIVERGED_JSON)) if status == "diverged" \
        else None

    seeds = list(config.seeds)
    place = placement(config, data, eval_data)
    put_seeds, data, eval_data = place.put_seeds, place.data, place.eval_data
    seed_keys = put_seeds(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32)))
    phase_keys = [jax.vmap(lambda k: jax.random.fold_in(k, p))(seed_keys)
                  for p in range(len(algorithm.phases))]
    eval_keys = put_seeds(evaluation_keys(seeds))
    schedule = chunk_schedule(algorithm, config.chunk_steps)
    last_phase = len(algorithm.phases) - 1
    programs = Programs(algorithm, sequential_seeds(config))

    # Restore, or start (from the outputs of phases another run published, if any).
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    done_chunks = ckpt.latest_step() or 0
    at = _Position(put_seeds(jnp.broadcast_to(FIRST_INPUTS, (len(seeds),) + FIRST_INPUTS.shape)))
    if done_chunks:
        try:
            at = _restore(algorithm, programs, ckpt, schedule, done_chunks, diverged, data,
                          len(seeds), place, workdir)
        except BaseException:
            ckpt.close()
            raise
    if diverged is not None:
        changed = (record_settings_change(workdir, identity, diverged, done_chunks) if writer
                   else [])
        if verbose:
            print(f"[{name}] resuming the diverged run after chunk {done_chunks}, settings "
                  f"changed: {'; '.join(changed) or 'none'}", flush=True)
    digests = phase_digests(algorithm, identity)
    first_chunk, shared = done_chunks, []
    taken = (take_shared(algorithm, digests, config.share_dir, data, len(seeds), put_seeds,
                          workdir) if not done_chunks and config.share_dir else None)
    if taken is not None:
        at.inputs, phases_taken, shared, where = taken
        first_chunk = next(g for g, c in enumerate(schedule) if c[0] == phases_taken)
        if verbose:
            print(f"[{name}] phases {shared} shared from {where}", flush=True)

    purge = sum(s[3] for s in schedule[:first_chunk])  # updates done before this call
    logger = (RunLogger(workdir, seeds, purge_step=purge or None) if writer
              else NullLogger())
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
        ev = distributed.fetch(programs.evaluate(outs, eval_keys, eval_data))
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
                        np.all(distributed.fetch(programs.done[p](at.state))):
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
                        publish(algorithm, at.phase, at.inputs, digests[at.phase], config)
                    k_init = jax.vmap(lambda k: jax.random.fold_in(k, 0))(phase_keys[p])
                    at.aux = programs.prepare[p](at.inputs, data)
                    at.state = programs.init[p](k_init, at.aux, data)
                    at.phase = p
                    t_phase, steps_phase = time.time(), 0
                elif chunks_this_call == 0:
                    t_phase, steps_phase = time.time(), 0
                key = jax.vmap(lambda k: jax.random.fold_in(k, 1 + c))(phase_keys[p])
                at.state, metrics, finite, ran = programs.chunk(p, n)(at.state, key, at.aux, data)
                metrics, finite, ran = distributed.fetch((metrics, finite, ran))
                if int(np.max(ran)) < n:               # every seed done within the chunk
                    ended_early[phase.name] = start + int(np.max(ran))
                problem = nonfinite_message(name, phase.name, start, n, finite[0], finite[1],
                                             seeds)
                if problem:
                    raise record_divergence(algorithm, schedule, ckpt, workdir, problem)
                global_step += n
                steps_phase += n
                elapsed = time.time() - t_start
                require_free_space(workdir)
                logger.write(phase.name, start + n, global_step, elapsed, metrics)
                if p == last_phase and config.eval_every and (start + n) % config.eval_every == 0 \
                        and start + n < phase.num_steps:
                    log_eval(at, start + n, global_step, elapsed)
                chunks_this_call += 1
                requested = distributed.any_process(stop.requested is not None)
                stopping = (stop_after_chunks is not None and chunks_this_call >= stop_after_chunks
                            or requested)
                phase_ends = g + 1 == len(schedule) or schedule[g + 1][0] != p
                if (g + 1) % config.checkpoint_every_chunks == 0 or phase_ends or stopping:
                    ckpt.save(g + 1, {"inputs": at.inputs, "state": at.state})
                if verbose:
                    rate = steps_phase / max(time.time() - t_phase, 1e-9)
                    print(_progress_line(name, phase, start, n, rate, len(seeds), metrics),
                          flush=True)
                if requested:
                    raise Interrupted(
                        f"[{name}] interrupted "
                        f"({signal.Signals(stop.requested or signal.SIGINT).name}) after "
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
    check_evaluation(name, evaluation, seeds)
    changes = read_json(os.path.join(workdir, CHANGES_JSON))
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
    if writer:
        atomic_write_text(os.path.join(workdir, RESULTS_JSON),
                          json.dumps(results, indent=1, sort_keys=True, allow_nan=False))
    distributed.barrier(f"finished {workdir}")      # results.json is there for every process
    return results


def final_outputs(algorithm: Algorithm, data: Any, workdir: str, num_seeds: int) -> Any:
    """The last phase's outputs (e.g. trained parameters) of a finished run, from its checkpoint."""
    with open(os.path.join(workdir, "run.json")) as f:
        schedule = chunk_schedule(algorithm, json.load(f)["chunk_steps"])
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    step = ckpt.latest_step()
    if step != len(schedule):
        raise ValueError(f"{workdir}: the run is not finished ({step} of {len(schedule)} chunks)")
    like_inputs, like_state = templates(algorithm, data, num_seeds, len(algorithm.phases) - 1)
    saved = ckpt.restore(step, {"inputs": like_inputs, "state": like_state})
    ckpt.close()
    last = algorithm.phases[-1]
    aux = jax.jit(jax.vmap(last.prepare, in_axes=(0, None)))(saved["inputs"], data)
    return jax.jit(jax.vmap(last.output))(saved["state"], aux)
