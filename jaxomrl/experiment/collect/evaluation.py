"""Every policy checkpoint of a completed collection evaluated on every task, as the collection
evaluated them."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Tuple

import numpy as np

from jaxomrl.envs.base import Task
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.collect.config import CollectConfig, CollectConfigError, select_tasks
from jaxomrl.experiment.collect.programs import evaluation_keys, programs_for, restore_state


def evaluate_checkpoints(out_dir: str, deterministic: bool) -> Tuple[np.ndarray, Task, np.ndarray]:
    """``(returns [T, K + 1], tasks, is_test)``: every policy checkpoint of the completed
    collection in ``out_dir`` evaluated on every task as the collection evaluates them (the
    first episode in each of ``rollout_envs`` environments, the same keys), with the policies'
    mode actions if ``deterministic`` else sampled ones (``deterministic`` equal to the
    collection's: ``summary.json``'s ``evaluated_returns``)."""
    with open(os.path.join(out_dir, "collect_config.json")) as f:
        config = CollectConfig.from_json(json.load(f))
    config = dataclasses.replace(config, deterministic=deterministic)
    tasks, roles = select_tasks(config)
    progs = programs_for(config)
    ckpt = Checkpointer(os.path.join(out_dir, "sac_checkpoints"))
    try:
        if ckpt.latest_step() != config.num_checkpoints:
            raise CollectConfigError(
                f"{out_dir} holds no completed collection (its last checkpoint is "
                f"{ckpt.latest_step()} of {config.num_checkpoints})")
        state = restore_state(ckpt, config.num_checkpoints, progs, config, tasks)
    finally:
        ckpt.close()
    returns = progs.evaluate(state.bank, tasks, evaluation_keys(config, tasks.num_tasks))
    return np.asarray(returns, np.float64), tasks, roles == "test"
