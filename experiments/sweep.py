"""Runs a grid of ``train.py`` specs × setting overrides × seed groups as jobs, on a local Ray
instance or a Ray cluster (or this machine's processes), and gathers one table.

    python experiments/sweep.py --workdir=runs/sweep --algo=r2pgo,r2pgo/no_hypernetwork \
        --set=family=point_robot_sparse --set=data=runs/point_robot_data --set=hidden=64,64 \
        --grid=bc_weight=1 --grid=bc_weight=2.5 --seeds=3

``--set=name=value``: a ``train.py`` flag for every job; ``--grid=name=value``, repeated with
other values: the overrides swept (several names: every combination). Each job is one spec of
one combination and seed group (``--seed_groups`` jobs of ``--seeds`` seeds each) training into
``<workdir>/<combination>/<spec>`` (``jaxomrl.experiment.sweep``); jobs that train an identical
phase (the same encoder under different policy settings, R2PGO and its hypernetwork ablation)
wait for the first of them, which publishes it in ``<workdir>/shared_phases``.

With ``--engine=ray`` (the default) every job is a Ray task: without ``--ray_address`` on a
local instance with ``--workers`` CPUs (default: one per core), so the same command runs on a
laptop; with it, on that cluster. A job whose process is lost is retried (``--job_retries``)
and resumes from its checkpoint; ``--gpus_per_job`` below 1 shares a GPU between jobs.
``--engine=processes`` runs the jobs as this machine's processes. The same command again
reuses finished jobs and resumes the others; ``sweep.md`` / ``sweep.json``: every spec and
combination, mean ± sample std over all its seeds [95 % interval] of each ``--columns``
metric (default: those of the validation tasks).
"""
from __future__ import annotations

import os

from absl import flags, logging

from jaxomrl.experiment import cli, jobs
from jaxomrl.experiment import sweep as sweep_lib
from jaxomrl.envs.mujoco_c import default_threads

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The sweep's directory.")
flags.DEFINE_list("algo", None, "train.py specs, e.g. r2pgo,r2pgo/no_hypernetwork.")
flags.DEFINE_multi_string("set", [], "name=value: a train.py flag every job gets.")
flags.DEFINE_multi_string("grid", [], "name=value: one value of a swept train.py flag; repeat "
                          "the name with its other values.")
flags.DEFINE_integer("seeds", 3, "Seeds per job (vmapped in it).")
flags.DEFINE_integer("seed_groups", 1, "Jobs of --seeds seeds each per spec and combination.")
flags.DEFINE_integer("seed_offset", 0, "First seed.")
flags.DEFINE_integer("workers", 0, "Jobs at a time on this machine (the local Ray instance's "
                     "CPUs, or processes); 0: one per core.")
flags.DEFINE_list("columns", None, "Metrics of the table (default: the validation tasks').")
jobs.define_engine_flags(default="ray")
flags.mark_flags_as_required(["workdir", "algo"])
cli.require_ints(1, "seeds", "seed_groups")
cli.require_ints(0, "seed_offset", "workers")


def _fixed(assignments):
    twice = sorted(k for k, v in assignments.items() if len(v) > 1)
    if twice:
        raise sweep_lib.SweepError(f"--set gives {twice} more than one value (sweep them with "
                                   "--grid)")
    return {k: v[0] for k, v in assignments.items()}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        sweep = sweep_lib.Sweep(
            root=os.path.abspath(FLAGS.workdir), train_script=os.path.join(HERE, "train.py"),
            specs=tuple(s for s in FLAGS.algo if s),
            fixed=_fixed(sweep_lib.parse_assignments(FLAGS.set, "set")),
            grid=sweep_lib.parse_assignments(FLAGS.grid, "grid"), seeds=FLAGS.seeds,
            seed_groups=FLAGS.seed_groups, seed_offset=FLAGS.seed_offset)
        engine = jobs.engine_from_flags()
    except (sweep_lib.SweepError, ValueError) as e:
        raise cli.UsageError(str(e)) from e
    cli.writable_dir(sweep.root, "workdir")
    done = sweep.run(engine, FLAGS.workers or default_threads())
    print(sweep_lib.write(sweep.root, sweep_lib.gather(done, FLAGS.columns)))
    print(f"wrote {os.path.join(sweep.root, 'sweep.md')}")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir)
