"""Runs an ``experiments/`` script and records how much of its wall-clock was JAX compiling.

    python benchmarks/compile_clock.py <out.json> experiments/train.py --algo=... ...

Registers a ``jax.monitoring`` listener before the script runs (as ``__main__``, with the given
flags) and, when the process exits, writes ``out.json``: the wall-clock of the whole script, and
the seconds and counts of JAX's compilation events -- tracing to a jaxpr
(``/jax/core/compile/jaxpr_trace_duration``), lowering to MLIR
(``.../jaxpr_to_mlir_module_duration``) and XLA's backend compilation
(``.../backend_compile_duration``) -- summed over the script's process and the Python processes
it starts (``train.py --workers``: ``compile_clock_site/sitecustomize.py``, put on their
``PYTHONPATH``, records each; they may compile at the same time, so the sum can exceed the
wall-clock), with ``own`` the script's process alone and ``processes`` the count.
``benchmarks/pipeline_phases.py`` runs every command through it.
"""
from __future__ import annotations

import atexit
import collections
import glob
import json
import os
import runpy
import shutil
import sys
import tempfile
import time

EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "backend_compile"}


def record(out: str) -> None:
    """Counts this process's compilation events from now on and writes them to ``out`` at
    exit: ``{"wall_seconds", "seconds": {kind: s}, "counts": {kind: n}}``."""
    import jax.monitoring
    seconds, counts = collections.Counter(), collections.Counter()

    def listener(event: str, duration: float, **_) -> None:
        if event in EVENTS:
            seconds[EVENTS[event]] += duration
            counts[EVENTS[event]] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    start = time.perf_counter()

    def write() -> None:
        with open(out, "w") as f:
            json.dump({"wall_seconds": time.perf_counter() - start,
                       "seconds": dict(seconds), "counts": dict(counts)}, f, indent=1)

    atexit.register(write)


def _add_processes(out: str, processes: str) -> None:
    """Adds the records of the script's child processes (``processes/<pid>.json``) to ``out``:
    ``seconds`` and ``counts`` summed over every process (they may overlap in time),
    ``own`` this process's alone, ``processes`` how many."""
    with open(out) as f:
        total = json.load(f)
    total["own"] = {"seconds": dict(total["seconds"]), "counts": dict(total["counts"])}
    seconds = collections.Counter(total["seconds"])
    counts = collections.Counter(total["counts"])
    names = sorted(glob.glob(os.path.join(processes, "*.json")))
    for name in names:
        with open(name) as f:
            child = json.load(f)
        seconds.update(child["seconds"])
        counts.update(child["counts"])
    shutil.rmtree(processes, ignore_errors=True)
    total.update(seconds=dict(seconds), counts=dict(counts), processes=1 + len(names))
    with open(out, "w") as f:
        json.dump(total, f, indent=1)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: compile_clock.py <out.json> <script.py> [flags...]")
    out, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    # The script's Python child processes (train.py --workers) record theirs too.
    processes = tempfile.mkdtemp(prefix="compile_clock_")
    os.environ["COMPILE_CLOCK_DIR"] = processes
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(os.path.dirname(os.path.abspath(__file__)), "compile_clock_site")]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    atexit.register(_add_processes, out, processes)    # runs after record's write (LIFO)
    record(out)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))   # as `python script` does
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
