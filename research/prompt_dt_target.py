"""Prompt-DT: how its return follows the return-to-go it is asked for.

    python research/prompt_dt_target.py --workdir=runs/point_robot --split=test

For a finished ``prompt_dt`` run, the offline-context return (``eval.protocols``: a prompt from
one episode of the task's training data, ``--contexts`` draws per task) with the policy's target
return-to-go set to the data's best whole-episode return (the spec's default), to the mean
episode return of each behaviour checkpoint of the data, and to the mean over all episodes. A
return that follows the target shows the return conditioning selecting behaviour of that
quality out of the mixed-quality data. Prints a markdown table (mean ± std over seeds) and
writes ``--out`` (JSON).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from jaxomrl.data.sampler import returns_to_go, run_data
from jaxomrl.eval import report
from jaxomrl.eval.protocols import fixed_context_returns
from jaxomrl.experiment import cli
from jaxomrl.experiment.programs import evaluation_keys
from jaxomrl.experiment.runs import find_runs, load_data, restore
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "experiments/train.py workdir holding a prompt_dt run.")
flags.DEFINE_enum("split", "test", ["train", "test"], "Tasks to evaluate in.")
flags.DEFINE_integer("contexts", 16, "Prompt episodes drawn per task.")
flags.DEFINE_string("out", None, "JSON output (default: <workdir>/prompt_dt_target_<split>.json).")
flags.mark_flag_as_required("workdir")
cli.require_ints(1, "contexts")


def targets_of(train) -> dict:
    """``{name: target}``: the best whole-episode return of the training data, each behaviour
    checkpoint's mean episode return, the mean over all episodes."""
    starts = np.asarray(train.timestep) == 0
    returns = np.asarray(returns_to_go(train))[starts]
    checkpoints = np.asarray(train.checkpoint)[starts]
    out = {"best episode (default)": float(returns.max())}
    for c in np.unique(checkpoints):
        out[f"mean of checkpoint {c}"] = float(returns[checkpoints == c].mean())
    out["mean of all episodes"] = float(returns.mean())
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    runs = find_runs(FLAGS.workdir, ["prompt_dt"])
    ds, ood, identities = load_data(runs)
    data, eval_data = run_data(ds, ood)
    if FLAGS.split not in eval_data["tasks"]:
        raise cli.UsageError(f"--split={FLAGS.split}: the dataset has no such tasks")
    family = ds.make_family()
    identity = identities["prompt_dt"]
    algorithm, outputs = restore("prompt_dt", runs["prompt_dt"], identity, family, ds, data)
    tasks, source = eval_data["tasks"][FLAGS.split], eval_data["data"][FLAGS.split]

    @jax.jit
    def evaluate(target, outputs, keys):
        def one(o, key):
            policy, context = algorithm.policy(o.replace(target_return=target))
            return fixed_context_returns(family, tasks, policy, context, source, key,
                                         FLAGS.contexts)
        return jax.vmap(one)(outputs, keys).mean(-1)        # [seeds]: mean over tasks

    keys = evaluation_keys(identity["seeds"])
    results = {}
    for name, target in targets_of(data["train"]).items():
        per_seed = np.asarray(evaluate(jnp.asarray(target, jnp.float32), outputs, keys))
        results[name] = {"target": target, "per_seed": per_seed.tolist()}
    rows = {f"{name} ({r['target']:.2f})": {"return": r["per_seed"]}
            for name, r in results.items()}
    print(f"\nPrompt-DT, offline-context return on the {FLAGS.split} tasks by target "
          f"return-to-go\n")
    print(report.markdown_table(rows, ["return"], row_header="target return-to-go"))
    out = FLAGS.out or os.path.join(FLAGS.workdir, f"prompt_dt_target_{FLAGS.split}.json")
    atomic_write_text(out, json.dumps(results, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    app.run(main)
