"""Trains every encoder / loss combination on a collected dataset and reports how well each
identifies unseen test tasks (nearest-centroid accuracy of held-out contexts).

    python research/encoders.py --data_dir=runs/point_robot_data --steps=2000 --seeds=3

Needs a collection with test tasks (``experiments/collect.py --split=all``). Encoders train on the
training tasks of ``train.npz``; accuracy is measured on the test tasks, with centroids from one
set of ``train.npz`` contexts and queries from another (``in-dist``) or from ``ood.npz``, the
held-out behaviour checkpoints (``ood ctx``). Seeds train in one vmapped program.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import flags, logging

from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data.sampler import TaskData
from jaxomrl.experiment import cli
from jaxomrl.learners.encoder import (EncoderConfig, GRUConfig, SetConfig, TransformerConfig,
                                      make_encoder_learner)
from jaxomrl.learners.gradients import scan_updates

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "runs/point_robot_data", "Collection directory.")
flags.DEFINE_integer("steps", 2000, "Gradient steps per encoder.")
flags.DEFINE_integer("seeds", 3, "Seeds (vmapped).")
flags.DEFINE_integer("meta_batch", 16, "Tasks per step.")
flags.DEFINE_float("kernel_alpha", 5.0, "R2PGO eq. 4: alpha of the similarity kernel "
                   "exp(-alpha |c_i - c_j|^2) that draws the negatives.")
cli.renamed_flag("alpha", "kernel_alpha")

VAE = GRUConfig(vae_weight=1.0)
COMBOS = {
    "gru VAE": dict(gru=VAE, window=20),
    "gru VAE + InfoNCE, uniform negatives": dict(gru=VAE, infonce_weight=1.0, alpha=0.0,
                                                 window=20),
    "gru VAE + InfoNCE, weighted negatives (R2PGO)": dict(gru=VAE, infonce_weight=1.0,
                                                          window=20),
    "transformer InfoNCE (ReDA encoder)": dict(transformer=TransformerConfig(),
                                               infonce_weight=1.0, latent_dim=8, window=8),
    "mlp mean pool, FOCAL distance": dict(mlp=SetConfig(), focal_weight=1.0, window=16),
    "mlp attention pool, CORRO noise negatives": dict(
        mlp=SetConfig(corro_weight=1.0, pooling="attention"), window=16),
}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    train = dataset_lib.load(os.path.join(FLAGS.data_dir, "train.npz"))
    if not train.is_test.any() or train.is_test.all():
        raise cli.UsageError("the dataset needs training and test tasks (collect with --split=all)")
    ood_path = os.path.join(FLAGS.data_dir, "ood.npz")
    ood = dataset_lib.load(ood_path) if os.path.exists(ood_path) else None
    train_tasks = TaskData.from_dataset(train.select_tasks(train.is_train))
    test_ref = TaskData.from_dataset(train.select_tasks(train.is_test))
    test_ood = (TaskData.from_dataset(ood.select_tasks(ood.is_test)) if ood is not None
                else None)
    n_test = int(train.is_test.sum())
    print(f"{train.family}: {train_tasks.num_tasks} training tasks, {n_test} unseen test tasks "
          f"(chance {1 / n_test:.2f}); {FLAGS.steps} steps, {FLAGS.seeds} seeds")
    print("| encoder / loss | untrained | in-dist contexts | ood contexts | train time |")
    print("|---|---:|---:|---:|---:|")
    keys = jax.random.split(jax.random.PRNGKey(0), FLAGS.seeds)
    k_eval = jax.random.PRNGKey(11)
    for name, combo in COMBOS.items():
        combo = dict(combo)
        combo.setdefault("alpha", FLAGS.kernel_alpha)
        cfg = EncoderConfig(contexts_per_task=8, meta_batch=min(FLAGS.meta_batch,
                                                                train_tasks.num_tasks), **combo)
        learner = make_encoder_learner(cfg, train.meta["obs_dim"], train.meta["action_dim"])
        start = time.time()
        states = jax.jit(jax.vmap(lambda k: scan_updates(learner.update, learner.init(k),
                                                         train_tasks, k, FLAGS.steps)[0]))(keys)
        jax.block_until_ready(states)
        seconds = time.time() - start
        evaluate = jax.jit(jax.vmap(learner.evaluate, in_axes=(0, None, None, None)))
        untrained = np.asarray(evaluate(jax.vmap(learner.init)(keys).params, test_ref, test_ref,
                                        k_eval))
        acc = np.asarray(evaluate(states.params, test_ref, test_ref, k_eval))
        acc_ood = (np.asarray(evaluate(states.params, test_ref, test_ood, k_eval))
                   if test_ood is not None else np.full_like(acc, np.nan))
        print(f"| {name} | {untrained.mean():.2f} | {acc.mean():.2f} ± {acc.std():.2f} | "
              f"{acc_ood.mean():.2f} ± {acc_ood.std():.2f} | {seconds:.0f} s |", flush=True)


if __name__ == "__main__":
    cli.run(main)
