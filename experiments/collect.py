"""Collects an offline multi-task dataset: SAC on every task, checkpoints, rollouts.

    python experiments/collect.py --family=point_robot_sparse --out_dir=data/point_robot

Per-family defaults come from ``jaxomrl.experiment.collect.PRESETS``; flags given explicitly override
them. Killed runs resume from the last orbax checkpoint when rerun with the same flags; a
completed directory is reused. Writes ``train.npz`` (and ``ood.npz``), ``progress.csv``,
``summary.json`` into ``--out_dir``.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
from absl import flags, logging

from jaxomrl.experiment import collect as collect_lib
from jaxomrl.eval import report
from jaxomrl.experiment import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("family", "point_robot_sparse", "Task family (jaxomrl.envs.list_families()).")
flags.DEFINE_string("out_dir", None, "Output directory (resumed if it holds this collection).")
flags.DEFINE_enum("split", "train", list(collect_lib.SPLITS), "Which of the family's task "
                  "splits to collect (all: training, validation and test tasks).")
cli.renamed_flag("tasks", "split")
flags.DEFINE_integer("num_tasks", None, "First N tasks of the split (default: all).")
flags.DEFINE_integer("task_seed", 0, "Seed of the family's train/test split.")
flags.DEFINE_integer("seed", 0, "Seed of SAC and the data rollouts.")
flags.DEFINE_integer("horizon", None, "Override the family's episode length (default: the "
                     "preset's, else the family's).")
flags.DEFINE_integer("sac_steps", None, "SAC environment steps per task (after warm-up).")
flags.DEFINE_integer("checkpoint_every_steps", None,
                     "Env steps per task between policy checkpoints.")
cli.renamed_flag("checkpoint_every", "checkpoint_every_steps")
flags.DEFINE_list("train_checkpoints", None, "Checkpoints whose rollouts form train.npz.")
flags.DEFINE_list("ood_checkpoints", None,
                  "Held-out checkpoints for ood.npz (default: the preset's, minus any train ones; "
                  "an empty list: every checkpoint not in train).")
flags.DEFINE_list("train_returns", None,
                  "Per-task target returns (one per task, or one for all): each task's train "
                  "data come from its checkpoint whose evaluated return is nearest (replaces "
                  "--train_checkpoints; ReDA's didactic design).")
flags.DEFINE_list("ood_returns", None, "The same for ood.npz (needed with --train_returns).")
flags.DEFINE_integer("transitions_per_task", None, "Transitions per task in train.npz.")
flags.DEFINE_integer("ood_transitions_per_task", None, "Transitions per task in ood.npz (0: none).")
flags.DEFINE_integer("rollout_envs", None, "Parallel environments per task and checkpoint.")
flags.DEFINE_list("hidden", None, "SAC hidden layer sizes.")
flags.DEFINE_integer("batch_size", None, "SAC minibatch size.")
flags.DEFINE_integer("num_envs", None, "Parallel training environments per task.")
flags.DEFINE_integer("buffer_capacity", None, "Replay capacity per task.")
flags.DEFINE_integer("warmup_steps", None, "Uniform-action env steps per task before training.")
flags.DEFINE_integer("updates_per_iteration", None, "SAC updates per step of all envs.")
flags.DEFINE_string("train_reward", None, "'reward' or an info key used as the SAC reward.")
flags.DEFINE_bool("deterministic", False, "Roll out checkpoints with their mean actions.")
flags.DEFINE_string("preset", "default", "Settings preset (jaxomrl.experiment.collect.PRESETS): "
                    "'default' (the papers' sizes) or 'cpu' (an hour on a 2-core CPU, where one "
                    "exists for the family); the flags above override it.")
flags.DEFINE_enum("collector", None, ["per_task", "conditioned"],
                  "per_task: one SAC agent per task (the papers' protocol); conditioned: one SAC "
                  "agent for all tasks, given each task's attributes (default: the preset's).")
_PHYSICS = cli.define_physics_flag()
flags.mark_flag_as_required("out_dir")
cli.require_ints(1, "num_tasks", "horizon", "sac_steps", "checkpoint_every_steps",
                 "transitions_per_task", "rollout_envs", "batch_size", "num_envs",
                 "buffer_capacity")
cli.require_ints(0, "task_seed", "seed", "ood_transitions_per_task", "warmup_steps",
                 "updates_per_iteration")
cli.require_int_lists("hidden")
cli.require_int_lists("train_checkpoints", "ood_checkpoints", lower=0)
for _name in ("train_returns", "ood_returns"):
    flags.register_validator(
        _name, lambda v: v is None or all(_is_finite_number(x) for x in v),
        message=f"--{_name} must be a comma-separated list of finite numbers")

_OVERRIDABLE = ("collector", "sac_steps", "checkpoint_every_steps", "train_checkpoints",
                "ood_checkpoints", "transitions_per_task", "ood_transitions_per_task",
                "rollout_envs", "hidden", "batch_size", "num_envs", "buffer_capacity",
                "warmup_steps", "updates_per_iteration", "train_reward")


_ROLE = {"train": "seen", "val": "val", "test": "unseen"}


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        settings = collect_lib.flat_settings(collect_lib.preset(FLAGS.family, FLAGS.preset))
    except ValueError as e:
        raise cli.UsageError(f"--preset: {e}") from e
    split = FLAGS.split if FLAGS["split"].present else settings.pop("split", FLAGS.split)
    settings.pop("split", None)
    if FLAGS.horizon is not None:
        settings["horizon"] = FLAGS.horizon
    for name in _OVERRIDABLE:
        if FLAGS[name].present:
            value = FLAGS[name].value
            settings[name] = [int(v) for v in value] if isinstance(value, list) else value
    if FLAGS["train_checkpoints"].present and not FLAGS["ood_checkpoints"].present and \
            settings.get("ood_checkpoints"):
        settings["ood_checkpoints"] = [k for k in settings["ood_checkpoints"]
                                       if k not in settings["train_checkpoints"]]
    targets = {}
    for name in ("train_returns", "ood_returns"):
        if FLAGS[name].value is not None:
            targets[name] = tuple(float(v) for v in FLAGS[name].value)
    if targets and (FLAGS["train_checkpoints"].present or FLAGS["ood_checkpoints"].present):
        raise cli.UsageError("--train_returns / --ood_returns choose the checkpoints; do not "
                             "also give --train_checkpoints / --ood_checkpoints")
    if targets:
        settings["train_checkpoints"], settings["ood_checkpoints"] = [], None
    try:
        config = collect_lib.config_from_settings(
            FLAGS.family, settings, split=split,
            num_tasks=FLAGS.num_tasks, task_seed=FLAGS.task_seed, seed=FLAGS.seed,
            deterministic=FLAGS.deterministic, physics=_PHYSICS.value, **targets)
        tasks, _ = collect_lib.select_tasks(config)  # unknown family, too many tasks
        config.target_returns(tasks.num_tasks)       # one target per task (or one for all)
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    cli.writable_dir(FLAGS.out_dir, "out_dir")
    result = collect_lib.collect(config, FLAGS.out_dir)
    print("mean episode return of the data per checkpoint (mean +- std over tasks):")
    for split, info in result.summary["datasets"].items():
        row = ", ".join(f"{k}: {v['mean']:.2f}+-{v['std']:.2f}" if v["mean"] is not None
                        else f"{k}: (no complete episode)"
                        for k, v in info["checkpoint_returns"].items())
        print(f"  {split:5s} {row}")
    falls = {split: info["terminated_fraction"] for split, info in
             result.summary["datasets"].items()
             if any(v for col in info["terminated_fraction"].values() for v in col)}
    if falls:
        print("completed episodes that ended in termination (a fall), per checkpoint (mean over "
              "tasks; max task):")
        for split, table in falls.items():
            cols = {k: np.asarray(v, float) for k, v in table.items()}   # None -> NaN
            row = ", ".join(f"{k}: {np.nanmean(v):.2f} ({np.nanmax(v):.2f})"
                            for k, v in cols.items() if not np.all(np.isnan(v)))
            print(f"  {split:5s} {row}")
    s = result.summary
    if "evaluated_returns" in s:   # collections made before the checkpoints were evaluated: none
        returns = np.asarray(s["evaluated_returns"])
        attribute = np.asarray(s["task_attributes"])[:, 0]
        is_test = np.asarray(s["is_test"])
        role = np.asarray(s.get("split", np.where(is_test, "test", "train")))
        best = returns.max(axis=1)
        print(f"best checkpoint per task ({s['collector']} SAC): return (checkpoint) by task "
              "attribute, sorted")
        for t in np.argsort(attribute):
            print(f"  {_ROLE[role[t]]:6s} {attribute[t]:8.3f}  "
                  f"{best[t]:9.2f} ({s['best_checkpoint'][t]})")
        for name, mask in ((_ROLE[r], role == r) for r in _ROLE):
            if mask.any():
                print(f"  {name}: mean {best[mask].mean():.2f} +- {best[mask].std(ddof=int(mask.sum() > 1)):.2f}")
        path = report.plot_task_curves(
            np.asarray(s["checkpoint_env_steps"]), returns, attribute, is_test,
            os.path.join(FLAGS.out_dir, "learning_curves.png"),
            f"{FLAGS.family}: every checkpoint on every task ({s['collector']} SAC)",
            attribute_name=(s["task_params"][0].replace("_", " ")
                            if len(s.get("task_params", ())) == 1 else "task attribute"))
        print(f"wrote {path}")
    print(json.dumps({"train": result.train_path, "ood": result.ood_path}))


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.out_dir)
