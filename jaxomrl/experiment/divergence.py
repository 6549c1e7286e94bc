"""Divergence: the description of a chunk's first non-finite metric or state (checked inside the
jitted chunk), its record in ``diverged.json`` with the last finite checkpoint to resume from,
and the check of the final evaluation."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np

from jaxomrl.algos.base import Algorithm
from jaxomrl.errors import NonFiniteError
from jaxomrl.experiment import distributed
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.run_dir import DIVERGED_JSON
from jaxomrl.io import atomic_write_text

def end_point(algorithm: Algorithm, schedule, chunks: int) -> Optional[List[Any]]:
    """``[phase name, step]`` at which the first ``chunks`` chunks of ``schedule`` end."""
    if not chunks:
        return None
    p, _, start, n = schedule[min(chunks, len(schedule)) - 1]
    return [algorithm.phases[p].name, start + n]


def nonfinite_message(name: str, phase: str, start: int, n: int, finite_metrics, state_ok,
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


def record_divergence(algorithm: Algorithm, schedule, ckpt: Checkpointer, workdir: str,
              message: str) -> NonFiniteError:
    """Records where the run diverged (``diverged.json``; the last finite checkpoint stays) and
    returns the error to raise."""
    last = ckpt.latest_step() or 0
    point = end_point(algorithm, schedule, last)
    if distributed.is_writer():
        atomic_write_text(os.path.join(workdir, DIVERGED_JSON), json.dumps(
            {"message": message, "resume_point": point, "last_finite_chunk": last}, indent=1))
    kept = (f"the last finite checkpoint ({point[0]} step {point[1]}) is kept in "
            f"{workdir}" if last else "no earlier checkpoint exists in this workdir")
    return NonFiniteError(
        f"training became non-finite {message}. Nothing was saved from it and no results "
        f"were written; {kept}. Rerun into the same workdir with other settings (e.g. a "
        "smaller weight or learning rate) to resume from there, or start over elsewhere")


def check_evaluation(name: str, evaluation: Dict[str, np.ndarray], seeds: List[int]) -> None:
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
