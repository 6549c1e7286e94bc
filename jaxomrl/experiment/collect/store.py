"""A collection's directory: its configuration file (a directory belongs to one configuration),
the progress and summary it writes, and a completed collection read back (resume)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import numpy as np

from jaxomrl.data import dataset as dataset_lib
from jaxomrl.experiment.collect.config import CollectConfig, CollectConfigError
from jaxomrl.io import atomic_write_text


def check_config_file(config: CollectConfig, out_dir: str) -> None:
    """Writes ``collect_config.json`` into a new ``out_dir``; ``CollectConfigError`` naming the
    fields that differ if ``out_dir`` holds another configuration's collection."""
    path = os.path.join(out_dir, "collect_config.json")
    mine = config.to_json()
    if os.path.exists(path):
        with open(path) as f:
            theirs = CollectConfig.from_json(json.load(f)).to_json()  # fields added since: defaults
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            shown = "; ".join(f"{k}: {json.dumps(theirs.get(k))} -> {json.dumps(mine.get(k))}"
                              for k in diff)
            raise CollectConfigError(
                f"{out_dir} holds a collection with a different configuration (old -> "
                f"requested: {shown}); use another output directory")
    else:
        atomic_write_text(path, json.dumps(mine, indent=1, sort_keys=True))


@dataclasses.dataclass
class CollectResult:
    """A completed collection: its datasets' paths and ``summary.json``."""

    train_path: str
    ood_path: Optional[str]
    summary: Dict[str, Any]


def completed(config: CollectConfig, out_dir: str) -> Optional[CollectResult]:
    """The result of a completed collection in ``out_dir`` (None if incomplete or invalid)."""
    summary_path = os.path.join(out_dir, "summary.json")
    paths = {"train": os.path.join(out_dir, "train.npz")}
    if config.ood_transitions_per_task:
        paths["ood"] = os.path.join(out_dir, "ood.npz")
    if not all(os.path.exists(p) for p in [summary_path, *paths.values()]):
        return None
    try:
        for p in paths.values():
            dataset_lib.load(p, family=config.family)
        with open(summary_path) as f:
            summary = json.load(f)
    except (dataset_lib.DatasetError, ValueError):
        return None
    return CollectResult(train_path=paths["train"], ood_path=paths.get("ood"), summary=summary)


def write_progress(out_dir, config, curve, k):
    lines = ["checkpoint,env_steps_per_task," + ",".join(f"task{i}" for i in range(curve.shape[1]))]
    for j in range(1, k + 1):
        lines.append(f"{j},{j * config.env_steps_per_checkpoint}," +
                     ",".join(f"{x:.6g}" for x in curve[j]))
    atomic_write_text(os.path.join(out_dir, "progress.csv"), "\n".join(lines) + "\n")


def summary_of(config, tasks, roles, curve, evaluated, paths, datasets, seconds
             ) -> Dict[str, Any]:
    rows = [row[~np.isnan(row)] for row in curve[1:]]
    best = evaluated.argmax(axis=1)
    out = {"family": config.family, "collect_seconds_this_call": seconds,
           "collector": "conditioned" if config.online.conditioned else "per_task",
           "training_curve_mean_return": [float(r.mean()) if r.size else None for r in rows],
           "checkpoint_env_steps": [k * config.env_steps_per_checkpoint
                                    for k in range(config.num_checkpoints + 1)],
           "task_attributes": np.asarray(tasks.attributes, np.float64).tolist(),
           "is_test": (roles == "test").tolist(), "split": roles.tolist(),
           "task_params": sorted(tasks.params),
           "evaluated_returns": evaluated.tolist(),         # [task, checkpoint 0..K]
           "best_checkpoint": best.tolist(),
           "best_return": evaluated[np.arange(len(best)), best].tolist(),
           "datasets": {}}
    for split, path in paths.items():
        ends = dataset_lib.checkpoint_termination_table(datasets[split])           # [T, C]
        out["datasets"][split] = {"path": path, "checkpoint_returns": {
            str(k): {"mean": m, "std": s}
            for k, (m, s) in dataset_lib.checkpoint_return_table(datasets[split]).items()},
            # per checkpoint, per task: completed episodes that ended in termination (a fall)
            "terminated_fraction": {str(k): [None if np.isnan(v) else float(v) for v in col]
                                    for k, col in zip(datasets[split].meta["checkpoints"],
                                                      ends.T)}}
    return out
