"""Where one experiment's wall-clock goes: every phase of collect -> train -> evaluate.

    python benchmarks/pipeline_phases.py --out=runs/bench_main \
        --collect="--family=point_robot_sparse --split=all" \
        --train="--family=point_robot_sparse --algo=r2pgo,focal --seeds=3" \
        --evaluate="--episodes=3"

runs ``experiments/collect.py`` (into ``<out>/data``), ``train.py`` (``<out>/runs``) and
``evaluate.py`` as subprocesses, timing each and how much of it was JAX compiling
(``compile_clock.py``: tracing, lowering, XLA's backend compilation), and splits training into
its phases from the runs' own logs (``metrics_<phase>.csv``: ``seconds`` since the start of the
call, so a phase's time includes its compilation; ``eval`` is the end-of-training evaluation,
the rest of the call's ``train_seconds_this_call``; evaluations during training,
``--eval_every``, count in the last phase). ``--workdir`` alone only reads the logs of runs
already made. The commands share a compilation cache of their own (``<out>/compilation_cache``,
empty at the start, as on a fresh machine) unless their flags name one. The compile times are
summed over the command's processes, those in which ``train.py`` trains its specs side by side
(``--workers``, the default on a CPU with more than one core) included; they compile at the
same time, so the sum can exceed the wall-clock. Prints a table and, on its last line, one
JSON object.
Runs resumed from a checkpoint restart their clocks (``resumed``); phases reused from another
run (``--share_phases``) show that run's time (``reused``).
"""
from __future__ import annotations

import csv
import glob
import json
import os
import platform
import shlex
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Fresh directory for a timed run of the three commands.")
flags.DEFINE_string("collect", None, "collect.py flags (without --out_dir); empty: no collection.")
flags.DEFINE_string("train", None, "train.py flags (without --data / --workdir).")
flags.DEFINE_string("evaluate", None, "evaluate.py flags (without --workdir); None: not run.")
flags.DEFINE_string("data", None, "An existing collection for --train instead of --collect.")
flags.DEFINE_string("workdir", None, "Only read the logs of this train.py workdir.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(script: str, args: str, clock: str) -> float:
    """Runs ``experiments/<script>`` (through ``compile_clock.py``, which writes its compile
    times to ``clock``); returns its wall-clock."""
    t = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compile_clock.py"), clock,
                    os.path.join(ROOT, "experiments", script), *shlex.split(args)], check=True)
    return time.perf_counter() - t


def _compile_seconds(clock: str) -> dict:
    with open(clock) as f:
        return json.load(f)["seconds"]


def _last_seconds(path: str):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    secs = [float(r[1]) for r in rows]
    return secs, any(b < a for a, b in zip(secs, secs[1:]))


def training_phases(workdir: str) -> dict:
    """{spec: [(phase, seconds, note)]} from each run's logs, in the order phases ran; note
    ``reused`` (trained by another run with the same first phases: its time there, not spent
    here) or ``resumed`` (the clock restarted: a lower bound)."""
    out = {}
    for results in sorted(glob.glob(os.path.join(workdir, "**", "results.json"), recursive=True)):
        run_dir = os.path.dirname(results)
        if "shared_phases" in run_dir.split(os.sep) or not os.path.exists(
                os.path.join(run_dir, "run.json")):   # evaluate.py's output, published phases
            continue
        ends = []
        for path in glob.glob(os.path.join(run_dir, "metrics_*.csv")):
            secs, resumed = _last_seconds(path)
            if secs:
                ends.append((secs[-1], os.path.basename(path)[8:-4], resumed))
        with open(results) as f:
            info = json.load(f)
        shared = set(info.get("phases_shared_in_this_call") or [])
        # The eval log's clock is read before the final evaluation runs: its time is the rest
        # of the call's.
        ends = [e for e in ends if e[1] != "eval"]
        total = info.get("train_seconds_this_call")
        if total is not None:
            ends.append((float(total), "eval", False))
        spec = os.path.relpath(run_dir, workdir)
        rows = []
        # Phases another run trained (their logs copied here, with that run's clock) first.
        for group, reused in (([e for e in ends if e[1] in shared], True),
                              ([e for e in ends if e[1] not in shared], False)):
            previous = 0.0
            for end, phase, resumed in sorted(group):
                rows.append((phase, end - previous, "reused" if reused else
                             "resumed" if resumed else ""))
                previous = end
        out[spec] = rows
    return out


def main(argv):
    del argv
    timings, compiling = {}, {}
    workdir = FLAGS.workdir
    if workdir is None:
        if FLAGS.out is None or FLAGS.train is None:
            raise app.UsageError("give --workdir, or --out and --train")
        if os.path.exists(FLAGS.out):
            raise app.UsageError(f"{FLAGS.out} exists; a timed run needs a fresh directory")
        data = FLAGS.data
        if data is None:
            data = os.path.join(FLAGS.out, "data")
            commands = [("collect", "collect.py", f"{FLAGS.collect or ''} --out_dir={data}")]
        else:
            commands = []
        workdir = os.path.join(FLAGS.out, "runs")
        commands.append(("train", "train.py", f"{FLAGS.train} --data={data} --workdir={workdir}"))
        if FLAGS.evaluate is not None:
            commands.append(("evaluate", "evaluate.py", f"{FLAGS.evaluate} --workdir={workdir}"))
        os.makedirs(FLAGS.out)
        cache = f" --compilation_cache={os.path.join(FLAGS.out, 'compilation_cache')}"
        for name, script, args in commands:
            clock = os.path.join(FLAGS.out, f"compile_{name}.json")
            if "--compilation_cache" not in args:    # a fresh cache: as on a fresh machine
                args += cache
            timings[name] = _timed(script, args, clock)
            compiling[name] = _compile_seconds(clock)
    phases = training_phases(workdir)
    import jax
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__}"
    print(f"machine: {machine}")
    for name, s in timings.items():
        c = compiling[name]
        print(f"{name:10s} {s / 60:8.2f} min (whole command, start-up and compilation included; "
              f"compiling: XLA {c.get('backend_compile', 0) / 60:.2f} min, tracing and lowering "
              f"{(c.get('trace', 0) + c.get('lower', 0)) / 60:.2f} min)")
    print(f"{'run':34s} {'phase':14s} {'min':>7s}")
    for spec, rows in phases.items():
        for phase, s, note in rows:
            print(f"{spec:34s} {phase:14s} {s / 60:7.2f}  {note}")
    print(json.dumps({"machine": machine, "commands_seconds": timings,
                      "compile_seconds": compiling, "training": phases}))


if __name__ == "__main__":
    app.run(main)
