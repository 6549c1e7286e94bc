"""Trains offline meta-RL algorithms on a collected dataset, every seed in one vmapped program,
and evaluates them under every protocol (``jaxomrl.eval.protocols``) on the dataset's seen and
unseen tasks (more episodes, tables and figures: ``experiments/evaluate.py``).

    python experiments/train.py --data=runs/point_robot_data --family=point_robot_sparse \
        --algo=r2pgo,r2pgo/no_hypernetwork,bc,om_bc,om_sac,focal,corro --seeds=3 \
        --workdir=runs/point_robot

``--algo`` takes one or more specs (``jaxomrl.algos.registry``: an algorithm, optionally with
``/ablation``s); each trains into ``<workdir>/<spec>`` (``/`` -> ``-``) with ``run.json``,
``metrics_<phase>.csv``, ``metrics_eval.csv``, TensorBoard event files under ``tensorboard/``,
orbax checkpoints and ``results.json``. Rerunning the command resumes killed runs and reuses
finished ones; a run directory holding a run with other settings (any spec of the command) is
refused before any work, naming the fields that differ (``--overwrite`` moves such runs to
``<workdir>/replaced/``). Training that goes non-finite stops with the phase, step, metric and
seeds; rerunning with other settings resumes from the last finite checkpoint. Specs whose first
phases are identical train them once (``<workdir>/shared_phases``). The table at the end compares
the specs with the SAC experts that made the data.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags, logging

from jaxomrl import algos
from jaxomrl.data.sampler import describe_data, run_data
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.experiment import cli
from jaxomrl.experiment.runner import (RunConfig, RunConfigError, archive_run, check_workdir,
                                       run, run_identity)

FLAGS = flags.FLAGS
_D = algos.Settings()
flags.DEFINE_list("algo", ["r2pgo"], "Algorithm specs, e.g. r2pgo,r2pgo/no_hypernetwork,bc.")
flags.DEFINE_string("family", None, "Task family the dataset must come from.")
flags.DEFINE_string("data", None, "train.npz of a collection, or its directory.")
flags.DEFINE_string("workdir", None, "Working directory (one subdirectory per spec).")
flags.DEFINE_integer("seeds", 3, "Number of seeds, trained together (vmapped).")
flags.DEFINE_integer("seed_offset", 0, "First seed.")
flags.DEFINE_bool("shard_seeds", False, "Split the seeds over all devices (jax.sharding).")
flags.DEFINE_bool("share_phases", True, "Specs whose first phases are identical (e.g. the same "
                  "encoder) train them once: outputs shared via <workdir>/shared_phases.")
flags.DEFINE_integer("chunk_steps", 500, "Updates per jitted chunk / log row.")
flags.DEFINE_integer("checkpoint_every", 1, "Chunks between orbax checkpoints.")
flags.DEFINE_integer("eval_every", 0, "Policy updates between evaluations (0: at the end).")
flags.DEFINE_list("hidden", list(map(str, _D.hidden)), "Actor / critic hidden sizes.")
flags.DEFINE_list("hyper_hidden", list(map(str, _D.hyper_hidden)), "Hypernetwork hidden sizes.")
flags.DEFINE_integer("latent_dim", _D.latent_dim, "Task-embedding size.")
flags.DEFINE_integer("encoder_hidden", _D.encoder_hidden, "GRU state size.")
flags.DEFINE_integer("window", None, "Episode-prefix length the encoder trains on "
                     "(default: the horizon, at most 64).")
flags.DEFINE_enum("infonce_prefix", _D.infonce_prefix, ["last", "random"], "R2PGO: the "
                  "contrastive embedding of a context is the GRU's belief after a uniformly drawn "
                  "prefix (random; the paper's z_t) or after the whole context (last).")
flags.DEFINE_enum("policy_context", _D.policy_context, ["task", "history"], "What the policy's "
                  "z is while it trains: the belief after a prefix of another episode of the "
                  "same task (task) or after its own episode up to the transition (history, "
                  "BOReL's hyper-state; what an online agent has).")
flags.DEFINE_bool("normalize_obs", _D.normalize_obs, "The policy sees observations standardised "
                  "by the training data's per-dimension mean and std (TD3+BC).")
flags.DEFINE_integer("vae_posteriors", 0, "VAE: posteriors per context that decode (a uniform "
                     "subsample; 0: all W+1, each decoding every transition).")
flags.DEFINE_integer("vae_transitions", 0, "VAE: transitions each subsampled posterior decodes "
                     "(with --vae_posteriors).")
flags.DEFINE_integer("encoder_steps", _D.encoder_steps,
                     "Encoder gradient steps (ReDA: adversarial encoder steps).")
flags.DEFINE_integer("policy_steps", _D.policy_steps, "Policy gradient steps.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Policy transitions per step (all tasks).")
flags.DEFINE_integer("meta_batch", _D.meta_batch, "Tasks per policy / encoder step.")
flags.DEFINE_float("alpha", _D.alpha, "R2PGO similarity-kernel width (eq. 4).")
flags.DEFINE_float("kl_weight", _D.kl_weight, "Weight of the VAE's KL terms.")
flags.DEFINE_float("rl_weight", _D.rl_weight, "SAC+BC lambda.")
flags.DEFINE_float("bc_weight", _D.bc_weight, "Behaviour-cloning weight.")
flags.DEFINE_integer("eval_episodes", _D.eval_episodes, "Consecutive online episodes per task.")
flags.DEFINE_integer("eval_contexts", _D.eval_contexts,
                     "Context episodes per task of the offline / off-policy protocols.")
flags.DEFINE_integer("num_models", _D.num_models, "ReDA: dynamics models per task.")
flags.DEFINE_list("model_hidden", list(map(str, _D.model_hidden)), "ReDA: model hidden sizes.")
flags.DEFINE_integer("model_rounds", _D.model_rounds,
                     "ReDA: model-training rounds (each --model_eval_every steps + held-out eval).")
flags.DEFINE_integer("model_eval_every", _D.model_eval_every, "ReDA: SGD steps per model round.")
flags.DEFINE_integer("starts_per_task", _D.starts_per_task,
                     "ReDA: adversarial rollouts per task and step.")
flags.DEFINE_float("lambda_uncertainty", _D.lambda_uncertainty, "ReDA: lambda_1 (eq. 6).")
flags.DEFINE_enum("model_uncertainty", _D.model_uncertainty, ["aleatoric", "disagreement"],
                  "ReDA: u of eq. 6 and of the meta-policy's model rows: the largest member "
                  "std of s' (aleatoric, the paper's) or the members' disagreement on s'.")
flags.DEFINE_enum("model_holdout_metric", _D.model_holdout_metric, ["nll", "mse"],
                  "ReDA: held-out score the models' early stopping follows: Gaussian NLL (mean "
                  "and variance) or the mean's MSE (MBPO).")
flags.DEFINE_float("lambda_task", _D.lambda_task, "ReDA: lambda_2 (eq. 6).")
flags.DEFINE_float("policy_model_fraction", _D.policy_model_fraction,
                   "ReDA: fraction of the meta-policy's rows that are one-step model transitions "
                   "(reward penalised by lambda_uncertainty x u; 0: real data only).")
flags.DEFINE_float("adversarial_weight", _D.adversarial_weight,
                   "ReDA: weight of the adversarial-context InfoNCE term of the encoder (the "
                   "real-context term has weight 1).")
flags.DEFINE_bool("overwrite", False, "Runs in --workdir with other settings than requested are "
                  "moved to <workdir>/replaced/<spec>-<time> and trained anew (without it they "
                  "are refused; a run with the same settings is always resumed or reused).")
flags.mark_flags_as_required(["family", "data", "workdir"])
cli.require_ints(1, "seeds", "chunk_steps", "checkpoint_every", "latent_dim", "encoder_hidden",
                 "window", "encoder_steps", "policy_steps", "batch_size", "meta_batch",
                 "eval_episodes", "eval_contexts", "num_models", "model_rounds",
                 "model_eval_every", "starts_per_task")
cli.require_ints(0, "seed_offset", "eval_every", "vae_posteriors", "vae_transitions")
cli.require_multiple("eval_every", "chunk_steps")
cli.require_int_lists("hidden", "hyper_hidden", "model_hidden")
cli.require_finite("alpha", "kl_weight", "rl_weight", "bc_weight", "lambda_uncertainty",
                   "lambda_task", "adversarial_weight", lower=0.0)
cli.require_finite("policy_model_fraction", lower=0.0, upper=1.0)


def _dataset_path(path: str) -> str:
    if os.path.isdir(path):
        path = os.path.join(path, "train.npz")
    if not os.path.exists(path):
        raise cli.UsageError(f"--data: no dataset at {path!r} (collect one with "
                             "experiments/collect.py, or point --data at its train.npz)")
    return path


def _fmt(summary) -> str:
    return f"{summary['mean']:.2f} ± {summary['std']:.2f}"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    path = _dataset_path(FLAGS.data)
    try:
        ds, ood = dataset_lib.load_collection(path, family=FLAGS.family)
        specs = [s for s in FLAGS.algo if s]
        for s in specs:
            algos.parse_spec(s)
    except (dataset_lib.DatasetError, ValueError) as e:
        raise cli.UsageError(str(e)) from e
    cli.writable_dir(FLAGS.workdir, "workdir")
    family = ds.make_family()
    settings = algos.Settings(
        hidden=tuple(int(h) for h in FLAGS.hidden),
        hyper_hidden=tuple(int(h) for h in FLAGS.hyper_hidden),
        latent_dim=FLAGS.latent_dim, encoder_hidden=FLAGS.encoder_hidden,
        window=FLAGS.window or min(family.horizon, 64),
        infonce_prefix=FLAGS.infonce_prefix, policy_context=FLAGS.policy_context,
        normalize_obs=FLAGS.normalize_obs, vae_posteriors=FLAGS.vae_posteriors or None,
        vae_transitions=FLAGS.vae_transitions or None,
        encoder_steps=FLAGS.encoder_steps,
        policy_steps=FLAGS.policy_steps, batch_size=FLAGS.batch_size, meta_batch=FLAGS.meta_batch,
        encoder_meta_batch=FLAGS.meta_batch, alpha=FLAGS.alpha, kl_weight=FLAGS.kl_weight,
        rl_weight=FLAGS.rl_weight, bc_weight=FLAGS.bc_weight, eval_episodes=FLAGS.eval_episodes,
        eval_contexts=FLAGS.eval_contexts, num_models=FLAGS.num_models,
        model_hidden=tuple(int(h) for h in FLAGS.model_hidden), model_rounds=FLAGS.model_rounds,
        model_eval_every=FLAGS.model_eval_every, starts_per_task=FLAGS.starts_per_task,
        lambda_uncertainty=FLAGS.lambda_uncertainty, model_uncertainty=FLAGS.model_uncertainty,
        model_holdout_metric=FLAGS.model_holdout_metric,
        lambda_task=FLAGS.lambda_task,
        policy_model_fraction=FLAGS.policy_model_fraction,
        adversarial_weight=FLAGS.adversarial_weight)
    data, eval_data = run_data(ds, ood)
    n_train = int((~ds.is_test).sum())
    description = describe_data(path, ds, ood)
    seeds = tuple(range(FLAGS.seed_offset, FLAGS.seed_offset + FLAGS.seeds))
    # Every spec's algorithm and run directory, checked before any of them trains.
    runs, conflicts, replace = {}, [], []
    for spec in specs:
        try:
            algorithm = algos.make(spec, settings, family, n_train)
        except ValueError as e:
            raise cli.UsageError(f"{spec}: {e}") from e
        workdir = os.path.join(FLAGS.workdir, spec.replace("/", "-"))
        config = RunConfig(workdir=workdir, seeds=seeds, chunk_steps=FLAGS.chunk_steps,
                           checkpoint_every=FLAGS.checkpoint_every, eval_every=FLAGS.eval_every,
                           shard_seeds=FLAGS.shard_seeds,
                           share_dir=(os.path.join(FLAGS.workdir, "shared_phases")
                                      if FLAGS.share_phases else None))
        try:
            check_workdir(workdir, run_identity(algorithm, config, description))
        except RunConfigError as e:
            (replace if FLAGS.overwrite and os.path.isdir(workdir) else conflicts).append(
                (spec, workdir, str(e)))
        runs[spec] = (algorithm, config)
    if conflicts:
        raise cli.UsageError("\n".join(message for _, _, message in conflicts))
    for spec, workdir, _ in replace:
        print(f"[{spec}] --overwrite: the old run moved to {archive_run(workdir)}")
    results = {spec: run(algorithm, data, eval_data, config, description)
               for spec, (algorithm, config) in runs.items()}
    print_table(ds, results)


def print_table(ds, results) -> None:
    """Mean ± std over seeds of every metric and, for returns, in brackets the fraction of the
    data's best behaviour checkpoint (the per-task SAC experts) on the same tasks."""
    ckpts = np.asarray(ds.meta["checkpoints"])
    returns = np.asarray(ds.meta["checkpoint_returns"], np.float64)   # nan: task without it
    # each task's latest behaviour checkpoint in the data (per task when chosen by return)
    latest = np.argmax(np.where(np.isfinite(returns), ckpts[None], -1), axis=1)
    returns = returns[np.arange(len(latest)), latest]
    which = (f"checkpoint {ckpts[latest[0]]}" if np.all(latest == latest[0]) else
             "each task's latest checkpoint")
    expert = {"train": returns[~ds.is_test].mean()}
    if ds.is_test.any():
        expert["test"] = returns[ds.is_test].mean()
    columns = sorted({c for r in results.values() for c in r["metrics"]},
                     key=lambda c: (not c.startswith("test"), c))
    print(f"\n{ds.family}: return per episode, mean ± std over seeds (fraction of the SAC experts "
          f"of {which} that made the data). online: the policy infers the task "
          "from its own history (ep1 = zero-shot); offline_ctx / offpolicy_ctx: from one episode "
          "of the task's training data / held-out checkpoints' data, held fixed; dphi: ReDA's "
          "d(phi), lower is better")
    print("| algorithm | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for spec, res in results.items():
        cells = []
        for c in columns:
            m = res["metrics"].get(c)
            split = c.split("_")[0]
            cells.append("" if m is None else _fmt(m) if "dphi" in c else
                         f"{_fmt(m)} ({m['mean'] / expert[split]:.2f})")
        print(f"| {spec} | " + " | ".join(cells) + " |")
    cells = [f"{expert[c.split('_')[0]]:.2f}" if c.endswith("ep1") else "" for c in columns]
    print(f"| SAC experts (data, {which}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir)
