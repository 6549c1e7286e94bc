"""Imports a dataset of another offline meta-RL codebase as a jaxomrl collection.

    python experiments/import_data.py --format=reda --family=halfcheetah_gravity \
        --src=onlinerl/data --out=data/reda_cheetah --test_tasks=3,4 --ood_checkpoints=1,2

Layouts (``--format``): ``borel`` / ``corro``, ``focal`` (FOCAL / CSRO), ``reda``,
``prompt_dt``; ``jaxomrl.data.imports`` describes each. Writes ``train.npz`` (and ``ood.npz``
for ``--ood_checkpoints``) and ``import.json`` into ``--out``, all or nothing; the result is read
by ``train.py --data=<out>``. What the layout does not hold (task parameters, the test split,
the episode length) is named in the error, with the flag that supplies it.
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from jaxomrl.data import imports
from jaxomrl.experiment import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", None, list(imports.FORMATS) + ["minari"], "Layout of --src "
                  "(minari: --src is the Minari datasets root, MINARI_DATASETS_PATH).")
flags.DEFINE_string("family", None, "jaxomrl task family the data are of.")
flags.DEFINE_string("src", None, "Directory in the peer's layout.")
flags.DEFINE_string("out", None, "Output collection directory (must not exist).")
flags.DEFINE_bool("overwrite", False, "Replace an existing collection at --out.")
flags.DEFINE_string("family_config", "{}", "JSON of the family's settings, e.g. "
                    "'{\"horizon\": 200}' (the peers' episode length).")
flags.DEFINE_string("task_params", None, "Task parameters where the layout lacks them: JSON "
                    "{name: [one value per task]} or a path to such a file.")
flags.DEFINE_list("test_tasks", None, "Indices of the unseen test tasks (is_test; default: "
                  "those of a fixed-split family, e.g. ReDA's unseen gravity factors, else none).")
flags.DEFINE_list("ood_checkpoints", [], "Behaviour checkpoints that form ood.npz.")
flags.DEFINE_enum("obs_convention", None, ["jaxomrl", "gym"], "The data's observation "
                  "convention ('gym': map with TaskFamily.from_gym_obs).")
flags.DEFINE_bool("truncate", False, "Cut every task to the smallest task's transitions "
                  "instead of refusing unequal tasks.")
flags.DEFINE_integer("trajectory_len", None, "borel / corro flat arrays: steps per trajectory.")
flags.DEFINE_enum("normalizer", None, ["raw", "divided"], "focal with normalizer.npz: the "
                  "files hold raw or obs / abs_max observations.")
flags.DEFINE_string("mode", None, "prompt_dt: the dataset, e.g. expert.")
flags.DEFINE_string("task_config_dir", None, "prompt_dt: directory of config_<task>_task<i>.pkl.")
flags.DEFINE_string("namespace", None, "minari: the namespace of datasets jaxomrl exported "
                    "(<namespace>/<family>/<split>-task<i>-v0).")
flags.DEFINE_list("minari_datasets", None, "minari: ids of datasets written by other tools, one "
                  "per task in task order (with --task_params).")
for _name in ("format", "family", "src", "out"):
    flags.mark_flag_as_required(_name)


def _json(text, name):
    if text is None:
        return None
    if os.path.exists(text):
        with open(text) as f:
            text = f.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise cli.UsageError(f"--{name}: not JSON ({e})") from e
    if not isinstance(value, dict):
        raise cli.UsageError(f"--{name}: expected a JSON object")
    return value


def _ints(values, name):
    try:
        return [int(v) for v in values]
    except ValueError as e:
        raise cli.UsageError(f"--{name}: integers expected ({e})") from e


def _import():
    build = dict(task_params=_json(FLAGS.task_params, "task_params"),
                 test_tasks=(None if FLAGS.test_tasks is None
                             else _ints(FLAGS.test_tasks, "test_tasks")),
                 ood_checkpoints=_ints(FLAGS.ood_checkpoints, "ood_checkpoints"),
                 obs_convention=FLAGS.obs_convention, truncate=FLAGS.truncate)
    family_config = _json(FLAGS.family_config, "family_config")
    if FLAGS.format != "minari":
        return imports.import_dataset(
            FLAGS.format, FLAGS.src, FLAGS.family, FLAGS.out, family_config=family_config,
            overwrite=FLAGS.overwrite, trajectory_len=FLAGS.trajectory_len,
            normalizer=FLAGS.normalizer, mode=FLAGS.mode, task_config_dir=FLAGS.task_config_dir,
            **build)
    from jaxomrl.data import minari_io
    if (FLAGS.namespace is None) == (FLAGS.minari_datasets is None):
        raise cli.UsageError("--format=minari needs --namespace (datasets jaxomrl exported) or "
                             "--minari_datasets (others', one per task), not both")
    if FLAGS.namespace is not None:
        given = [k for k, v in build.items() if v not in (None, [], False)]
        if given or family_config:
            raise cli.UsageError(f"--namespace imports jaxomrl's own exports as they were; "
                                 f"--{', --'.join(given or ['family_config'])} do not apply")
        return minari_io.import_collection(FLAGS.namespace, FLAGS.family, FLAGS.out,
                                           root=FLAGS.src, overwrite=FLAGS.overwrite)
    from jaxomrl import envs
    train, ood = minari_io.import_foreign(FLAGS.minari_datasets,
                                          envs.make(FLAGS.family, **family_config),
                                          root=FLAGS.src, family_config=family_config, **build)
    imports.write_collection(FLAGS.out, train, ood, overwrite=FLAGS.overwrite)
    return train, ood


def main(argv):
    del argv
    train, ood = _import()
    labels = train.meta["provenance"].get("task_labels") or [
        f"task {i}" for i in range(train.num_tasks)]
    for split, ds in (("train", train), ("ood", ood)):
        if ds is None:
            continue
        eps = int(ds.transitions["episode"].max()) + 1
        print(f"{split}: {ds.num_tasks} tasks x {ds.transitions_per_task} transitions, "
              f"checkpoints {ds.meta['checkpoints']}, up to {eps} episodes per task")
    for i, label in enumerate(labels):
        params = {k: np.asarray(v[i]).round(4).tolist() for k, v in train.task_params.items()}
        print(f"  task {i}: {label} {params}{' (test)' if train.is_test[i] else ''}")
    if not train.is_test.any():
        print("no --test_tasks: every task is marked seen (the layouts do not record the split)")
    print(json.dumps({"out": os.path.abspath(FLAGS.out)}))


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.out)
