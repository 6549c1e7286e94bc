"""Do ReDA's per-task dynamics models tell the tasks apart on real data?

    python experiments/model_discrimination.py --workdir=runs/walker_pt --spec=reda

For every pair of seen tasks (i, j): the next-state error of task j's ensemble (the models
phase's best members, their mean prediction) on task i's real transitions -- the training data's
and the held-out checkpoints' (``ood.npz``), whose behaviour the models never saw. Model
contexts carry the task only where model i explains task i's data better than the other tasks'
models do: the diagonal must be the row minimum. Prints the matrices (mean over seeds), the
fraction of rows whose minimum is the diagonal, and the mean ratio of the row's best other
model's error to its own; writes them as JSON to ``--out``.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from jaxomrl.algos.registry import from_run_config
from jaxomrl.config import from_json
from jaxomrl.experiment import cli, runs
from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics, model_io

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "train.py workdir holding the ReDA run.")
flags.DEFINE_string("spec", "reda", "The ReDA spec whose models to read.")
flags.DEFINE_integer("max_transitions", 8000, "Transitions per task scored (the first ones).")
flags.DEFINE_string("out", None, "JSON output path (default: <run dir>/model_discrimination.json).")
flags.mark_flag_as_required("workdir")


def error_matrix(dyn, params, norm, data, obs_dim: int, n: int) -> np.ndarray:
    """``[T_data, T_model]`` mean squared next-state error of each task's models on each task's
    transitions (one seed's ``params`` / ``norm`` with leading task axes)."""
    x, y = model_io(data, "next_state")
    x, y = x[:, :n], y[:, :n]

    def one(p, nm, xi, yi):
        mean, _ = dyn.predict(p, nm, xi[:, :obs_dim], xi[:, obs_dim:])
        return jnp.mean((jnp.mean(mean, axis=0) - yi) ** 2)
    per_model = jax.vmap(one, in_axes=(0, 0, None, None))          # every model, one task's data
    return np.asarray(jax.jit(jax.vmap(per_model, in_axes=(None, None, 0, 0)))(
        params, norm, x, y))


def summarise(m: np.ndarray) -> dict:
    own = np.diag(m)
    other = np.where(np.eye(len(m), dtype=bool), np.inf, m).min(axis=1)
    return {"diagonal_is_row_minimum": float(np.mean(np.argmin(m, axis=1) == np.arange(len(m)))),
            "best_other_over_own": float(np.mean(other / own))}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    found, ds, identities, data, eval_data = runs.split_inputs(FLAGS.workdir, [FLAGS.spec],
                                                               "train")
    if "train" not in eval_data["ood"]:
        raise cli.UsageError("the dataset has no ood.npz (held-out checkpoints)")
    identity = identities[FLAGS.spec]
    family = ds.make_family()
    algorithm = from_run_config(FLAGS.spec, identity["config"], family,
                                int((~ds.is_test).sum()))
    models = runs.phase_outputs(algorithm, identity, FLAGS.workdir, data, "models")
    phase = next(ph for ph in algorithm.phases if ph.name == "models")
    dyn = make_dynamics(from_json(DynamicsConfig, phase.config["dynamics"]), family.obs_dim,
                        family.action_dim)
    out = {"spec": FLAGS.spec, "seeds": identity["seeds"], "tasks": {}, "summary": {}}
    attr = np.asarray(ds.attributes[~ds.is_test])[:, 0].round(3).tolist()
    out["task_attributes"] = attr
    for name, td in (("train", data["train"]), ("ood", eval_data["ood"]["train"])):
        mats = [error_matrix(dyn, jax.tree_util.tree_map(lambda a: a[s], models.dyn_params),
                             jax.tree_util.tree_map(lambda a: a[s], models.dyn_norm), td,
                             family.obs_dim, FLAGS.max_transitions)
                for s in range(len(identity["seeds"]))]
        mean = np.mean(mats, axis=0)
        out["tasks"][name] = mean.tolist()
        out["summary"][name] = {"mean_matrix": summarise(mean),
                                "per_seed": [summarise(m) for m in mats]}
        print(f"{name} data: next-state MSE, rows = data of task (attribute), columns = model "
              f"of task; mean over seeds {identity['seeds']}")
        for i, row in enumerate(mean):
            print(f"  {attr[i]:7.3f}  " + "  ".join(
                f"{v:9.4f}{'*' if j == np.argmin(row) else ' '}" for j, v in enumerate(row)))
        s = out["summary"][name]
        print(f"  diagonal is the row minimum: {s['mean_matrix']['diagonal_is_row_minimum']:.2f}"
              f" (per seed {[p['diagonal_is_row_minimum'] for p in s['per_seed']]}); best other "
              f"model's error / own: {s['mean_matrix']['best_other_over_own']:.2f}")
    path = FLAGS.out or f"{found[FLAGS.spec]}/model_discrimination.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({"out": path}))


if __name__ == "__main__":
    cli.run(main)
