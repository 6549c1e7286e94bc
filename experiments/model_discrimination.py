"""Do ReDA's per-task dynamics models tell the tasks apart on real data?

    python experiments/model_discrimination.py --workdir=runs/walker_pt --spec=reda

For every pair of seen tasks (i, j): the next-state error of task j's ensemble (the models
phase's best members, their mean prediction) on task i's real transitions -- the training data's
and the held-out checkpoints' (``ood.npz``), whose behaviour the models never saw. Model
contexts carry the task only where model i explains task i's data better than the other tasks'
models do: the diagonal must be the row minimum. Prints the matrices (mean over seeds), the
fraction of rows whose minimum is the diagonal, and the mean ratio of the row's best other
model's error to its own; writes them as JSON to ``--out``. The same again on only the
transitions inside the own task's models' support: the own ensemble's uncertainty (MOPO's
aleatoric u, and the members' disagreement) at most its ``--support_quantile`` on its own
training transitions -- where ReDA's rollouts end with ``--adversary_support_quantile``.
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
from jaxomrl.learners.dynamics import UNCERTAINTIES, DynamicsConfig, make_dynamics, model_io

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "train.py workdir holding the ReDA run.")
flags.DEFINE_string("spec", "reda", "The ReDA spec whose models to read.")
flags.DEFINE_integer("max_transitions", 8000, "Transitions per task scored (the first ones).")
flags.DEFINE_float("support_quantile", 0.9,
                   "In-support transitions: the own task's ensemble uncertainty at most this "
                   "quantile of its uncertainty on its own training transitions.")
flags.DEFINE_string("out", None, "JSON output path (default: <run dir>/model_discrimination.json).")
flags.mark_flag_as_required("workdir")


def transition_errors(dyn, params, norm, data, obs_dim: int, n: int):
    """One seed's models (``params`` / ``norm`` with leading task axes) on every task's first
    ``n`` transitions: ``(errors [T_data, T_model, n], u [T_data, n, 2])``: the squared
    next-state error of each task's ensemble mean (averaged over state dimensions) and the own
    task's ensemble uncertainty at each transition (aleatoric, disagreement)."""
    x, y = model_io(data, "next_state")
    x, y = x[:, :n], y[:, :n]

    def one(p, nm, xi, yi):
        mean, _ = dyn.predict(p, nm, xi[:, :obs_dim], xi[:, obs_dim:])
        return jnp.mean((jnp.mean(mean, axis=0) - yi) ** 2, axis=-1)
    per_model = jax.vmap(one, in_axes=(0, 0, None, None))          # every model, one task's data
    errors = jax.jit(jax.vmap(per_model, in_axes=(None, None, 0, 0)))(params, norm, x, y)
    own_u = jax.jit(jax.vmap(lambda p, nm, xi: jnp.stack(
        [dyn.uncertainty(p, nm, xi[:, :obs_dim], xi[:, obs_dim:], kind)
         for kind in UNCERTAINTIES], -1)))(params, norm, x)
    return np.asarray(errors), np.asarray(own_u)


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
    seeds = range(len(identity["seeds"]))
    per_seed = {name: [transition_errors(
        dyn, jax.tree_util.tree_map(lambda a: a[s], models.dyn_params),
        jax.tree_util.tree_map(lambda a: a[s], models.dyn_norm), td, family.obs_dim,
        FLAGS.max_transitions) for s in seeds]
        for name, td in (("train", data["train"]), ("ood", eval_data["ood"]["train"]))}
    # Each task's support threshold: the quantile of its own models' u on its training data.
    thresholds = [np.quantile(u, FLAGS.support_quantile, axis=1) for _, u in per_seed["train"]]
    for name, results in per_seed.items():
        # The whole data, then only the transitions inside the own task's models' support
        # (u at most the threshold), for each kind of u.
        subsets = {"all": [np.ones(e.shape[::2], bool) for e, _ in results]}
        for k, kind in enumerate(UNCERTAINTIES):
            subsets[f"in_support_{kind}"] = [u[..., k] <= th[:, k, None]
                                             for (_, u), th in zip(results, thresholds)]
        for subset, masks in subsets.items():
            mats = [np.einsum("imn,in->im", e, m) / np.maximum(m.sum(1), 1)[:, None]
                    for (e, _), m in zip(results, masks)]
            kept = float(np.mean([m.mean() for m in masks]))
            mean = np.mean(mats, axis=0)
            key = name if subset == "all" else f"{name}/{subset}"
            out["tasks"][key] = mean.tolist()
            out["summary"][key] = {"mean_matrix": summarise(mean), "kept": kept,
                                   "per_seed": [summarise(m) for m in mats]}
            print(f"{name} data ({subset}: {kept:.0%} of the transitions): next-state MSE, rows ="
                  f" data of task (attribute), columns = model of task; mean over seeds "
                  f"{identity['seeds']}")
            for i, row in enumerate(mean):
                print(f"  {attr[i]:7.3f}  " + "  ".join(
                    f"{v:9.4f}{'*' if j == np.argmin(row) else ' '}" for j, v in enumerate(row)))
            s = out["summary"][key]
            print(f"  diagonal is the row minimum: {s['mean_matrix']['diagonal_is_row_minimum']:.2f}"
                  f" (per seed {[p['diagonal_is_row_minimum'] for p in s['per_seed']]}); best "
                  f"other model's error / own: {s['mean_matrix']['best_other_over_own']:.2f}")
    out["support_quantile"] = FLAGS.support_quantile
    path = FLAGS.out or f"{found[FLAGS.spec]}/model_discrimination.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({"out": path}))


if __name__ == "__main__":
    cli.run(main)
