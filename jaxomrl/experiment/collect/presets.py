"""Collection presets per family, and the flat settings (the command line's and the recipes', in
env steps per task) that become a ``CollectConfig`` and back."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from jaxomrl import envs
from jaxomrl.experiment.collect.config import CollectConfig
from jaxomrl.learners.online_sac import OnlineSACConfig
from jaxomrl.learners.sac import SACConfig


def _conditioned(collector: str) -> bool:
    if collector not in ("per_task", "conditioned"):
        raise ValueError(f"collector must be 'per_task' or 'conditioned', got {collector!r}")
    return collector == "conditioned"


# Flat settings that configure the family (its episode length, its split's task counts).
FAMILY_SETTINGS = ("horizon", "num_train", "num_val", "num_test")


def config_from_settings(family: str, s: Dict[str, Any], **extra) -> CollectConfig:
    """A :class:`CollectConfig` from flat settings (preset keys; env-step counts per task;
    ``FAMILY_SETTINGS`` keys configure the family)."""
    num_envs = int(s["num_envs"])
    for name in ("sac_steps", "checkpoint_every_steps"):
        if s[name] % num_envs:
            raise ValueError(f"{name} ({s[name]}) must be a multiple of num_envs ({num_envs})")
    every = s["checkpoint_every_steps"]
    if s["sac_steps"] % every:
        raise ValueError(f"sac_steps ({s['sac_steps']}) must be a multiple of "
                         f"checkpoint_every_steps ({every})")
    sac = SACConfig(hidden=tuple(s["hidden"]), batch_size=int(s["batch_size"]))
    online = OnlineSACConfig(sac=sac, num_envs=num_envs, buffer_capacity=int(s["buffer_capacity"]),
                             warmup_steps=int(s["warmup_steps"]),
                             updates_per_iteration=int(s["updates_per_iteration"]),
                             train_reward=s["train_reward"],
                             conditioned=_conditioned(s.get("collector", "per_task")))
    ood = s.get("ood_checkpoints")
    # the family's episode length and task counts (family_config), unless the caller's
    configured = {k: int(s[k]) for k in FAMILY_SETTINGS if s.get(k) is not None}
    if configured:
        extra["family_config"] = tuple(sorted(
            dict(extra.get("family_config", ()), **configured).items()))
    return CollectConfig(
        family=family, online=online, num_checkpoints=s["sac_steps"] // every,
        checkpoint_interval=every // num_envs,
        train_checkpoints=tuple(int(k) for k in s["train_checkpoints"]),
        ood_checkpoints=None if not ood else tuple(int(k) for k in ood),
        transitions_per_task=int(s["transitions_per_task"]),
        ood_transitions_per_task=int(s["ood_transitions_per_task"]),
        rollout_envs=int(s["rollout_envs"]), **extra)


# Per-family collection presets, as CollectConfig values (the collect.py flags and the recipes
# override their fields through ``flat_settings`` / ``config_from_settings``, in env steps per
# task). The point robot's reward is sparse (1 within 0.2 of a goal 1 away, from a fixed start):
# SAC from scratch rarely finds it, so its collection agents learn from the dense reward
# -distance (an info key) while the datasets store the task's sparse reward. Locomotion follows
# the peer settings (256x256, lr 3e-4, batch 256). ``"*"``: every family without its own
# (its ``family`` replaced by the family asked for).
def _preset(family: str, *, hidden, batch_size, num_envs, buffer_capacity, warmup_steps,
            updates_per_iteration, train_reward, sac_steps, checkpoint_every_steps,
            train_checkpoints, transitions_per_task, ood_transitions_per_task, rollout_envs,
            ood_checkpoints=None, collector="per_task", split="train", horizon=None
            ) -> CollectConfig:
    return config_from_settings(family, dict(
        hidden=hidden, batch_size=batch_size, num_envs=num_envs,
        buffer_capacity=buffer_capacity, warmup_steps=warmup_steps,
        updates_per_iteration=updates_per_iteration, train_reward=train_reward,
        sac_steps=sac_steps, checkpoint_every_steps=checkpoint_every_steps,
        train_checkpoints=train_checkpoints, ood_checkpoints=ood_checkpoints,
        transitions_per_task=transitions_per_task,
        ood_transitions_per_task=ood_transitions_per_task, rollout_envs=rollout_envs,
        collector=collector, horizon=horizon), split=split,
        # a concrete simulator, so that building the presets asks no backend; preset() gives
        # them physics="auto"
        physics="c" if envs.has_physics(family) else "jax")


PRESETS: Dict[str, Dict[str, CollectConfig]] = {"default": {}, "cpu": {}}
PRESETS["default"]["point_robot_sparse"] = _preset(
    "point_robot_sparse", hidden=(64, 64), batch_size=128, num_envs=8, buffer_capacity=20_000,
    warmup_steps=400, updates_per_iteration=4, train_reward="dense_reward", sac_steps=24_000,
    checkpoint_every_steps=2_000, train_checkpoints=(2, 6, 12), transitions_per_task=6_000,
    ood_transitions_per_task=2_000, rollout_envs=10)
PRESETS["default"]["*"] = _preset(
    "halfcheetah_gravity", hidden=(256, 256), batch_size=256, num_envs=16,
    buffer_capacity=1_000_000, warmup_steps=5_000, updates_per_iteration=8,
    train_reward="reward", sac_steps=1_000_000, checkpoint_every_steps=20_000,
    train_checkpoints=(5, 25, 45), transitions_per_task=150_000,
    ood_checkpoints=(10, 20, 30, 40, 50), ood_transitions_per_task=50_000, rollout_envs=10)


# Sized for an hour on a 2-core CPU, where SAC updates, not environment steps, are the budget
# (benchmarks/collection_cost.py), so per-task SAC on 50 tasks gets too few updates per task; one
# agent conditioned on the target velocity serves all of them with each update: 2 envs per
# task, 50 updates per iteration (0.5 per env step), 20k env steps per task, a checkpoint every
# 1k steps per task (research/NOTES.md has the cost and the checkpoints' returns).
PRESETS["cpu"]["cheetah_vel"] = _preset(
    "cheetah_vel", split="all", collector="conditioned", hidden=(128, 128), batch_size=256,
    num_envs=2, buffer_capacity=1_000_000, warmup_steps=1_000, updates_per_iteration=50,
    train_reward="reward", sac_steps=20_000, checkpoint_every_steps=1_000,
    train_checkpoints=(1, 3, 6, 20), ood_checkpoints=(2, 4, 10, 15), transitions_per_task=8_000,
    ood_transitions_per_task=8_000, rollout_envs=10)
# ReDA's Gravity-1 task sets (gravity x{0.5, 1, 1.5} seen, x{0.8, 1.2} unseen), sized for about
# half an hour of collection on a 2-core CPU: one agent conditioned on the gravity attribute
# (five tasks share every update), 200-step episodes instead of 1,000, 50k env steps per task
# (one update per env step), 20 checkpoints. ReDA (appendix B.2) takes a one-checkpoint task
# set's training data from the middle checkpoint of its run (the 25th of 50) and the held-out
# contexts from all the others; here the 10th of 20 and the other 20 (0: untrained), 200
# episodes of the training checkpoint per task and one whole episode of each held-out
# checkpoint per environment (20 x 10 x 200 steps).
for _family in ("halfcheetah_gravity", "walker2d_gravity"):
    PRESETS["cpu"][_family] = _preset(
        _family, split="all", collector="conditioned", horizon=200, hidden=(128, 128),
        batch_size=256, num_envs=4, buffer_capacity=1_000_000, warmup_steps=1_000,
        updates_per_iteration=20, train_reward="reward", sac_steps=50_000,
        checkpoint_every_steps=2_500, train_checkpoints=(10,),
        ood_checkpoints=tuple(k for k in range(21) if k != 10), transitions_per_task=40_000,
        ood_transitions_per_task=40_000, rollout_envs=10)


def preset(family: str, name: str = "default") -> CollectConfig:
    """Preset ``name``'s ``CollectConfig`` for ``family`` (its own, else the preset's
    locomotion one, ``"*"``); ``ValueError`` if there is none."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    chosen = PRESETS[name].get(family)
    if chosen is None and "*" in PRESETS[name] and envs.has_physics(family):
        chosen = dataclasses.replace(PRESETS[name]["*"], family=family)
    if chosen is None:
        have = sorted(f for f in PRESETS[name] if f != "*")
        raise ValueError(f"preset {name!r} has no settings for {family!r} (it has {have})")
    return dataclasses.replace(chosen, physics="auto")


def flat_settings(config: CollectConfig) -> Dict[str, Any]:
    """The fields of ``config`` that ``config_from_settings`` takes, in its units (env steps
    per task): ``config_from_settings(family, flat_settings(c), ...)`` rebuilds ``c``."""
    o = config.online
    out = dict(hidden=tuple(o.sac.hidden), batch_size=o.sac.batch_size, num_envs=o.num_envs,
               buffer_capacity=o.buffer_capacity, warmup_steps=o.warmup_steps,
               updates_per_iteration=o.updates_per_iteration, train_reward=o.train_reward,
               collector="conditioned" if o.conditioned else "per_task",
               sac_steps=config.num_checkpoints * config.env_steps_per_checkpoint,
               checkpoint_every_steps=config.env_steps_per_checkpoint,
               train_checkpoints=tuple(config.train_checkpoints),
               ood_checkpoints=config.ood_checkpoints,
               transitions_per_task=config.transitions_per_task,
               ood_transitions_per_task=config.ood_transitions_per_task,
               rollout_envs=config.rollout_envs, split=config.split)
    out.update({k: v for k, v in config.family_config if k in FAMILY_SETTINGS})
    return out
