"""Do ReDA's per-task dynamics models tell the tasks apart on real data?

    python research/model_discrimination.py --workdir=runs/walker_pt --spec=reda

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

Then the scale the models would have to resolve (MuJoCo families): each seen task's true
physics (``next_obs_from_obs``) applied to every seen task's transitions gives the true task
effect ``|s'_j - s'_i|^2`` (the same state and action under task j's physics instead of task
i's), beside the models' own error ``|s'_model_i - s'_i|^2`` and the difference between the
tasks' models ``|s'_model_j - s'_model_i|^2`` at the same inputs (squared norms over the state
dimensions; median and mean over every transition of every task pair and seed), and the
cosine between the models' difference and the true one (1: the models' difference points the
physics' way; ~0: unrelated). Where the models' own error is orders above the true effect,
their differences cannot be the tasks'. The same statistics again on only the transitions
where both tasks' ensembles are inside their support (u at most ``--support_quantile`` of their
own training data's: ``joint_support``): whether the models' differences are the physics'
where every task's models are confident. ``--shared_model_rounds`` measures a task-conditioned
model the same way (one ensemble on every task's data, the task's one-hot an input), the
structure that fits the dynamics the tasks share once.
"""
from __future__ import annotations

import functools
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from jaxomrl.algos.registry import from_run_config
from jaxomrl.config import from_json
from jaxomrl.experiment import cli, runs
from jaxomrl.algos.reda import Models, task_models
from jaxomrl.data.sampler import TaskData
from jaxomrl.learners.dynamics import (UNCERTAINTIES, DynamicsConfig, make_dynamics, model_io,
                                       with_task_input)
from jaxomrl.types import scale_action

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "train.py workdir holding the ReDA run.")
flags.DEFINE_string("spec", "reda", "The ReDA spec whose models to read.")
flags.DEFINE_integer("max_transitions", 8000, "Transitions per task scored (the first ones).")
flags.DEFINE_float("support_quantile", 0.9,
                   "In-support transitions: the own task's ensemble uncertainty at most this "
                   "quantile of its uncertainty on its own training transitions.")
flags.DEFINE_integer("physics_transitions", 1000,
                     "Transitions per task stepped through every task's true physics (0: skip).")
flags.DEFINE_integer("shared_model_rounds", 0,
                     "> 0 (a run with per-task models): also one task-conditioned model per seed "
                     "(every task's data, the task's one-hot an input; the per-task models' "
                     "settings), trained for at most this many rounds, measured the same way.")
flags.DEFINE_string("out", None, "JSON output path (default: <run dir>/model_discrimination.json).")
flags.mark_flag_as_required("workdir")


def transition_errors(dyn, task_model, models, data, obs_dim: int, n: int):
    """One seed's models (``models``: its ``reda.Models``; ``task_model``:
    ``reda.task_models``') on every task's first ``n`` transitions: ``(errors [T_data, T_model,
    n], u [T_data, n, 2])``: the squared next-state error of each task's ensemble mean
    (averaged over state dimensions) and the own task's ensemble uncertainty at each transition
    (aleatoric, disagreement)."""
    x, y = model_io(data, "next_state")
    x, y = x[:, :n], y[:, :n]
    t = x.shape[0]

    def one(j, xi, yi):
        params, norm, extend = task_model(models, j)
        mean, _ = dyn.predict(params, norm, xi[:, :obs_dim], extend(xi[:, obs_dim:]))
        return jnp.mean((jnp.mean(mean, axis=0) - yi) ** 2, axis=-1)
    per_model = jax.vmap(one, in_axes=(0, None, None))              # every model, one task's data
    errors = jax.jit(jax.vmap(per_model, in_axes=(None, 0, 0)))(jnp.arange(t), x, y)

    def own(i, xi):
        params, norm, extend = task_model(models, i)
        o, a = xi[:, :obs_dim], extend(xi[:, obs_dim:])
        return jnp.stack([dyn.uncertainty(params, norm, o, a, kind) for kind in UNCERTAINTIES], -1)
    own_u = jax.jit(jax.vmap(own))(jnp.arange(t), x)
    return np.asarray(errors), np.asarray(own_u)


def physics_scale(family, task_params, predictors, data, n: int, supports=None) -> dict:
    """The true task effect, the models' own error and the models' differences on each task's
    first ``n`` transitions with unclipped velocities (see the module docstring):
    ``{name: {median, mean}}`` of squared next-state norms and of the direction cosine, and
    ``reconstruction``: the own task's physics against the recorded next state (~0: a check of
    the measurement). ``predictors``: one per seed, ``predict(j, obs [n, D], action [n, A]) ->
    s' [n, D]``, task j's model (its ensemble's mean). ``supports`` (one per seed,
    ``in_support(j, obs, action) -> bool [n]``: task j's models' u at most their threshold):
    the same statistics again under ``joint_support``, on only the (pair, transition)s where
    both tasks' models are inside their support, with the ``fraction`` kept."""
    tr = data.transitions
    t = tr.obs.shape[0]
    obs, act, nxt = (np.asarray(x) for x in (tr.obs, tr.action, tr.next_obs))
    # Only transitions whose velocities are inside the robot's observation clip, at both ends:
    # the state is then the observation's exactly (the reconstruction check is ~0).
    clip = family.robot.qvel_clip
    inside = np.ones(obs.shape[:2], bool) if clip is None else np.all(np.abs(np.concatenate(
        [family.state_from_obs(obs)[1], family.state_from_obs(nxt)[1]], -1)) < clip, -1)
    m = min(n, int(inside.sum(1).min()))
    if m == 0:                          # some task has no transition to measure
        return {"transitions_per_task": 0, "fraction_unclipped": float(np.mean(inside))}
    rows = np.stack([np.flatnonzero(inside[i])[:m] for i in range(t)])     # [T, m]
    obs, act, nxt = (np.take_along_axis(x, rows[..., None], 1) for x in (obs, act, nxt))
    # TaskData's actions are in [-1, 1]; the physics takes the environment's.
    env_act = np.asarray(scale_action(act, family.action_low, family.action_high))
    per_task = lambda j: {k: np.asarray(v)[j] for k, v in task_params.items()}
    true = np.stack([np.stack([family.next_obs_from_obs(per_task(j), obs[i], env_act[i])
                               for j in range(t)]) for i in range(t)])     # [T_data, T_phys, m, D]
    sq = lambda x: np.sum(np.square(x), axis=-1)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    pairs = [(i, j) for i in range(t) for j in range(t) if i != j]
    effect = np.stack([sq(true[i, j] - true[i, i]) for i, j in pairs])
    recon = np.stack([sq(true[i, i] - nxt[i]) for i in range(t)])
    own, between, cosine, joint = [], [], [], []
    for s, predict in enumerate(predictors):
        pred = np.stack([np.stack([np.asarray(predict(j, obs[i], act[i])) for j in range(t)])
                         for i in range(t)])                               # [T_data, T_model, m, D]
        own.append(np.stack([sq(pred[i, i] - nxt[i]) for i in range(t)]))
        between.append(np.stack([sq(pred[i, j] - pred[i, i]) for i, j in pairs]))
        cosine.append(np.stack([np.sum(unit(pred[i, j] - pred[i, i])
                                       * unit(true[i, j] - true[i, i]), -1) for i, j in pairs]))
        if supports is not None:
            ok = np.stack([np.stack([np.asarray(supports[s](j, obs[i], act[i]))
                                     for j in range(t)]) for i in range(t)])   # [T_data, T_model, m]
            joint.append(np.stack([ok[i, i] & ok[i, j] for i, j in pairs]))
    stats = lambda x: {"median": float(np.median(x)), "mean": float(np.mean(x))}
    out = {"true_task_effect": stats(effect), "model_own_error": stats(np.stack(own)),
           "model_task_difference": stats(np.stack(between)),
           "direction_cosine": stats(np.stack(cosine)), "reconstruction": stats(recon),
           "transitions_per_task": int(m), "fraction_unclipped": float(np.mean(inside))}
    if supports is not None:
        keep = np.stack(joint)                                             # [seeds, pairs, m]
        kept = lambda x: stats(x[keep]) if keep.any() else None
        own_pairs = np.stack([np.stack([o[i] for i, _ in pairs]) for o in own])
        out["joint_support"] = {
            "fraction": float(keep.mean()),
            "true_task_effect": kept(np.broadcast_to(effect, keep.shape)),
            "model_own_error": kept(own_pairs), "model_task_difference": kept(np.stack(between)),
            "direction_cosine": kept(np.stack(cosine))}
    return out


def run_predictors(dyn, task_model, models, num_seeds: int, obs_dim: int) -> list:
    """``physics_scale``'s predictors of a run's models (``models``: leaves ``[seed, ...]``),
    one per seed: task j's ensemble mean next state."""
    def predict(models_s, j, o, a):
        params, norm, extend = task_model(models_s, j)
        return o + jnp.mean(dyn.predict(params, norm, o, extend(a))[0], axis=0)[..., :obs_dim]
    predict = jax.jit(predict)
    take = lambda s: jax.tree_util.tree_map(lambda x: x[s], models)
    return [functools.partial(predict, take(s)) for s in range(num_seeds)]


def run_supports(dyn, task_model, models, thresholds, kind: str) -> list:
    """``physics_scale``'s support tests of a run's models, one per seed: whether task j's
    ensemble's ``kind`` of u at ``(obs, action)`` is at most ``thresholds[seed][j]``."""
    def in_support(models_s, threshold, j, o, a):
        params, norm, extend = task_model(models_s, j)
        return dyn.uncertainty(params, norm, o, extend(a), kind) <= threshold[j]
    in_support = jax.jit(in_support)
    take = lambda s: jax.tree_util.tree_map(lambda x: x[s], models)
    return [functools.partial(in_support, take(s), jnp.asarray(th))
            for s, th in enumerate(thresholds)]


def conditioned_models(config: DynamicsConfig, data: TaskData, obs_dim: int, action_dim: int,
                       rounds: int, seeds):
    """``(dyn, models)``: one task-conditioned ensemble per seed (``reda.Models`` with only the
    dynamics, leaves ``[seed, 1, ...]``), trained as the run's per-task ones (``config``,
    early stopping on held-out NLL, at most ``rounds`` rounds) on every task's data, the task's
    one-hot an input -- the dynamics the tasks share fitted once."""
    dyn = make_dynamics(config, obs_dim, action_dim + data.num_tasks)
    pooled = with_task_input(data)
    fit = jax.jit(dyn.fit, static_argnums=3)
    states = []
    for seed in seeds:
        k_init, k_fit = jax.random.split(jax.random.PRNGKey(seed))
        states.append(fit(dyn.init(k_init, pooled), pooled, k_fit, rounds)[0])
    stack = lambda *x: jnp.stack(x)
    return dyn, Models(dyn_params=jax.tree_util.tree_map(stack, *[st.best for st in states]),
                       dyn_norm=jax.tree_util.tree_map(stack, *[st.norm for st in states]),
                       reward_params=None, reward_norm=None)


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
                                int(ds.is_train.sum()))
    models = runs.phase_outputs(algorithm, identity, FLAGS.workdir, data, "models")
    phase = next(ph for ph in algorithm.phases if ph.name == "models")
    structure = algorithm.config["model_structure"]
    num_seen = int(ds.is_train.sum())
    conditioned = structure == "task_conditioned"
    dyn = make_dynamics(from_json(DynamicsConfig, phase.config["dynamics"]), family.obs_dim,
                        family.action_dim + (num_seen if conditioned else 0))
    task_model = task_models(structure, num_seen)
    out = {"spec": FLAGS.spec, "seeds": identity["seeds"], "tasks": {}, "summary": {}}
    attr = np.asarray(ds.attributes[ds.is_train])[:, 0].round(3).tolist()
    out["task_attributes"] = attr
    seeds = range(len(identity["seeds"]))
    out["model_structure"] = structure
    per_seed = {name: [transition_errors(
        dyn, task_model, jax.tree_util.tree_map(lambda a: a[s], models), td, family.obs_dim,
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
    if FLAGS.physics_transitions > 0 and hasattr(family, "next_obs_from_obs"):
        seen = {k: np.asarray(v)[ds.is_train] for k, v in ds.task_params.items()}
        predictors = {structure: run_predictors(dyn, task_model, models, len(seeds),
                                                family.obs_dim)}
        # Where ReDA's rollouts end (--adversary_support_quantile): the models' own u kind.
        u_kind = dyn.config.uncertainty
        supports = {structure: run_supports(dyn, task_model, models,
                                            [th[:, UNCERTAINTIES.index(u_kind)]
                                             for th in thresholds], u_kind)}
        if FLAGS.shared_model_rounds > 0 and not conditioned:
            shared, shared_models = conditioned_models(
                dyn.config, data["train"], family.obs_dim, family.action_dim,
                FLAGS.shared_model_rounds, identity["seeds"])
            predictors["task_conditioned"] = run_predictors(
                shared, task_models("task_conditioned", num_seen), shared_models, len(seeds),
                family.obs_dim)
        out["physics"] = {}
        for (kind, preds), (name, td) in itertools.product(
                predictors.items(), (("train", data["train"]), ("ood", eval_data["ood"]["train"]))):
            scale = physics_scale(family, seen, preds, td, FLAGS.physics_transitions,
                                  supports.get(kind))
            out["physics"][f"{kind}/{name}"] = scale
            print(f"{kind} models, {name} data, {scale['transitions_per_task']} transitions per "
                  f"task (of the {scale['fraction_unclipped']:.0%} with unclipped velocities): "
                  f"squared next-state norms (median / mean)")
            if not scale["transitions_per_task"]:
                continue
            for k in ("true_task_effect", "model_own_error", "model_task_difference",
                      "direction_cosine", "reconstruction"):
                print(f"  {k:22s} {scale[k]['median']:12.5f} {scale[k]['mean']:12.5f}")
            joint = scale.get("joint_support")
            if joint and joint["direction_cosine"] is not None:
                print(f"  inside both tasks' models' support ({joint['fraction']:.0%} of the "
                      "pairs' transitions):")
                for k in ("true_task_effect", "model_own_error", "model_task_difference",
                          "direction_cosine"):
                    print(f"    {k:20s} {joint[k]['median']:12.5f} {joint[k]['mean']:12.5f}")
    path = FLAGS.out or f"{found[FLAGS.spec]}/model_discrimination.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({"out": path}))


if __name__ == "__main__":
    cli.run(main)
