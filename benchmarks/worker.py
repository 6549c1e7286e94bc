"""One measurement in its own process, of this checkout's ``jaxomrl`` or another one's.

    from worker import measure   # benchmarks/ is the script's directory, on sys.path
    result = measure(__file__, ["--worker", *flags], src="/path/to/an/older/checkout")

runs ``script`` with ``args`` (``src``: with that checkout first on ``PYTHONPATH`` and as the
working directory, so its ``jaxomrl`` is the one imported) and returns the JSON object on the
last line of its output. ``env``: variables set for that process (``XLA_FLAGS``, say).
``best_seconds(call, repeats)``: the shortest wall-clock of ``repeats`` calls of ``call()``;
``time_phase``: the update rate of one phase of an algorithm, as the runner's chunk runs it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, Optional, Sequence


def measure(script: str, args: Sequence[str], src: Optional[str] = None,
            env: Optional[Dict[str, str]] = None) -> dict:
    env = {**os.environ, **(env or {})}
    if src is not None:
        env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, os.path.abspath(script), *args], check=True,
                         capture_output=True, text=True, env=env,
                         cwd=os.path.abspath(src) if src else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """The shortest wall-clock of ``repeats`` calls of ``call()`` (which must wait for its
    result, e.g. with ``jax.block_until_ready``)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return best


def time_phase(programs, data, target: int, seeds: int, steps: int, repeats: int):
    """``(updates/s, first call's seconds)`` of phase ``target``'s chunk of ``steps`` updates
    over ``seeds`` seeds (``programs``: the runner's ``Programs``; the phases before it
    initialised and output untrained): the best of ``repeats`` calls after a warm-up."""
    import jax
    import jax.numpy as jnp
    from jaxomrl.algos.base import FIRST_INPUTS
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds, dtype=jnp.uint32))
    inputs = jnp.broadcast_to(FIRST_INPUTS, (seeds,) + FIRST_INPUTS.shape)
    for p in range(target + 1):
        aux = programs.prepare[p](inputs, data)
        state = programs.init[p](keys, aux, data)
        if p < target:
            inputs = programs.output[p](state, aux)
    chunk = programs.chunk(target, steps)

    def call(i):
        t0 = time.perf_counter()
        out = chunk(state, jax.vmap(lambda k: jax.random.fold_in(k, i))(keys), aux, data)
        jax.block_until_ready(out)
        return time.perf_counter() - t0

    first = call(0)
    call(1)
    best = min(call(2 + i) for i in range(repeats))
    return steps / best, first
