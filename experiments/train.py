"""Trains offline meta-RL algorithms on a collected dataset, every seed in one vmapped program,
and evaluates them under every protocol (``jaxomrl.eval.protocols``) on the dataset's training
and validation tasks (the test tasks, tables and figures: ``experiments/evaluate.py``).

    python experiments/train.py --data=runs/point_robot_data --family=point_robot_sparse \
        --algo=r2pgo,r2pgo/no_hypernetwork,bc,om_bc,om_sac,focal,corro --seeds=3 \
        --workdir=runs/point_robot

``--algo`` takes one or more specs (``jaxomrl.algos.registry``: an algorithm, optionally with
``/ablation``s); each trains into ``<workdir>/<spec>`` (``/`` -> ``-``) with ``run.json``,
``metrics_<phase>.csv``, ``metrics_eval.csv``, TensorBoard event files under ``tensorboard/``,
orbax checkpoints and ``results.json``. Rerunning the command resumes killed runs and reuses
finished ones; a run directory holding a run with other settings (any spec of the command) is
refused before any work, naming the fields that differ (``--overwrite`` moves such runs to
``<workdir>/replaced/``). Training that goes non-finite stops with the phase, step, metric and
seeds; rerunning with other settings resumes from the last finite checkpoint. Specs whose first
phases are identical train them once (``<workdir>/shared_phases``). The table at the end compares
the specs with the SAC experts that made the data.

On a CPU with more than one core the specs train side by side, each in a ``train.py`` process
of its own with this command's flags, at most ``--workers`` at a time (default: one per core),
in the order of ``--algo`` (list the longest first). A spec that takes a phase another spec of
the command trains (the same encoder, ReDA's models) starts when that one has finished
(``sharing.share_schedule``), so the phase still trains once. Every spec trains as in one
process (the same programs; the README main job's tables come out equal to the last digit);
their progress lines interleave. If one fails, no further spec starts, the others finish, and
the command exits non-zero naming it; rerunning resumes. With ``--engine=ray`` (or
``--ray_address``) the specs are Ray tasks instead (``jaxomrl.experiment.ray_jobs``): on a
local Ray instance or a cluster, a lost job retried and resumed from its checkpoint.

One run can span the devices of several processes (hosts): the same command in each, with
``--coordinator_address``, ``--num_processes`` and ``--process_id`` (or under ``srun``, from
SLURM's environment; ``jaxomrl.experiment.distributed``). The seeds split over every device
(``--shard_seeds`` implied), process 0 writes the logs and results, each process its shards of
the checkpoints; the specs train one after another.

Ctrl-C (SIGINT) stops every run at its next chunk boundary, checkpointed, and exits with status
130; rerunning resumes. A spec's directory that another running command is training in is
refused, naming that process (a lock the kernel drops when its process ends, ``kill -9``
included).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import numpy as np
from absl import flags, logging

from jaxomrl import algos
from jaxomrl.data.relabel import check_episode_layout
from jaxomrl.eval import stats
from jaxomrl.data.sampler import describe_data, run_data

# What training-time evaluation reads: every choice is made on these; the test tasks are
# evaluated once, by evaluate.py (reproduce.py) at the end.
TRAINING_SPLITS = ("train", "val")
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.experiment import cli, distributed, guards, jobs
from jaxomrl.envs.mujoco_c import default_threads
from jaxomrl.errors import JaxomrlError
from jaxomrl.experiment.run_config import RunConfig, RunConfigError
from jaxomrl.experiment.run_dir import archive_run, check_workdir, run_identity
from jaxomrl.experiment.runner import run
from jaxomrl.experiment.sharing import pending_shares, share_schedule

FLAGS = flags.FLAGS
_PHYSICS = cli.define_physics_flag()
flags.DEFINE_list("algo", ["r2pgo"], "Algorithm specs, e.g. r2pgo,r2pgo/no_hypernetwork,bc.")
flags.DEFINE_string("family", None, "Task family the dataset must come from.")
flags.DEFINE_string("data", None, "train.npz of a collection, or its directory.")
flags.DEFINE_string("workdir", None, "Working directory (one subdirectory per spec).")
flags.DEFINE_integer("seeds", 3, "Number of seeds, trained together (vmapped).")
flags.DEFINE_integer("seed_offset", 0, "First seed.")
flags.DEFINE_bool("shard_seeds", False, "Split the seeds over all devices (jax.sharding); "
                  "always on in a run over several processes.")
distributed.define_flags()
flags.DEFINE_bool("share_phases", True, "Specs whose first phases are identical (e.g. the same "
                  "encoder) train them once: outputs shared via <workdir>/shared_phases.")
flags.DEFINE_string("share_dir", None, "Where shared phases are published (default: "
                    "<workdir>/shared_phases); runs of other workdirs with the same first phases "
                    "(e.g. option sets of one encoder) share them through one directory.")
flags.DEFINE_integer("chunk_steps", 500, "Updates per jitted chunk / log row.")
flags.DEFINE_integer("checkpoint_every_chunks", 1, "Chunks between orbax checkpoints.")
cli.renamed_flag("checkpoint_every", "checkpoint_every_chunks")
flags.DEFINE_integer("eval_every", 0, "Policy updates between evaluations (0: at the end).")
cli.define_flags(algos.Settings)      # every setting: its field, default, help and bounds there
cli.renamed_flag("alpha", "kernel_alpha")
flags.DEFINE_integer("workers", 0, "Processes that train the specs side by side, one spec each (a "
                     "spec taking a phase another trains after it), then the table. 0: on a CPU "
                     "backend as many as the machine has cores, else 1.")
jobs.define_engine_flags()
flags.DEFINE_bool("plan", False, "Print, as one JSON line, every spec's run directory, whether "
                  "it has finished and the phases it could share that no run has published "
                  "(experiments/sweep.py schedules jobs from it), then exit without training.")
flags.DEFINE_bool("summary", True, "Print the table of every spec's results at the end.")
flags.DEFINE_bool("overwrite", False, "Runs in --workdir with other settings than requested are "
                  "moved to <workdir>/replaced/<spec>-<time> and trained anew (without it they "
                  "are refused; a run with the same settings is always resumed or reused).")
flags.mark_flags_as_required(["family", "data", "workdir"])
cli.require_ints(1, "seeds", "chunk_steps", "checkpoint_every_chunks")
cli.require_ints(0, "seed_offset", "eval_every", "workers")
cli.require_multiple("eval_every", "chunk_steps")


def _dataset_path(path: str) -> str:
    if os.path.isdir(path):
        path = os.path.join(path, "train.npz")
    if not os.path.exists(path):
        raise cli.UsageError(f"--data: no dataset at {path!r} (collect one with "
                             "experiments/collect.py, or point --data at its train.npz)")
    return path


def _fmt(summary) -> str:
    """``mean ± sample std [95 % interval]`` of a results.json metric (``jaxomrl.eval.stats``)."""
    return stats.cell(stats.summarise(summary["per_seed"]))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    processes = jax.process_count()        # cli.run joined them first (distributed)
    path = _dataset_path(FLAGS.data)
    try:
        ds, ood = dataset_lib.load_collection(path, family=FLAGS.family)
        specs = [s for s in FLAGS.algo if s]
        for s in specs:
            algos.parse_spec(s)
    except (dataset_lib.DatasetError, ValueError) as e:
        raise cli.UsageError(str(e)) from e
    cli.writable_dir(FLAGS.workdir, "workdir")
    family = ds.make_family(_PHYSICS.value)
    settings = cli.from_flags(algos.Settings)     # window etc. derived by algos.make
    data, eval_data = run_data(ds, ood, TRAINING_SPLITS)
    n_train = int(ds.is_train.sum())
    description = describe_data(path, ds, ood)
    seeds = tuple(range(FLAGS.seed_offset, FLAGS.seed_offset + FLAGS.seeds))
    # Every spec's algorithm and run directory, checked before any of them trains.
    runs, conflicts, replace, finished = {}, [], [], set()
    for spec in specs:
        try:
            algorithm = algos.make(spec, settings, family, n_train)
            if algorithm.config.get("reward_relabelling"):   # swaps whole episodes: check them
                check_episode_layout(data["train"], family.horizon)
        except ValueError as e:
            raise cli.UsageError(f"{spec}: {e}") from e
        workdir = os.path.join(FLAGS.workdir, spec.replace("/", "-"))
        guards.check_unlocked(workdir, f"training {spec}")     # another command is training it
        config = RunConfig(workdir=workdir, seeds=seeds, chunk_steps=FLAGS.chunk_steps,
                           checkpoint_every_chunks=FLAGS.checkpoint_every_chunks,
                           eval_every=FLAGS.eval_every,
                           shard_seeds=FLAGS.shard_seeds or processes > 1,
                           share_dir=((FLAGS.share_dir or
                                       os.path.join(FLAGS.workdir, "shared_phases"))
                                      if FLAGS.share_phases else None))
        try:
            if check_workdir(workdir, run_identity(algorithm, config, description),
                             algorithm.read_config) == "finished":
                finished.add(spec)
        except RunConfigError as e:
            (replace if FLAGS.overwrite and os.path.isdir(workdir) else conflicts).append(
                (spec, workdir, str(e)))
        runs[spec] = (algorithm, config)
    if conflicts:
        raise cli.UsageError("\n".join(message for _, _, message in conflicts))
    if FLAGS.plan:        # before --overwrite moves anything
        print(json.dumps({"runs": {spec: {
            "workdir": config.workdir, "finished": spec in finished,
            "shares": pending_shares(algorithm, config, description)}
            for spec, (algorithm, config) in runs.items()}}), flush=True)
        return
    if processes > 1:
        _check_one_process_per_run()
    distributed.barrier("runs checked")          # before process 0 moves any aside
    for spec, workdir, _ in replace:
        if distributed.is_writer():
            print(f"[{spec}] --overwrite: the old run moved to {archive_run(workdir)}")
    unfinished = {s: r for s, r in runs.items() if s not in finished}
    if processes == 1 and _train_as_jobs(unfinished, description):
        runs = {spec: (algorithm, dataclasses.replace(config, verbose=False))
                for spec, (algorithm, config) in runs.items()}     # finished: results reused
    results = {spec: run(algorithm, data, eval_data, config, description)
               for spec, (algorithm, config) in runs.items()}
    if FLAGS.summary and distributed.is_writer():
        print_table(ds, results)


def _check_one_process_per_run() -> None:
    """A run over several processes trains its specs one after another in every process."""
    engine = jobs.engine_from_flags()
    if engine.name != "processes" or FLAGS.workers > 1:
        raise cli.UsageError(
            f"a run over {jax.process_count()} processes trains its specs in them one after "
            "another: --workers and --engine=ray do not apply (launch one such command per "
            "process, by srun or with --coordinator_address/--num_processes/--process_id)")


def _train_as_jobs(runs, description) -> bool:
    """Trains every spec of ``runs`` (the unfinished ones) as a ``train.py`` job of its own
    with this command's flags, on the engine (``--engine``): with more than one worker
    (``--workers``) on this machine's processes, or always on Ray; a spec that takes a phase
    another trains starts after that one (``sharing.share_schedule``). Returns whether it did.
    Raises if any failed (their messages are theirs, above)."""
    engine = jobs.engine_from_flags()
    schedule = share_schedule(runs, description)
    workers = min(FLAGS.workers or (default_threads() if jax.default_backend() == "cpu" else 1),
                  len(schedule))
    if not schedule or (engine.name == "processes" and workers < 2):
        return False
    where = (f"{workers} processes side by side" if engine.name == "processes" else
             f"Ray tasks ({engine.address or f'a local instance of {workers} CPUs'})")
    print(f"training {len(schedule)} specs in {where}: "
          + ", ".join(spec + (f" (after {schedule[a][0]})" if a is not None else "")
                      for spec, a in schedule), flush=True)
    command = [sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:], *jobs.CHILD_FLAGS,
               "--overwrite=false", "--summary=false"]
    codes = engine.run([command + [f"--algo={spec}"] for spec, _ in schedule], workers,
                       after=[a for _, a in schedule])
    failed = ", ".join(spec for (spec, _), c in zip(schedule, codes) if c)
    not_started = ", ".join(spec for (spec, _), c in zip(schedule, codes) if c is None)
    if failed or not_started:
        raise JaxomrlError(f"training failed for {failed or 'none'} (messages above); "
                           + (f"not started or lost: {not_started}; " if not_started else "")
                           + "the other runs are kept: rerun the same command to resume")
    return True


def print_table(ds, results) -> None:
    """Mean ± std over seeds of every metric and, for returns, in brackets the fraction of the
    data's best behaviour checkpoint (the per-task SAC experts) on the same tasks."""
    ckpts = np.asarray(ds.meta["checkpoints"])
    returns = np.asarray(ds.meta["checkpoint_returns"], np.float64)   # nan: task without it
    # each task's latest behaviour checkpoint in the data (per task when chosen by return)
    latest = np.argmax(np.where(np.isfinite(returns), ckpts[None], -1), axis=1)
    returns = returns[np.arange(len(latest)), latest]
    which = (f"checkpoint {ckpts[latest[0]]}" if np.all(latest == latest[0]) else
             "each task's latest checkpoint")
    expert = {split: returns[mask].mean() for split, mask in
              (("train", ds.is_train), ("val", ds.is_val)) if mask.any()}
    columns = sorted({c for r in results.values() for c in r["metrics"]},
                     key=lambda c: (not c.startswith("val"), c))
    print(f"\n{ds.family}: validation (val) and training tasks; the test tasks are evaluated "
          "once, by evaluate.py / reproduce.py. Return per episode, " + stats.CAPTION +
          " (fraction of the SAC experts "
          f"of {which} that made the data). online: the policy infers the task "
          "from its own history (ep1 = zero-shot); offline_ctx / offpolicy_ctx: from one episode "
          "of the task's training data / held-out checkpoints' data, held fixed; dphi: ReDA's "
          "d(phi), lower is better")
    print("| algorithm | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for spec, res in results.items():
        cells = []
        for c in columns:
            m = res["metrics"].get(c)
            split = c.split("_")[0]
            cells.append("" if m is None else _fmt(m) if "dphi" in c else
                         f"{_fmt(m)} ({m['mean'] / expert[split]:.2f})")
        print(f"| {spec} | " + " | ".join(cells) + " |")
    cells = [f"{expert[c.split('_')[0]]:.2f}" if c.endswith("ep1") else "" for c in columns]
    print(f"| SAC experts (data, {which}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir, start=distributed.initialize_from_flags)
