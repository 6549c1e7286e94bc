"""Data collection end to end on the point robot: SAC learns, data spans returns, resume is exact."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from jaxomrl.experiment import collect as C
from jaxomrl.data import dataset as ds_lib
from jaxomrl.learners.online_sac import OnlineSACConfig
from jaxomrl.learners.sac import SACConfig

CONFIG = C.CollectConfig(
    family="point_robot_sparse", num_tasks=3,
    online=OnlineSACConfig(sac=SACConfig(hidden=(32, 32), batch_size=64), num_envs=8,
                           buffer_capacity=8_000, warmup_steps=400, updates_per_iteration=4,
                           train_reward="dense_reward"),
    num_checkpoints=6, checkpoint_interval=200, train_checkpoints=(1, 6),
    transitions_per_task=800, ood_transitions_per_task=1000, rollout_envs=10)


def _quiet(msg):
    del msg


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    return out, C.collect(CONFIG, out, log=_quiet)


def test_sac_learns_and_data_spans_low_to_high_return(uninterrupted):
    out, result = uninterrupted
    train = ds_lib.load(result.train_path, family="point_robot_sparse")
    ood = ds_lib.load(result.ood_path)
    assert train.num_tasks == 3 and train.transitions_per_task == 800
    assert ood.meta["checkpoints"] == [0, 2, 3, 4, 5] and ood.meta["split"] == "ood"
    r = np.asarray(train.meta["checkpoint_returns"], float)  # [task, (ckpt 1, ckpt 6)]
    # first checkpoint: barely reaches the goal; last: every task's policy reaches its own goal
    assert np.all(r[:, 0] < 1.0), r
    assert np.all(r[:, 1] > 4.0), r
    final = train.transitions["checkpoint"] == 6
    ep = train.transitions["episode"]
    for t in range(3):
        rewards = np.bincount(ep[t][final[t]], weights=train.transitions["reward"][t][final[t]])
        assert np.mean(rewards[np.unique(ep[t][final[t]])] > 0) > 0.8
    # the data were collected in the tasks recorded in the file
    tasks = train.tasks()
    assert tasks.num_tasks == 3 and not train.is_test.any()
    curve = [x for x in json.load(open(os.path.join(out, "summary.json")))[
        "training_curve_mean_return"]]
    assert curve[-1] > curve[0] + 3.0
    progress = open(os.path.join(out, "progress.csv")).read().splitlines()
    assert len(progress) == 1 + CONFIG.num_checkpoints


def test_checkpoints_evaluated_again_as_the_collection_did_and_with_mode_actions(uninterrupted):
    out, result = uninterrupted
    sampled, tasks, is_test = C.evaluate_checkpoints(out, deterministic=False)
    assert sampled.shape == (3, CONFIG.num_checkpoints + 1) and tasks.num_tasks == 3
    np.testing.assert_allclose(sampled, result.summary["evaluated_returns"], rtol=1e-5)
    mode, _, _ = C.evaluate_checkpoints(out, deterministic=True)
    assert np.all(np.isfinite(mode)) and not np.allclose(mode, sampled)


def test_killed_and_resumed_collection_gives_the_same_datasets(uninterrupted, tmp_path):
    _, full = uninterrupted
    out = str(tmp_path / "resumed")
    assert C.collect(CONFIG, out, log=_quiet, stop_after_chunks=2) is None
    assert not os.path.exists(os.path.join(out, "train.npz"))
    with pytest.raises(C.CollectConfigError, match="no completed collection.*2 of 6"):
        C.evaluate_checkpoints(out, deterministic=True)
    logs = []
    resumed = C.collect(CONFIG, out, log=logs.append)
    assert any("resumed" in m and "checkpoint 2/6" in m for m in logs), logs
    for a, b in ((full.train_path, resumed.train_path), (full.ood_path, resumed.ood_path)):
        assert open(a, "rb").read() == open(b, "rb").read()
    # a finished directory is reused, and one collection's directory refuses another config
    logs.clear()
    C.collect(CONFIG, out, log=logs.append)
    assert any("already complete" in m for m in logs)
    with pytest.raises(ValueError, match="different configuration.*seed"):
        C.collect(dataclasses.replace(CONFIG, seed=1), out, log=_quiet)


def test_one_conditioned_agent_learns_every_task_from_its_attributes(tmp_path):
    """The conditioned collector: one SAC agent for all tasks, told each task's goal angle,
    reaches every task's own goal; its checkpoints are evaluated on every task (summary)."""
    online = dataclasses.replace(CONFIG.online, conditioned=True, updates_per_iteration=8)
    config = dataclasses.replace(CONFIG, online=online, ood_transitions_per_task=0)
    result = C.collect(config, str(tmp_path), log=_quiet)
    s = result.summary
    returns = np.asarray(s["evaluated_returns"])                       # [3 tasks, 7 checkpoints]
    assert returns.shape == (3, 7) and s["collector"] == "conditioned"
    assert np.all(returns[:, 0] < 1.0) and np.all(returns[:, -1] > 4.0), returns
    train = ds_lib.load(result.train_path)
    r = np.asarray(train.meta["checkpoint_returns"], float)            # [task, (ckpt 1, 6)]
    assert np.all(r[:, 1] > 4.0), r
    # the goals differ (angles spread over the semicircle), so one unconditioned policy could
    # not reach them all: the last checkpoint's final positions differ by task
    final = train.transitions["checkpoint"] == 6
    ends = [train.transitions["next_obs"][t][final[t] & (train.transitions["timestep"][t] == 19)]
            for t in range(3)]
    goals = np.stack([np.cos(train.task_params["goal_angle"]),
                      np.sin(train.task_params["goal_angle"])], -1)
    for t in range(3):
        assert np.linalg.norm(ends[t].mean(0) - goals[t]) < 0.3, (ends[t].mean(0), goals)


def test_checkpoints_chosen_per_task_by_target_return(uninterrupted, tmp_path):
    """ReDA's didactic design: each task's data from its checkpoint nearest a per-task target
    return (the trained SAC checkpoints of the fixture are reused, not retrained)."""
    src, full = uninterrupted
    out = str(tmp_path / "targets")
    os.makedirs(out)
    shutil.copytree(os.path.join(src, "sac_checkpoints"), os.path.join(out, "sac_checkpoints"))
    config = dataclasses.replace(CONFIG, train_returns=(10.0, 0.0, 4.0),
                                 ood_returns=(10.0, 10.0, 0.0), transitions_per_task=400,
                                 ood_transitions_per_task=200)
    logs = []
    result = C.collect(config, out, log=logs.append)
    assert not any("SAC on" in m for m in logs)        # resumed at the last SAC checkpoint
    train, ood = ds_lib.load(result.train_path), ds_lib.load(result.ood_path)
    sel = train.meta["provenance"]["checkpoint_selection"]
    evaluated = np.asarray(sel["evaluated_returns"])   # [tasks, checkpoints 0..6]
    assert evaluated.shape == (3, 7)
    assert evaluated[:, -1].min() > evaluated[:, 0].max() + 2.0   # trained >> untrained
    ckpt_train = np.argmin(np.abs(evaluated - np.array([[10.0], [0.0], [4.0]])), axis=1)
    masked = np.where(np.arange(7) == ckpt_train[:, None], np.inf,
                      np.abs(evaluated - np.array([[10.0], [10.0], [0.0]])))
    ckpt_ood = np.argmin(masked, axis=1)
    for t in range(3):
        assert set(train.transitions["checkpoint"][t]) == {ckpt_train[t]}
        assert set(ood.transitions["checkpoint"][t]) == {ckpt_ood[t]}
    assert ckpt_ood[0] != ckpt_train[0]                # same target, other checkpoint
    assert sorted(train.meta["checkpoints"]) == sorted(set(ckpt_train.tolist()))
    # the returns follow the targets: task 0's data (target 10) beat task 1's (target 0)
    r = np.asarray(train.meta["checkpoint_returns"], float)       # nan: task without it
    per_task = np.nanmean(r, axis=1)
    assert per_task[0] > per_task[1] + 2.0, r
    assert np.sum(np.isfinite(r)) == 3                 # one checkpoint per task
    with pytest.raises(ValueError, match="1 or 3"):
        dataclasses.replace(config, train_returns=(1.0, 2.0)).checkpoint_ids(evaluated, 3)


@pytest.mark.parametrize("change,match", [
    (dict(train_checkpoints=(7,)), r"outside 0..6"),
    (dict(train_checkpoints=(1, 1)), "duplicates"),
    (dict(transitions_per_task=805), "multiple of"),
    (dict(ood_checkpoints=(1,)), "both train and ood"),
    (dict(split="valid"), "split must be"),
    (dict(ood_returns=(1.0,)), "ood_returns needs train_returns"),
    (dict(train_returns=(1.0,)), "give ood_returns too"),
    (dict(train_returns=(float("nan"),), ood_transitions_per_task=0), "finite"),
])
def test_config_errors(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(CONFIG, **change)


@pytest.mark.parametrize("family,name", [("point_robot_sparse", "default"),
                                         ("cheetah_vel", "default"), ("hopper_gravity", "default"),
                                         ("cheetah_vel", "cpu"), ("halfcheetah_gravity", "cpu"),
                                         ("walker2d_gravity", "cpu")])
def test_presets_are_valid_configs(family, name):
    cfg = C.preset(family, name)
    assert C.config_from_settings(family, C.flat_settings(cfg), split=cfg.split) == cfg
    assert max(cfg.train_checkpoints) <= cfg.num_checkpoints
    assert cfg.online.conditioned == (name == "cpu")
    if family.endswith("_gravity") and name == "cpu":   # Gravity-1: one checkpoint, the rest out
        assert cfg.train_checkpoints == (10,) and len(cfg.ood_ids) == cfg.num_checkpoints
        assert dict(cfg.family_config) == {"horizon": 200} and cfg.make_family().horizon == 200
        # every held-out checkpoint rolls out whole episodes in every environment
        per_env = cfg.ood_transitions_per_task // (len(cfg.ood_ids) * cfg.rollout_envs)
        assert per_env == 200
        # a horizon in the settings (collect.py: --horizon) replaces the preset's
        short = C.config_from_settings(family, dict(C.flat_settings(cfg), horizon=20))
        assert dict(short.family_config) == {"horizon": 20}
    with pytest.raises(ValueError, match="unknown preset"):
        C.preset(family, "gpu")
    with pytest.raises(ValueError, match="no settings for 'hopper_gravity'"):
        C.preset("hopper_gravity", "cpu")


def test_settings_errors():
    s = C.flat_settings(C.preset("point_robot_sparse"))
    with pytest.raises(ValueError, match="multiple of num_envs"):
        C.config_from_settings("point_robot_sparse", dict(s, sac_steps=1001))
    cfg = C.config_from_settings("point_robot_sparse", s, num_tasks=5)
    assert cfg.num_checkpoints == 12 and cfg.checkpoint_interval == 250
    assert C.CollectConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ValueError, match="num_tasks=50 but"):
        C.select_tasks(dataclasses.replace(cfg, num_tasks=50))


def test_collected_datasets_round_trip_through_minari_exactly(uninterrupted, tmp_path):
    """jaxomrl -> Minari (one dataset per task and split) -> jaxomrl, bit for bit."""
    from jaxomrl.data import minari_io
    out, _ = uninterrupted
    ids = minari_io.export_collection(out, "jaxomrl-collected", str(tmp_path / "minari"))
    assert len(ids) == 6
    train, ood = minari_io.import_collection("jaxomrl-collected", "point_robot_sparse",
                                             str(tmp_path / "back"), root=str(tmp_path / "minari"))
    for name in ("train", "ood"):
        a = ds_lib.load(os.path.join(out, f"{name}.npz"))
        b = ds_lib.load(str(tmp_path / "back" / f"{name}.npz"))
        assert ds_lib.digest(a) == ds_lib.digest(b) and a.meta == b.meta
