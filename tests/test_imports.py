"""Importing the peers' dataset layouts (jaxomrl.data.imports, experiments/import_data.py):
files written here in each layout import to exactly the transitions and episode boundaries
written, train, and malformed or mismatched input is refused with nothing written."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from jaxomrl import algos, envs
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data import imports
from jaxomrl.data.sampler import run_data
from jaxomrl.experiment.run_config import RunConfig
from jaxomrl.experiment.runner import run
from scripted_data import scripted_point_robot_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode",
          "timestep")


def _episodes(ds, task):
    """[(checkpoint, {field: array})] of one task of a jaxomrl dataset, in stream order."""
    tr = {k: v[task] for k, v in ds.transitions.items()}
    out = []
    for e in np.unique(tr["episode"]):
        sel = tr["episode"] == e
        out.append((int(tr["checkpoint"][sel][0]), {k: v[sel] for k, v in tr.items()}))
    return out


def _goal_dir(ds, task):
    a = float(ds.task_params["goal_angle"][task])
    return f"seed_0_goal_{np.cos(a).round(3)}_{np.sin(a).round(3)}"


def write_borel(ds, src, three_d):
    """BOReL / CORRO's layout of ``ds``: trajectories of 40 steps (two 20-step episodes)."""
    for t in range(ds.num_tasks):
        d = src / _goal_dir(ds, t)
        d.mkdir(parents=True)
        tr = {k: v[t] for k, v in ds.transitions.items()}
        arrays = {"obs": tr["obs"], "actions": tr["action"], "rewards": tr["reward"][:, None],
                  "next_obs": tr["next_obs"], "terminals": tr["terminated"][:, None].astype(
                      np.float32)}
        for name, x in arrays.items():
            if three_d:   # [trajectory_len, rollouts, dim]
                x = x.reshape(-1, 40, x.shape[-1]).transpose(1, 0, 2)
            np.save(d / f"{name}.npy", x)


def write_focal(ds, src, step=1000):
    """FOCAL / CSRO's layout: one pickled [steps, 4] object array per episode."""
    for t in range(ds.num_tasks):
        d = src / f"goal_idx{t}"
        d.mkdir(parents=True)
        count = {}
        for ckpt, ep in _episodes(ds, t):
            k = count[ckpt] = count.get(ckpt, -1) + 1
            rows = [[ep["obs"][i], ep["action"][i], float(ep["reward"][i]), ep["next_obs"][i]]
                    for i in range(len(ep["reward"]))]
            arr = np.empty((len(rows), 4), object)
            arr[:] = rows
            np.save(d / f"trj_evalsample{k}_step{ckpt * step}.npy", arr, allow_pickle=True)


def _assert_same(ds, imported, task_map=None, checkpoints=True, fields=FIELDS):
    task_map = range(ds.num_tasks) if task_map is None else task_map
    for i, t in enumerate(task_map):
        for k in fields + (("checkpoint",) if checkpoints else ()):
            np.testing.assert_array_equal(imported.transitions[k][i], ds.transitions[k][t],
                                          err_msg=k)


@pytest.fixture(scope="module")
def point_ds():
    return scripted_point_robot_dataset()


@pytest.mark.parametrize("three_d", [False, True])
def test_borel_layout_imports_exactly_and_recovers_goals(tmp_path, point_ds, three_d):
    write_borel(point_ds, tmp_path / "src", three_d)
    order = np.argsort([_goal_dir(point_ds, t) for t in range(point_ds.num_tasks)], kind="stable")
    train, ood = imports.import_dataset(
        "corro" if three_d else "borel", str(tmp_path / "src"), "point_robot_sparse",
        str(tmp_path / "out"), trajectory_len=None if three_d else 40,
        test_tasks=np.flatnonzero(point_ds.is_test[order]).tolist())
    assert ood is None
    _assert_same(point_ds, train, order, checkpoints=False)   # the layout has no checkpoints
    np.testing.assert_allclose(train.task_params["goal_angle"],
                               point_ds.task_params["goal_angle"][order], atol=2e-3)
    np.testing.assert_array_equal(train.is_test, point_ds.is_test[order])
    loaded, _ = dataset_lib.load_collection(str(tmp_path / "out"), "point_robot_sparse")
    _assert_same(train, loaded, checkpoints=False)
    assert loaded.meta["provenance"]["imported_from"] == ("corro" if three_d else "borel")


def test_focal_layout_splits_by_checkpoint_and_trains(tmp_path, point_ds):
    write_focal(point_ds, tmp_path / "src")
    params = {"goal_angle": point_ds.task_params["goal_angle"].tolist()}
    with pytest.raises(imports.ImportRefused, match="'goal_angle' is not in this layout"):
        imports.import_dataset("focal", str(tmp_path / "src"), "point_robot_sparse")
    train, ood = imports.import_dataset(
        "focal", str(tmp_path / "src"), "point_robot_sparse", str(tmp_path / "out"),
        task_params=params, test_tasks=np.flatnonzero(point_ds.is_test).tolist(),
        ood_checkpoints=[2000])
    assert train.meta["checkpoints"] == [1000] and ood.meta["checkpoints"] == [2000]
    for split, ckpt in ((train, 1), (ood, 2)):
        keep = point_ds.transitions["checkpoint"][0] == ckpt   # the same positions in every task
        for k in FIELDS:
            if k == "episode":
                continue   # renumbered from 0 within each split
            np.testing.assert_array_equal(split.transitions[k], point_ds.transitions[k][:, keep])
        np.testing.assert_array_equal(np.diff(split.transitions["episode"], axis=1) != 0,
                                      np.diff(point_ds.transitions["episode"][:, keep], axis=1) != 0)
    assert dataset_lib.load_collection(str(tmp_path / "out"))[1] is not None

    # The imported collection trains (BC at tiny sizes, two seeds, a few updates).
    from test_runner import TINY
    loaded, _ = dataset_lib.load_collection(str(tmp_path / "out"), "point_robot_sparse")
    family = loaded.make_family()
    data, eval_data = run_data(loaded)
    algorithm = algos.make("bc", TINY, family, int((~loaded.is_test).sum()))
    res = run(algorithm, data, eval_data, RunConfig(workdir=str(tmp_path / "w"), seeds=(0, 1),
                                                    chunk_steps=3, verbose=False), {})
    assert res["metrics"]
    for name, m in res["metrics"].items():
        assert len(m["per_seed"]) == 2 and np.all(np.isfinite(m["per_seed"])), name
    assert np.asarray(res["per_task"]["test_online"]).shape[:2] == (2, int(loaded.is_test.sum()))


def _stream(rng, lengths, obs_dim, act_dim, start=0.0):
    """A stream of continuous episodes (next_obs of a step = obs of the next)."""
    obs, nxt, act = [], [], []
    for n in lengths:
        o = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
        o[:, 0] += start
        obs.append(o[:-1]); nxt.append(o[1:])
        act.append(rng.uniform(-1, 1, (n, act_dim)).astype(np.float32))
    return np.concatenate(obs), np.concatenate(act), np.concatenate(nxt)


def write_reda(src, rng, lengths, terminal_at, obs_dim=11, act_dim=3, start=1.25,
               factors=(0.5, 0.8, 1.0, 1.2, 1.5), checkpoints=(0, 1, 2)):
    """ReDA's layout: per factor and checkpoint a dict of D4RL arrays; every episode's last step
    flagged terminal (time limit too, as ReDA's collector does), except where ``terminal_at``
    says the stream was cut."""
    for f in factors:
        d = src / f"sac_Hopper-v2_grav_{f}"
        d.mkdir(parents=True)
        for k in checkpoints:
            obs, act, nxt = _stream(rng, lengths[(f, k)], obs_dim, act_dim, start)
            term = np.zeros((len(obs), 1), bool)
            term[np.cumsum(lengths[(f, k)]) - 1] = True
            np.save(d / f"data_{k}.npy", {"observations": obs, "actions": act,
                                          "next_observations": nxt,
                                          "rewards": rng.normal(size=(len(obs), 1)),
                                          "terminals": term}, allow_pickle=True)


def test_reda_layout_episode_ends_gym_heights_and_equal_sizes(tmp_path):
    rng = np.random.default_rng(0)
    horizon = 10
    # Per (factor, checkpoint): episode lengths; 10 = the time limit, shorter = a fall.
    lengths = {(f, k): [10, 4, 10, 6] if k == 0 else [10, 10] for f in (0.5, 0.8, 1.0, 1.2, 1.5)
               for k in (0, 1, 2)}
    lengths[(1.5, 0)] = [10, 3, 10, 7]
    write_reda(tmp_path / "src", rng, lengths, None)
    kw = dict(family_config={"horizon": horizon}, ood_checkpoints=[1, 2])
    with pytest.raises(imports.ImportRefused, match="obs_convention=gym"):
        imports.import_dataset("reda", str(tmp_path / "src"), "hopper_gravity", **kw)
    train, ood = imports.import_dataset("reda", str(tmp_path / "src"), "hopper_gravity",
                                        obs_convention="gym", **kw)
    np.testing.assert_allclose(train.task_params["gravity_scale"], [0.5, 0.8, 1.0, 1.2, 1.5])
    # The unseen tasks are recovered from the family's fixed split (ReDA's x0.8 / x1.2).
    np.testing.assert_array_equal(train.is_test, [False, True, False, True, False])
    assert train.meta["checkpoints"] == [0] and ood.meta["checkpoints"] == [1, 2]
    assert train.transitions_per_task == 30 and ood.transitions_per_task == 40
    tr = train.transitions
    ends = np.flatnonzero(tr["terminated"][0] | tr["truncated"][0])
    np.testing.assert_array_equal(ends, [9, 13, 23, 29])
    np.testing.assert_array_equal(tr["terminated"][0][ends], [False, True, False, True])
    np.testing.assert_array_equal(tr["timestep"][0][:14], list(range(10)) + list(range(4)))
    raw = np.load(tmp_path / "src" / "sac_Hopper-v2_grav_0.5" / "data_0.npy",
                  allow_pickle=True).item()
    np.testing.assert_allclose(tr["obs"][0][:, 0], raw["observations"][:, 0] - 1.25, atol=1e-6)
    np.testing.assert_array_equal(tr["obs"][0][:, 1:], raw["observations"][:, 1:])
    np.testing.assert_array_equal(tr["reward"][0], raw["rewards"][:, 0].astype(np.float32))

    # Unequal tasks: refused, or cut to the smallest on request.
    lengths[(1.0, 0)] = [10, 4, 10, 6, 5]
    write_reda(tmp_path / "src2", rng, lengths, None)
    with pytest.raises(imports.ImportRefused, match="sac_Hopper-v2_grav_1.0: 35.*--truncate"):
        imports.import_dataset("reda", str(tmp_path / "src2"), "hopper_gravity",
                               obs_convention="gym", **kw)
    train, _ = imports.import_dataset("reda", str(tmp_path / "src2"), "hopper_gravity",
                                      obs_convention="gym", truncate=True, **kw)
    assert train.transitions_per_task == 30

    # Episodes that run past the family's horizon are not cut silently.
    with pytest.raises(imports.ImportRefused, match="runs on past the horizon of 5"):
        imports.import_dataset("reda", str(tmp_path / "src"), "hopper_gravity",
                               obs_convention="gym", family_config={"horizon": 5},
                               ood_checkpoints=[1, 2])


def test_prompt_dt_layout_with_task_configs(tmp_path):
    rng = np.random.default_rng(1)
    src, cfg = tmp_path / "src", tmp_path / "config"
    src.mkdir(); cfg.mkdir()
    velocities = [0.5, 1.25, 2.0]
    written = {}
    for i, v in enumerate(velocities):
        for name, n_traj in ((f"cheetah_vel-{i}-expert.pkl", 3),
                             (f"cheetah_vel-{i}-prompt-expert.pkl", 1)):
            trajs = []
            for _ in range(n_traj):
                obs, act, nxt = _stream(rng, [8], 17, 6)
                trajs.append({"observations": obs, "actions": act, "next_observations": nxt,
                              "rewards": rng.normal(size=8), "dones": np.zeros(8, bool)})
            written[name] = trajs
            with open(src / name, "wb") as f:
                pickle.dump(trajs, f)
        with open(cfg / f"config_cheetah_vel_task{i}.pkl", "wb") as f:
            pickle.dump([{"velocity": v}], f)
    with pytest.raises(imports.ImportRefused, match="pass --mode .*expert"):
        imports.import_dataset("prompt_dt", str(src), "cheetah_vel")
    train, ood = imports.import_dataset(
        "prompt_dt", str(src), "cheetah_vel", str(tmp_path / "out"), mode="expert",
        task_config_dir=str(cfg), family_config={"horizon": 8}, ood_checkpoints=[1],
        test_tasks=[2])
    np.testing.assert_allclose(train.task_params["target_velocity"], velocities)
    assert train.transitions_per_task == 24 and ood.transitions_per_task == 8
    np.testing.assert_array_equal(train.transitions["obs"][1][8:16],
                                  written["cheetah_vel-1-expert.pkl"][1]["observations"])
    np.testing.assert_array_equal(ood.transitions["action"][2],
                                  written["cheetah_vel-2-prompt-expert.pkl"][0]["actions"])
    assert train.transitions["truncated"][0].sum() == 3 and not train.transitions[
        "terminated"].any()
    np.testing.assert_array_equal(train.is_test, [False, False, True])


def test_gym_observation_conventions():
    ant = envs.make("ant_gravity")
    gym_obs = np.random.default_rng(0).normal(size=(5, 111)).astype(np.float32)
    np.testing.assert_array_equal(ant.from_gym_obs(gym_obs), gym_obs[:, :27])
    with pytest.raises(ValueError, match="111"):
        ant.from_gym_obs(gym_obs[:, :50])
    hopper = envs.make("hopper_gravity")
    assert hopper.z_offset == pytest.approx(1.25)
    obs = np.ones((2, 11), np.float32)
    mapped = hopper.from_gym_obs(obs)
    np.testing.assert_allclose(mapped[:, 0], -0.25)
    np.testing.assert_array_equal(mapped[:, 1:], obs[:, 1:])
    cheetah = envs.make("halfcheetah_gravity")
    np.testing.assert_array_equal(cheetah.from_gym_obs(np.ones((1, 17))), np.ones((1, 17)))
    pearl = np.arange(20, dtype=np.float32)[None]   # + the torso's centre of mass
    np.testing.assert_array_equal(cheetah.from_gym_obs(pearl), pearl[:, :17])


def test_malformed_mixed_and_mismatched_input_is_refused_and_nothing_written(tmp_path, point_ds,
                                                                            monkeypatch):
    out = tmp_path / "out"
    write_borel(point_ds, tmp_path / "b", True)
    first = sorted(os.listdir(tmp_path / "b"))[0]

    def refused(fmt, src, match, family="point_robot_sparse", **kw):
        with pytest.raises(imports.ImportRefused, match=match):
            imports.import_dataset(fmt, str(src), family, str(out), **kw)
        assert not out.exists()
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".import-")]

    refused("borel", tmp_path / "b", "cheetah_vel's goal is one target velocity",
            family="cheetah_vel")
    refused("borel", tmp_path / "b", "task_params 'goal_angle' has 3 values",
            task_params={"goal_angle": [0.1, 0.2, 0.3]})
    refused("borel", tmp_path / "b", "test_tasks \\[99\\]", test_tasks=[99])
    refused("borel", tmp_path / "b", "ood_checkpoints \\[5\\] not in the data",
            ood_checkpoints=[5])
    os.remove(tmp_path / "b" / first / "next_obs.npy")
    refused("borel", tmp_path / "b", "missing next_obs.npy")

    write_borel(point_ds, tmp_path / "flat", False)
    refused("borel", tmp_path / "flat", "need --trajectory_len")
    refused("borel", tmp_path / "flat", "not whole trajectories of 30", trajectory_len=30)
    refused("borel", tmp_path / "flat", "next_obs is not step",   # episodes of 40 where 20
            trajectory_len=40, family_config={"horizon": 40})
    # A goal on another circle than the family's.
    os.rename(tmp_path / "flat" / sorted(os.listdir(tmp_path / "flat"))[0],
              tmp_path / "flat" / "seed_0_goal_2.0_0.0")
    refused("borel", tmp_path / "flat", "2.000 from the start", trajectory_len=40)

    write_focal(point_ds, tmp_path / "f")
    params = {"goal_angle": point_ds.task_params["goal_angle"].tolist()}
    refused("focal", tmp_path / "f", "actions have 2 entries, cheetah_vel's 6: data of another",
            family="cheetah_vel", task_params={"target_velocity": [1.0] * 16})
    np.savez(tmp_path / "f" / "normalizer.npz", abs_max=np.ones(2))
    refused("focal", tmp_path / "f", "--normalizer=raw or --normalizer=divided",
            task_params=params)
    os.remove(tmp_path / "f" / "normalizer.npz")
    src = tmp_path / "f" / "goal_idx0"
    arr = np.load(src / "trj_evalsample0_step1000.npy", allow_pickle=True)
    np.save(src / "trj_eval0_step1000.npy", arr, allow_pickle=True)
    refused("focal", tmp_path / "f", "both trj_eval .* and trj_evalsample", task_params=params)
    os.remove(src / "trj_eval0_step1000.npy")
    np.save(src / "trj_evalsample9_step1000.npy", arr[:, :3], allow_pickle=True)
    refused("focal", tmp_path / "f", "expected \\[steps, 4\\]", task_params=params)
    os.remove(src / "trj_evalsample9_step1000.npy")
    big = arr.copy()
    big[:, 1] = [a * 50 for a in big[:, 1]]
    np.save(src / "trj_evalsample0_step1000.npy", big, allow_pickle=True)
    refused("focal", tmp_path / "f", "actions outside", task_params=params)
    np.save(src / "trj_evalsample0_step1000.npy", arr, allow_pickle=True)

    # A crash while writing (here: the second file) leaves no collection and no temporary files.
    real_save = imports.save

    def crash_on_ood(ds, path):
        if path.endswith("ood.npz"):
            raise OSError("disk full")
        return real_save(ds, path)
    monkeypatch.setattr(imports, "save", crash_on_ood)
    with pytest.raises(OSError):
        imports.import_dataset("focal", str(tmp_path / "f"), "point_robot_sparse", str(out),
                               task_params=params, ood_checkpoints=[2000])
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".import-")]
    monkeypatch.undo()

    # An existing output is not replaced without --overwrite.
    imports.import_dataset("focal", str(tmp_path / "f"), "point_robot_sparse", str(out),
                           task_params=params)
    with pytest.raises(imports.ImportRefused, match="exists"):
        imports.import_dataset("focal", str(tmp_path / "f"), "point_robot_sparse", str(out),
                               task_params=params)
    imports.import_dataset("focal", str(tmp_path / "f"), "point_robot_sparse", str(out),
                           task_params=params, ood_checkpoints=[2000], overwrite=True)
    assert os.path.exists(out / "ood.npz")


def test_import_cli(tmp_path, point_ds):
    write_borel(point_ds, tmp_path / "src", True)

    def cli(*args):
        return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "import_data.py"),
                               *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    base = ["--format=borel", f"--src={tmp_path / 'src'}", f"--out={tmp_path / 'out'}"]
    proc = cli(*base, "--family=hopper_gravity")
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    proc = cli(*base, "--family=point_robot_sparse", "--test_tasks=0,1")
    assert proc.returncode == 0, proc.stderr
    assert "16 tasks x 320 transitions" in proc.stdout and "(test)" in proc.stdout
    ds, _ = dataset_lib.load_collection(str(tmp_path / "out"), "point_robot_sparse")
    np.testing.assert_array_equal(ds.is_test, np.arange(16) < 2)


# ----------------------------------------------------------------------------- Minari

def test_minari_round_trip_is_exact_through_the_command_lines(tmp_path, point_ds):
    dataset_lib.save(point_ds, str(tmp_path / "col" / "train.npz"))
    ood = point_ds.select_tasks(np.arange(point_ds.num_tasks))   # a second split, relabelled
    ood.meta["split"] = "ood"
    dataset_lib.save(ood, str(tmp_path / "col" / "ood.npz"))

    def cli(script, *args):
        return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=300,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    proc = cli("export_data.py", f"--data={tmp_path / 'col'}", f"--out={tmp_path / 'minari'}",
               "--namespace=jaxomrl-test")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 32 Minari datasets" in proc.stdout
    proc = cli("export_data.py", f"--data={tmp_path / 'col'}", f"--out={tmp_path / 'minari'}",
               "--namespace=jaxomrl-test")
    assert proc.returncode == 1 and "exist; choose another namespace" in proc.stderr
    proc = cli("import_data.py", "--format=minari", f"--src={tmp_path / 'minari'}",
               "--namespace=jaxomrl-test", "--family=point_robot_sparse",
               f"--out={tmp_path / 'back'}")
    assert proc.returncode == 0, proc.stderr
    a_train, a_ood = dataset_lib.load_collection(str(tmp_path / "col"))
    b_train, b_ood = dataset_lib.load_collection(str(tmp_path / "back"))
    for a, b in ((a_train, b_train), (a_ood, b_ood)):
        assert dataset_lib.digest(a) == dataset_lib.digest(b)   # every array, bit for bit
        assert a.meta == b.meta


class _PointRobotGym:
    """The sparse point robot as a Gymnasium environment (for Minari's own DataCollector)."""

    def __new__(cls, goal_angle):
        import gymnasium as gym

        class Env(gym.Env):
            observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
            action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self.pos = np.zeros(2, np.float32)
                return self.pos.copy(), {}

            def step(self, action):
                self.pos = (self.pos + np.clip(action, -0.1, 0.1)).astype(np.float32)
                goal = np.array([np.cos(goal_angle), np.sin(goal_angle)])
                reward = float(np.linalg.norm(self.pos - goal) <= 0.2)
                return self.pos.copy(), reward, False, False, {}
        return gym.wrappers.TimeLimit(Env(), 20)


def test_minari_dataset_written_by_minaris_own_api_imports(tmp_path):
    import minari
    from jaxomrl.data import minari_io
    angles = [0.5, 1.5, 2.5]
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path / "minari")
    try:
        ids = []
        for i, a in enumerate(angles):
            env = minari.DataCollector(_PointRobotGym(a))
            env.reset(seed=i)
            for _ in range(3 * 20):
                _, _, term, trunc, _ = env.step(env.action_space.sample())
                if term or trunc:
                    env.reset()
            ids.append(f"others/pointrobot/train-task{i:03d}-v0")
            env.create_dataset(ids[-1], algorithm_name="random")
        written = [list(minari.load_dataset(i).iterate_episodes()) for i in ids]
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    family = envs.make("point_robot_sparse")
    with pytest.raises(imports.ImportRefused, match="'goal_angle' is not in this layout"):
        minari_io.import_foreign(ids, family, root=str(tmp_path / "minari"))
    with pytest.raises(dataset_lib.DatasetError, match="no jaxomrl multi-task metadata"):
        minari_io.import_("others", "pointrobot", "train", str(tmp_path / "minari"))
    train, ood = minari_io.import_foreign(ids, family, root=str(tmp_path / "minari"),
                                          task_params={"goal_angle": angles}, test_tasks=[2])
    assert ood is None and train.transitions_per_task == 60
    np.testing.assert_allclose(train.task_params["goal_angle"], angles)
    for t, episodes in enumerate(written):
        obs = np.concatenate([ep.observations[:-1] for ep in episodes])
        np.testing.assert_array_equal(train.transitions["obs"][t], obs)
        np.testing.assert_array_equal(train.transitions["action"][t],
                                      np.concatenate([ep.actions for ep in episodes]))
        assert train.transitions["truncated"][t].sum() == 3
