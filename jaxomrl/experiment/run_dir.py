"""A run directory's identity and archive: ``run.json`` (everything that changes a run's
numbers), the check of a workdir against a requested run (new, unfinished, finished, diverged,
or another run: refused, naming the fields that differ), the record of changed settings after
a divergence, and moving an old run aside."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from jaxomrl.algos.base import Algorithm
from jaxomrl.experiment.provenance import MADE_WITH
from jaxomrl.experiment.run_config import RunConfig, RunConfigError
from jaxomrl.io import atomic_write_text

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


def read_json(path: str) -> Optional[Dict[str, Any]]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def saved_identity(workdir: str) -> Optional[Dict[str, Any]]:
    """``run.json`` without its ``made_with`` record (where and how, not what: not compared)."""
    saved = read_json(os.path.join(workdir, RUN_JSON))
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
    saved = saved_identity(workdir)
    if saved is None:
        return "new"
    if read_config is not None and isinstance(saved.get("config"), dict):
        try:
            saved = {**saved, "config": json.loads(json.dumps(
                read_config(saved["config"]), default=str, allow_nan=False))}
        except (ValueError, TypeError, KeyError):
            pass                    # not a config of this algorithm: compared as written
    diverged = read_json(os.path.join(workdir, DIVERGED_JSON))
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


def record_settings_change(workdir: str, identity: Dict[str, Any],
                            diverged: Dict[str, Any], done_chunks: int) -> List[str]:
    """Appends the change of settings after a divergence to ``settings_changes.json``, makes the
    new settings the workdir's identity and clears ``diverged.json``; returns what changed."""
    run_json = os.path.join(workdir, RUN_JSON)
    previous = read_json(run_json)
    made = previous.pop(MADE_WITH, None)
    changes = read_json(os.path.join(workdir, CHANGES_JSON)) or []
    changes.append({"resumed_after_chunk": done_chunks, "diverged": diverged["message"],
                    "changed": identity_diff(previous, identity),
                    "previous_config": previous["config"]})
    atomic_write_text(os.path.join(workdir, CHANGES_JSON),
                      json.dumps(changes, indent=1, allow_nan=False))
    atomic_write_text(run_json, json.dumps({**identity, **({MADE_WITH: made} if made else {})},
                                           indent=1, sort_keys=True))
    os.remove(os.path.join(workdir, DIVERGED_JSON))
    return changes[-1]["changed"]
