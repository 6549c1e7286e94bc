"""The policy learner's ceiling: the conditioned SAC / SAC+BC policy given the *true* task.

    python research/policy_ceiling.py --data=runs/cheetah_vel_data --seeds=3 \
        --hidden=128,128 --steps=20000 --variants=sac_bc,sac

A diagnosis, not a method: the policy of every context-based algorithm here
(``jaxomrl.algos.offline_meta``) conditions on a task embedding z; this script replaces the
encoder by an oracle (z = the task's attributes, standardised over the training tasks) and trains
the same learner (``jaxomrl.learners.sac``, same batches: ``--meta_batch`` tasks x
``--batch_size`` transitions) on the collection's training tasks, evaluating every
``--eval_every`` updates on those same tasks (``--split=train``, the default: the diagnosis never
needs the unseen ones) with z held at the true attributes. Whatever return this reaches is the
most any encoder can give that learner on those data; the gap between it and the data's best
checkpoints is the learner's, not the encoder's. ``--no_task`` gives every task z = 0: the same
learner's floor without a task representation, so the ceiling minus the floor is all a task
encoder can add.

``--variants``: policy objectives, each trained for every seed (vmapped):

* ``sac_bc``: SAC+BC (TD3+BC-style, ``--rl_weight`` lambda on the Q-normalised RL term plus MSE
  behaviour cloning; ReDA appendix B.4, the baselines' policy learning here);
* ``sac``: plain off-policy SAC on the offline data (R2PGO §5.1 excludes offline-RL
  regularisers from every method; CORRO's and BOReL's policy learning);
* ``bc``: behaviour cloning only (OM-BC's policy learning);
* ``iql``: implicit Q-learning (``jaxomrl.learners.iql``; ``--expectile``,
  ``--iql_temperature``): in-sample values, advantage-weighted cloning.

``--policy_top_fraction`` < 1 trains the actor only at each task's best episodes by return
(percentile BC, SAC+BC's RL term at the same states; the critics still learn from every
transition). ``--alpha`` holds SAC's entropy temperature fixed (0: TD3+BC's objective, no
entropy terms) instead of learning it from 1; ``--discount`` and ``--tau`` change the critics'
targets. Writes
``--out`` (JSON: every variant's evaluation curve, per seed x task, and its training metrics --
alpha, mean Q, TD error, losses -- averaged over the last tenth of every evaluation interval,
per seed) and prints a table.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from jaxomrl.data.dataset import load_collection
from jaxomrl.data.sampler import (TaskData, observation_moments, sample_meta_batch, standardise,
                                  take, top_episodes)
from jaxomrl.eval import report
from jaxomrl.eval.adaptation import Context, online_rollout
from jaxomrl.experiment import cli
from jaxomrl.io import atomic_write_text
from jaxomrl.learners.iql import IQLConfig, make_iql
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.types import TaskBatch

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Collection directory (or its train.npz).")
flags.DEFINE_list("variants", ["sac_bc", "sac"], "Policy objectives: sac_bc | sac | bc | iql.")
flags.DEFINE_enum("head", "concat", ["concat", "hyper"], "Conditioning head.")
flags.DEFINE_list("hidden", ["128", "128"], "Actor / critic hidden sizes.")
flags.DEFINE_integer("seeds", 3, "Seeds (vmapped).")
flags.DEFINE_integer("steps", 20000, "Policy updates.")
flags.DEFINE_integer("eval_every", 5000, "Updates between evaluations.")
flags.DEFINE_integer("batch_size", 256, "Transitions per update (over the meta-batch).")
flags.DEFINE_integer("meta_batch", 16, "Tasks per update.")
flags.DEFINE_float("lr", 3e-4, "Actor and critic learning rate.")
flags.DEFINE_float("discount", 0.99, "Discount factor of the critics.", lower_bound=0.0,
                   upper_bound=0.999)
flags.DEFINE_float("tau", 5e-3, "Polyak rate of the target critics.", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_float("rl_weight", 2.5, "sac_bc: lambda of the RL term.")
flags.DEFINE_float("bc_weight", 1.0, "sac_bc / bc: weight of the cloning term.")
flags.DEFINE_float("alpha", None, "sac_bc / sac: a fixed entropy temperature instead of SAC's "
                   "learned one (e.g. 0 for no entropy term: TD3+BC's deterministic objective).",
                   lower_bound=0.0)
flags.DEFINE_float("policy_top_fraction", 1.0, "sac_bc / sac / bc: the actor learns only at "
                   "the transitions of each task's best episodes by return, this fraction of "
                   "them (percentile BC; the critics: every transition; 1: all).",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("expectile", 0.7, "iql: expectile of the value regression.")
flags.DEFINE_float("iql_temperature", 3.0, "iql: beta of the advantage weights.")
flags.DEFINE_bool("normalize_obs", True, "Standardise observations by the training data's "
                  "mean and std (TD3+BC's state normalisation).")
flags.DEFINE_list("record", [], "Step-info keys whose per-episode mean is kept per task (e.g. "
                  "x_velocity,ctrl_cost on cheetah_vel).")
flags.DEFINE_bool("stochastic_eval", False, "Evaluate the policy's sampled actions instead of "
                  "its mode (the deterministic mean).")
flags.DEFINE_bool("keep_trace", False, "Also keep the last evaluation's per-step trace of the "
                  "--record keys ([seeds, tasks, horizon]; large).")
flags.DEFINE_list("checkpoints", [], "Train only on the transitions of these behaviour "
                  "checkpoints (default: all of train.npz), e.g. the expert's alone.")
flags.DEFINE_enum("split", "train", ["train", "val", "test"], "Tasks to evaluate in.")
flags.DEFINE_bool("no_task", False, "z = 0 for every task: the same learner without the task, "
                  "the floor a task representation lifts it from.")
flags.DEFINE_integer("seed", 0, "PRNG seed.")
flags.DEFINE_string("out", None, "JSON output (default: <data>/policy_ceiling.json).")
flags.mark_flag_as_required("data")
cli.require_ints(1, "seeds", "steps", "eval_every", "batch_size", "meta_batch")

OBJECTIVES = {"sac_bc": lambda: dict(rl_weight=FLAGS.rl_weight, bc_weight=FLAGS.bc_weight),
              "sac": lambda: dict(rl_weight=1.0, bc_weight=0.0),
              "bc": lambda: dict(rl_weight=0.0, bc_weight=FLAGS.bc_weight)}
VARIANTS = (*OBJECTIVES, "iql")


def oracle_context(attr_dim: int) -> Context:
    """A context that is the task: its carry is the (standardised) attribute vector, set once by
    ``initial_context`` and never updated."""
    return Context(init=lambda: jnp.zeros((attr_dim,)), update=lambda c, tr: c,
                   embed=lambda c, obs: c)


def train_variant(name, data: TaskData, z_train, family, tasks, z_eval, obs_map, key):
    """Evaluation curve ``[evals, seeds, T]``, the per-episode means of the ``--record``ed step
    info ``{key: [evals, seeds, T]}``, the last evaluation's per-step trace ``{key: [seeds, T,
    horizon]}`` (empty without ``--keep_trace``) and the update steps of one objective."""
    meta = min(FLAGS.meta_batch, data.num_tasks)
    common = dict(hidden=tuple(int(h) for h in FLAGS.hidden), head=FLAGS.head,
                  actor_lr=FLAGS.lr, critic_lr=FLAGS.lr, batch_size=FLAGS.batch_size,
                  discount=FLAGS.discount, tau=FLAGS.tau)
    if name == "iql":
        learner = make_iql(IQLConfig(value_lr=FLAGS.lr, expectile=FLAGS.expectile,
                                     temperature=FLAGS.iql_temperature, **common),
                           family.obs_dim, family.action_dim, z_train.shape[-1])
    else:
        temperature = {} if FLAGS.alpha is None else dict(learn_alpha=False,
                                                          init_alpha=FLAGS.alpha)
        learner = make_sac(SACConfig(**common, **OBJECTIVES[name](), **temperature),
                           family.obs_dim, family.action_dim, z_train.shape[-1])
    per_task = max(FLAGS.batch_size // meta, 1)
    context = oracle_context(z_train.shape[-1])
    filtered = name != "iql" and FLAGS.policy_top_fraction < 1.0
    weight_all = top_episodes(data, FLAGS.policy_top_fraction) if filtered else None

    def update(state, key):
        k_task, k_idx, k_sac = jax.random.split(key, 3)
        sel, index = sample_meta_batch(data, k_task, k_idx, meta, per_task)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        rows = jax.tree_util.tree_map(flat, data.gather(sel, index))
        z = jnp.repeat(z_train[sel], per_task, axis=0)
        weight = None if weight_all is None else flat(take(weight_all, sel, index))
        return learner.update(state, TaskBatch(rows, z, actor_weight=weight), k_sac)

    def chunk(state, key, n):
        """``n`` updates; the training metrics' means over the chunk's last tenth."""
        state, metrics = jax.lax.scan(update, state, jax.random.split(key, n))
        return state, jax.tree_util.tree_map(lambda m: m[-max(n // 10, 1):].mean(), metrics)

    def evaluate(state, key):
        act = learner.make_policy(state.actor_params, deterministic=not FLAGS.stochastic_eval)
        policy = lambda obs, z, k: act(obs_map(obs), z, k)
        returns, trace = online_rollout(family, tasks, policy, context, key, 1,
                                        initial_context=z_eval, freeze_from=0,
                                        record=tuple(FLAGS.record))
        return returns[:, 0], {k: trace[k] for k in FLAGS.record}

    chunk = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None)), static_argnums=2)
    evaluate = jax.jit(jax.vmap(evaluate))
    k_init, k_run = jax.random.split(key)
    state = jax.vmap(learner.init)(jax.random.split(k_init, FLAGS.seeds))
    curve, means, steps, train_metrics, done = [], [], [], [], 0
    while done < FLAGS.steps:
        n = min(FLAGS.eval_every, FLAGS.steps - done)
        k_run, k_chunk, k_eval = jax.random.split(k_run, 3)
        state, metrics = chunk(state, jax.random.split(k_chunk, FLAGS.seeds), n)
        metrics = {k: np.asarray(v).tolist() for k, v in jax.device_get(metrics).items()}
        train_metrics.append(metrics)
        done += n
        returns, trace = jax.device_get(evaluate(state, jax.random.split(k_eval, FLAGS.seeds)))
        curve.append(returns)
        means.append({k: v.mean(axis=-1) for k, v in trace.items()})
        steps.append(done)
        logging.info("%s: %d updates, return %.1f +- %.1f (over seeds); training: %s", name,
                     done, returns.mean(), returns.mean(axis=1).std(),
                     ", ".join(f"{k} {np.mean(v):.4g}" for k, v in sorted(metrics.items())))
    recorded = {k: np.stack([m[k] for m in means]).tolist() for k in FLAGS.record}
    last = {k: np.round(v, 4).tolist() for k, v in trace.items()} if FLAGS.keep_trace else {}
    return np.stack(curve), recorded, last, steps, train_metrics


def main(_):
    unknown = sorted(set(FLAGS.variants) - set(VARIANTS))
    if unknown or not FLAGS.variants:
        raise cli.UsageError(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    ds, _ = load_collection(FLAGS.data)
    family = ds.make_family()
    cli.require_info_keys(family, FLAGS.record, "record")
    train_index = np.flatnonzero(ds.is_train)
    split_index = {"train": train_index, "val": np.flatnonzero(ds.is_val),
                   "test": np.flatnonzero(ds.is_test)}[FLAGS.split]
    if split_index.size == 0:
        raise cli.UsageError(f"the dataset has no {FLAGS.split} tasks")
    mean = ds.attributes[train_index].mean(0)
    std = ds.attributes[train_index].std(0) + 1e-6
    attribute_z = lambda a: jnp.asarray(np.zeros_like(a) if FLAGS.no_task else (a - mean) / std,
                                        jnp.float32)
    data = ds.select_tasks(train_index)
    if FLAGS.checkpoints:
        keep = np.isin(data.transitions["checkpoint"], [int(c) for c in FLAGS.checkpoints])
        counts = set(keep.sum(axis=1).tolist())
        if len(counts) != 1 or 0 in counts:
            raise cli.UsageError(f"--checkpoints={FLAGS.checkpoints} keeps {sorted(counts)} "
                                 "transitions per task; every task needs the same, nonzero count")
        data = dataclasses.replace(data, transitions={
            k: v[keep].reshape((data.num_tasks, -1) + v.shape[2:])
            for k, v in data.transitions.items()})
    data = TaskData.from_dataset(data)
    moments = observation_moments(data) if FLAGS.normalize_obs else None
    obs_map = functools.partial(standardise, moments)
    data = data.replace(transitions=data.transitions.replace(
        obs=obs_map(data.transitions.obs), next_obs=obs_map(data.transitions.next_obs)))
    tasks = ds.tasks()[split_index]
    z_train, z_eval = attribute_z(ds.attributes[train_index]), attribute_z(
        ds.attributes[split_index])
    results = {"data": os.path.abspath(FLAGS.data), "split": FLAGS.split,
               "flags": {f: FLAGS[f].value for f in ("head", "hidden", "seeds", "steps",
                                                     "batch_size", "meta_batch", "lr", "no_task",
                                                     "rl_weight", "bc_weight", "expectile",
                                                     "iql_temperature", "normalize_obs",
                                                     "alpha", "discount", "tau",
                                                     "policy_top_fraction",
                                                     "checkpoints", "stochastic_eval",
                                                     "seed")},
               "attributes": ds.attributes[split_index].tolist(), "variants": {}}
    rows = {}
    for i, name in enumerate(FLAGS.variants):
        t0 = time.time()
        curve, recorded, last, steps, train_metrics = train_variant(
            name, data, z_train, family, tasks, z_eval, obs_map,
            jax.random.fold_in(jax.random.PRNGKey(FLAGS.seed), i))
        per_seed = curve.mean(axis=2)                                   # [evals, seeds]
        results["variants"][name] = {"steps": steps, "returns": curve.tolist(),
                                     "episode_mean": recorded, "last_trace": last,
                                     "train_metrics": train_metrics,
                                     "wall_clock_s": time.time() - t0}
        rows[name] = {str(s): per_seed[j] for j, s in enumerate(steps)}
    data_dir = FLAGS.data if os.path.isdir(FLAGS.data) else os.path.dirname(FLAGS.data)
    out = FLAGS.out or os.path.join(data_dir, "policy_ceiling.json")
    atomic_write_text(out, json.dumps(results, indent=1))
    print(report.markdown_table(rows, [str(s) for s in steps], digits=1,
                                row_header="objective (return after n updates)"))
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
