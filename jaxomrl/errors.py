"""Failures a user can read, and the finiteness check that finds diverged training.

Every error the library raises on purpose for bad input or a broken run derives from
``JaxomrlError``: its message says what is wrong and what to do, so the command lines print it as
one line, without a traceback (``jaxomrl.experiment.cli``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict

import jax
import jax.numpy as jnp


class JaxomrlError(Exception):
    """A refusal or a stopped run whose message names the cause and the way out."""


class Interrupted(JaxomrlError):
    """Stopped on request (SIGINT, Ctrl-C) at a chunk boundary, the last checkpoint kept; the
    commands exit with ``exit_status`` (128 + SIGINT, the shells' convention)."""
    exit_status = 130


class DirectoryInUse(JaxomrlError):
    """Another running process holds the directory a command would write into."""


class NonFiniteError(JaxomrlError, FloatingPointError):
    """Training, collection or evaluation produced NaN / inf; nothing was written from it."""


def tree_all_finite(tree: Any) -> jax.Array:
    """``[]`` bool: every floating-point leaf of ``tree`` is free of NaN and inf (jittable;
    integer, boolean and PRNG-key leaves are skipped)."""
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def steps_finite(metrics: Dict[str, jax.Array], num_steps: int) -> Dict[str, jax.Array]:
    """``{name: [num_steps] bool}``: whether each step's value of each metric is finite, from
    metrics stacked over steps by ``lax.scan`` (``[num_steps, ...]`` each; jittable)."""
    return {k: jnp.all(jnp.isfinite(jnp.reshape(v, (num_steps, -1))), axis=1)
            if jnp.issubdtype(v.dtype, jnp.inexact) else jnp.ones((num_steps,), bool)
            for k, v in metrics.items()}


def check_finite_fields(config: Any) -> None:
    """Raises ``ValueError`` naming the float fields of dataclass ``config`` (also inside tuples)
    that are NaN or inf -- ``nan < 0`` is false, so range checks alone let them through. Called
    first by the configs' ``__post_init__``."""
    bad = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            bad.append(f"{f.name}={value}")
    if bad:
        raise ValueError(f"{type(config).__name__}: {', '.join(bad)} must be finite")
