"""Offline multi-task data collection: per-task SAC, policy checkpoints, datasets on disk.

Pipeline (``collect(config, out_dir)``):

1. Tasks: the family's fixed train / test split (``config.split``), first ``num_tasks`` of it.
2. SAC on every task in one jitted program (``vmap`` over tasks; see
   ``jaxomrl.learners.online_sac``) -- the papers' protocol -- or, with
   ``OnlineSACConfig(conditioned=True)`` (``--collector=conditioned``), one SAC agent for all
   tasks that sees each task's attributes beside the observation and trains on every task's
   environments at once (its checkpoints, conditioned on a task, are that task's behaviour
   policies). Training runs in ``num_checkpoints`` chunks of
   ``checkpoint_interval`` iterations. Policy checkpoint ``k`` is the actor after ``k`` chunks
   (``k = 0`` is the untrained initial policy); all of them are kept in a parameter bank inside
   the training state. After every chunk the whole state (agents, replay buffers, environments,
   PRNG keys, bank, learning curve) is saved with orbax, so a killed collection resumes from the
   last complete chunk and produces the same datasets as an uninterrupted one.
3. Data: every selected checkpoint is rolled out in ``rollout_envs`` parallel environments of its
   task (stochastic actions unless ``deterministic``), all tasks x checkpoints in one program.
   ``train.npz`` holds ``transitions_per_task`` transitions per task split evenly over
   ``train_checkpoints``; ``ood.npz`` (if ``ood_transitions_per_task > 0``) the same from the
   held-out ``ood_checkpoints`` (default: all others) -- ReDA's out-of-distribution split.
   Both are written atomically in the format of ``jaxomrl.data.dataset``.
   Alternatively ``train_returns`` / ``ood_returns`` pick, per task, the checkpoint whose
   evaluated return (one episode in each of ``rollout_envs`` environments) is nearest a target
   return of that task -- ReDA's didactic design, where task 1's data come from a return-100
   policy and task 2's from a return-50 one, so behaviour and task are spuriously correlated.

After training every checkpoint is evaluated on every task (one episode in each of
``rollout_envs`` environments): ``summary.json`` holds that ``[T, K + 1]`` return matrix (the
tasks' learning curves) and each task's best checkpoint.

``out_dir`` also gets ``collect_config.json`` (a directory belongs to one configuration),
``progress.csv`` (per-chunk mean training return of every task) and ``summary.json``.

Modules: ``config`` (``CollectConfig``, the tasks), ``presets`` (per-family presets and the flat
settings of flags and recipes), ``programs`` (the jitted programs, the resumable state, non-finite
diagnosis), ``store`` (the directory: configuration file, progress, summary, a completed
collection read back), ``evaluation`` (a completed collection's checkpoints evaluated again),
``pipeline`` (``collect``).
"""
from jaxomrl.experiment.collect.config import (SPLITS, CollectConfig, CollectConfigError,
                                               select_tasks)
from jaxomrl.experiment.collect.evaluation import evaluate_checkpoints
from jaxomrl.experiment.collect.pipeline import collect
from jaxomrl.experiment.collect.presets import (FAMILY_SETTINGS, PRESETS, config_from_settings,
                                                flat_settings, preset)
from jaxomrl.experiment.collect.store import CollectResult

__all__ = ["SPLITS", "CollectConfig", "CollectConfigError", "select_tasks", "evaluate_checkpoints",
           "collect", "FAMILY_SETTINGS", "PRESETS", "config_from_settings", "flat_settings",
           "preset", "CollectResult"]
