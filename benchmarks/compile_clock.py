"""Runs an ``experiments/`` script and records how much of its wall-clock was JAX compiling.

    python benchmarks/compile_clock.py <out.json> experiments/train.py --algo=... ...

Registers a ``jax.monitoring`` listener before the script runs (as ``__main__``, with the given
flags) and, when the process exits, writes ``out.json``: the wall-clock of the whole script, and
the seconds and counts of JAX's compilation events -- tracing to a jaxpr
(``/jax/core/compile/jaxpr_trace_duration``), lowering to MLIR
(``.../jaxpr_to_mlir_module_duration``) and XLA's backend compilation
(``.../backend_compile_duration``). ``benchmarks/pipeline_phases.py`` runs every command through
it.
"""
from __future__ import annotations

import atexit
import collections
import json
import os
import runpy
import sys
import time

EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "backend_compile"}


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: compile_clock.py <out.json> <script.py> [flags...]")
    out, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
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
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))   # as `python script` does
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
