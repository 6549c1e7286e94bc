"""Dataset format (round trip, atomic writes, validation), samplers and the replay buffer."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl import data as data_lib
from jaxomrl.data import dataset as ds_lib
from jaxomrl.data.dataset import episode_index
from jaxomrl.data.sampler import (sample_episodes, sample_task_subset, sample_transitions,
                                  sample_where, sample_windows, take)

T, N = 3, 60


def make_dataset(seed=0, num_tasks=T, n=N, episode_len=7):
    """A point-robot dataset whose obs encode (task, position) so samples can be traced back."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    obs = np.stack([np.broadcast_to(np.arange(num_tasks)[:, None], (num_tasks, n)),
                    np.broadcast_to(idx, (num_tasks, n))], -1).astype(np.float32)
    done = (idx % episode_len) == episode_len - 1
    episode, timestep = episode_index(np.broadcast_to(done, (num_tasks, n)).copy(), n)
    tr = {"obs": obs, "action": rng.uniform(-0.1, 0.1, (num_tasks, n, 2)).astype(np.float32),
          "reward": rng.random((num_tasks, n)).astype(np.float32), "next_obs": obs + 0.5,
          "terminated": np.zeros((num_tasks, n), bool),
          "truncated": np.broadcast_to(done, (num_tasks, n)).copy(), "episode": episode,
          "timestep": timestep, "checkpoint": np.full((num_tasks, n), 3, np.int32)}
    angles = rng.uniform(0, np.pi, num_tasks).astype(np.float32)
    meta = {"family": "point_robot_sparse", "family_config": {}, "obs_dim": 2, "action_dim": 2,
            "attr_dim": 1, "action_low": -0.1, "action_high": 0.1, "num_tasks": num_tasks,
            "transitions_per_task": n, "checkpoints": [3], "checkpoint_env_steps": 100,
            "checkpoint_returns": [[1.0]] * num_tasks, "split": "train",
            "provenance": {"test": True}}
    return ds_lib.MultiTaskDataset(transitions=tr, attributes=angles[:, None],
                                   is_test=np.zeros(num_tasks, bool),
                                   task_params={"goal_angle": angles}, meta=meta)


def test_round_trip_is_bit_exact_and_reproducible(tmp_path):
    ds = make_dataset()
    p1 = ds_lib.save(ds, str(tmp_path / "a.npz"))
    p2 = ds_lib.save(ds, str(tmp_path / "b"))
    assert p2.endswith(".npz")
    assert open(p1, "rb").read() == open(p2, "rb").read()  # no timestamps: same bytes
    back = ds_lib.load(p1, family="point_robot_sparse")
    for k, v in ds.arrays().items():
        got = back.arrays()[k]
        assert got.dtype == v.dtype and got.shape == v.shape
        assert got.tobytes() == v.tobytes(), k
    assert back.meta["provenance"] == {"test": True} and back.meta["version"] == ds_lib.VERSION
    tasks = back.tasks()
    np.testing.assert_array_equal(tasks.params["goal_angle"], ds.task_params["goal_angle"])
    sub = back.select_tasks([2, 0])
    np.testing.assert_array_equal(sub.transitions["obs"][0], ds.transitions["obs"][2])


def _expect(path, match):
    with pytest.raises(ds_lib.DatasetError, match=match):
        ds_lib.load(str(path))


def test_corrupted_truncated_and_mismatched_files(tmp_path):
    good = ds_lib.save(make_dataset(), str(tmp_path / "good.npz"))
    raw = open(good, "rb").read()
    # truncated
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    _expect(tmp_path / "trunc.npz", "unreadable dataset file")
    # flipped bytes inside an array payload
    bad = bytearray(raw)
    pos = raw.index(b"\x93NUMPY", raw.index(b"reward.npy")) + 200
    bad[pos] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(bad))
    _expect(tmp_path / "flip.npz", "corrupted|checksum")
    # not a dataset at all
    (tmp_path / "junk.npz").write_bytes(b"hello")
    _expect(tmp_path / "junk.npz", "unreadable")
    # another family
    with pytest.raises(ds_lib.DatasetError, match="family 'point_robot_sparse', expected 'cheetah_vel'"):
        ds_lib.load(good, family="cheetah_vel")
    with pytest.raises(FileNotFoundError, match="no dataset"):
        ds_lib.load(str(tmp_path / "missing.npz"))


def _rewrite(path, out, edit):
    """Re-packs a saved file after ``edit(arrays, meta)`` (bypassing save's validation)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    edit(arrays, meta)
    blob = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(out, "wb") as f:
        ds_lib._write_npz(f, {"meta.json": blob, **arrays})


@pytest.mark.parametrize("edit,match", [
    (lambda a, m: m.update(version=99), "version 99 is not supported"),
    (lambda a, m: m.update(format="other"), "not a jaxomrl multi-task dataset"),
    (lambda a, m: a.update(reward=a["reward"].astype(np.float64)), "'reward' has dtype float64"),
    (lambda a, m: a.update(obs=a["obs"][:, :-1]), r"'obs' has shape \[3, 59, 2\]"),
    (lambda a, m: a.pop("terminated"), "missing arrays"),
    (lambda a, m: a["obs"].__setitem__((1, 4, 0), np.nan), "'obs' has non-finite"),
    (lambda a, m: m["sha256"].update(reward="0" * 64), "'reward' does not match its checksum"),
    (lambda a, m: a.update(checkpoint=a["checkpoint"] + 1), "checkpoint"),
])
def test_validation_names_the_problem(tmp_path, edit, match):
    good = ds_lib.save(make_dataset(), str(tmp_path / "good.npz"))
    _rewrite(good, tmp_path / "bad.npz", edit)
    _expect(tmp_path / "bad.npz", match)


def test_save_rejects_bad_data_and_crash_leaves_old_file(tmp_path, monkeypatch):
    ds = make_dataset()
    ds.transitions["next_obs"][0, 0, 0] = np.inf
    with pytest.raises(ds_lib.DatasetError, match="'next_obs' has non-finite"):
        ds_lib.save(ds, str(tmp_path / "x.npz"))
    assert not os.path.exists(tmp_path / "x.npz")
    path = ds_lib.save(make_dataset(seed=1), str(tmp_path / "x.npz"))
    before = open(path, "rb").read()

    def crash(f, arrays):
        f.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ds_lib, "_write_npz", crash)
    with pytest.raises(KeyboardInterrupt):
        ds_lib.save(make_dataset(seed=2), path)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]  # no temporary file left behind


def test_episode_and_timestep_indices():
    done = np.array([[0, 0, 1, 0, 0, 0, 1, 0]], bool)
    episode, timestep = episode_index(done, stream_len=4)  # streams [0..3], [4..7]
    np.testing.assert_array_equal(episode[0], [0, 0, 0, 1, 2, 2, 2, 3])
    np.testing.assert_array_equal(timestep[0], [0, 1, 2, 0, 0, 1, 2, 0])


@pytest.fixture(scope="module")
def device_data():
    return data_lib.TaskData.from_dataset(make_dataset())


def test_transition_sampler_is_task_balanced_and_jittable(device_data):
    f = jax.jit(sample_transitions, static_argnums=2)
    batch = f(device_data, jax.random.PRNGKey(0), 50)
    assert batch.obs.shape == (T, 50, 2) and batch.reward.shape == (T, 50)
    obs = np.asarray(batch.obs)
    np.testing.assert_array_equal(obs[..., 0], np.arange(T)[:, None] * np.ones((1, 50)))
    # each sample is one whole transition: next_obs and reward belong to the same index
    np.testing.assert_allclose(np.asarray(batch.next_obs), obs + 0.5)
    ds = make_dataset()
    pos = obs[..., 1].astype(int)
    np.testing.assert_array_equal(np.asarray(batch.reward),
                                  ds.transitions["reward"][np.arange(T)[:, None], pos])
    # actions are normalised to [-1, 1]
    np.testing.assert_allclose(np.asarray(batch.action),
                               ds.transitions["action"][np.arange(T)[:, None], pos] / 0.1, atol=1e-5)
    sub = sample_task_subset(jax.random.PRNGKey(1), T, 2)
    assert len(set(np.asarray(sub).tolist())) == 2
    b2 = f(device_data, jax.random.PRNGKey(2), 8, sub)
    np.testing.assert_array_equal(np.asarray(b2.obs)[..., 0], np.asarray(sub)[:, None] * np.ones((1, 8)))


def test_window_sampler_consecutive_and_masked_at_episode_starts(device_data):
    f = jax.jit(sample_windows, static_argnums=(2, 3))
    win, mask = f(device_data, jax.random.PRNGKey(0), 200, 5)
    assert win.obs.shape == (T, 200, 5, 2) and mask.shape == (T, 200, 5)
    pos = np.asarray(win.obs)[..., 1].astype(int)
    m = np.asarray(mask)
    assert m[..., -1].all()
    # valid positions are consecutive and within the last transition's episode (length 7)
    end = pos[..., -1]
    expect = end[..., None] - 4 + np.arange(5)
    np.testing.assert_array_equal(np.where(m, pos, -1), np.where(m, expect, -1))
    np.testing.assert_array_equal(m, (expect >= 0) & (expect // 7 == (end // 7)[..., None]))
    assert (~m).any() and m[..., 0].any()
    with pytest.raises(ValueError, match="longer than the data"):
        sample_windows(device_data, jax.random.PRNGKey(0), 4, N + 1)


def test_sample_where_draws_uniformly_among_each_rows_allowed_positions():
    """The categorical over where(allowed, 0, -inf) it replaces: only allowed positions, each
    as often as the others (within 5 binomial standard deviations over 40k draws)."""
    rng = np.random.default_rng(0)
    allowed = rng.random((3, 40)) < np.array([[0.3], [0.9], [0.0]])
    allowed[0, [0, 39]] = True                                 # the ends are reachable
    num = 40_000
    pos = np.asarray(jax.jit(sample_where, static_argnums=2)(
        jax.random.PRNGKey(0), jnp.asarray(allowed), num))
    assert pos.shape == (3, num)
    for row in range(2):
        k = allowed[row].sum()
        counts = np.bincount(pos[row], minlength=40)
        assert counts[~allowed[row]].sum() == 0
        p = 1.0 / k
        assert np.all(np.abs(counts[allowed[row]] - num * p) < 5 * np.sqrt(num * p * (1 - p)))
    assert (pos[2] == 0).all()                                 # no allowed position: 0


def test_episode_sampler_starts_at_every_episode_start_uniformly(device_data):
    """Prefixes begin at episode starts only (timestep 0), all of them, equally often."""
    ctx, mask = jax.jit(sample_episodes, static_argnums=(2, 3))(
        device_data, jax.random.PRNGKey(3), 6000, 4)
    first = np.asarray(ctx.obs)[:, :, 0, 1].astype(int)        # position of each start
    starts = np.flatnonzero(np.asarray(device_data.timestep[0]) == 0)
    assert set(np.unique(first)) == set(starts.tolist())
    counts = np.bincount(first.ravel(), minlength=N)[starts]
    p = 1.0 / len(starts)
    assert np.all(np.abs(counts - first.size * p) < 5 * np.sqrt(first.size * p * (1 - p)))
    np.testing.assert_array_equal(np.asarray(ctx.obs)[..., 1],
                                  np.minimum(first[..., None] + np.arange(4), N - 1))


def test_take_gathers_each_tasks_positions():
    x = jnp.arange(4 * 6 * 2).reshape(4, 6, 2)
    tasks = jnp.asarray([2, 0])
    index = jnp.asarray([[[5, 1], [0, 0]], [[3, 2], [4, 4]]])  # [M, 2, 2]
    got = np.asarray(take(x, tasks, index))
    want = np.asarray(x)[np.asarray(tasks)[:, None, None], np.asarray(index)]
    assert got.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(got, want)


def test_replay_buffer_fifo_and_valid_sampling():
    buf = data_lib.replay_init({"x": jnp.zeros(2)}, capacity=5)
    buf = data_lib.replay_add(buf, {"x": jnp.ones((3, 2)) * jnp.arange(3)[:, None]})
    s = data_lib.replay_sample(buf, jax.random.PRNGKey(0), 100)
    assert set(np.asarray(s["x"][:, 0]).tolist()) <= {0.0, 1.0, 2.0}
    buf = data_lib.replay_add(buf, {"x": jnp.ones((4, 2)) * (3 + jnp.arange(4))[:, None]})
    assert int(buf.size) == 5 and int(buf.ptr) == 2
    np.testing.assert_array_equal(np.asarray(buf.data["x"][:, 0]), [5, 6, 2, 3, 4])
    with pytest.raises(ValueError, match="capacity"):
        data_lib.replay_add(buf, {"x": jnp.zeros((6, 2))})


def _episodes(returns_per_task, lengths):
    """TaskData whose task ``t`` holds episodes of ``lengths`` rows, episode ``e``'s rewards
    summing to ``returns_per_task[t][e]`` (spread evenly over its rows)."""
    from jaxomrl.data.sampler import TaskData
    from jaxomrl.types import Transition
    episode = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    reward = np.stack([np.concatenate([np.full(n, r / n) for r, n in zip(rets, lengths)])
                       for rets in returns_per_task]).astype(np.float32)
    t, n = reward.shape
    zeros = jnp.zeros((t, n), bool)
    tr = Transition(obs=jnp.zeros((t, n, 1)), action=jnp.zeros((t, n, 1)),
                    reward=jnp.asarray(reward), next_obs=jnp.zeros((t, n, 1)), terminated=zeros,
                    truncated=zeros)
    return TaskData(transitions=tr, episode=jnp.asarray(np.broadcast_to(episode, (t, n))),
                    timestep=jnp.zeros((t, n), jnp.int32), checkpoint=jnp.zeros((t, n), jnp.int32),
                    attributes=jnp.zeros((t, 1)))


def test_episode_returns_and_top_episodes_rank_each_tasks_episodes():
    from jaxomrl.data.sampler import episode_returns, top_episodes
    lengths = (3, 5, 2, 4)                       # unequal episodes: ranks are by episode
    rets = [[-10.0, -2.0, -7.0, -1.0], [4.0, 3.0, 2.0, 1.0]]
    data = _episodes(rets, lengths)
    per_row = lambda per_ep: np.concatenate([np.full(n, v) for v, n in zip(per_ep, lengths)])
    np.testing.assert_allclose(episode_returns(data),
                               np.stack([per_row(r) for r in rets]), rtol=1e-5)
    half = np.asarray(top_episodes(data, 0.5))
    np.testing.assert_array_equal(half[0], per_row([0, 1, 0, 1]))   # -2 and -1, of 4 episodes
    np.testing.assert_array_equal(half[1], per_row([1, 1, 0, 0]))   # per task, not pooled
    # at least one episode per task; a fraction rounds up to whole episodes; 1 keeps everything
    np.testing.assert_array_equal(np.asarray(top_episodes(data, 0.01))[0], per_row([0, 0, 0, 1]))
    np.testing.assert_array_equal(np.asarray(top_episodes(data, 0.3))[1], per_row([1, 1, 0, 0]))
    assert np.all(np.asarray(top_episodes(data, 1.0)) == 1)
    # ties at the threshold are kept
    tied = np.asarray(top_episodes(_episodes([[-1.0, -1.0, -5.0, -1.0]], lengths), 0.25))
    np.testing.assert_array_equal(tied[0], per_row([1, 1, 0, 1]))
    # ranked among some episodes only (a task's own among relabelled ones): the others get 0
    # and do not count: task 0's best half of episodes 0, 2, 3 is 2 of them (-7 and -1)
    among = jnp.asarray(np.stack([per_row([1, 0, 1, 1]), per_row([0, 0, 1, 1])]) > 0)
    ranked = np.asarray(top_episodes(data, 0.5, among=among))
    np.testing.assert_array_equal(ranked[0], per_row([0, 0, 1, 1]))
    np.testing.assert_array_equal(ranked[1], per_row([0, 0, 1, 0]))
    np.testing.assert_array_equal(np.asarray(top_episodes(data, 1.0, among=among)),
                                  np.asarray(among, np.float32))
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            top_episodes(data, bad)


def test_termination_table_counts_falls_among_completed_episodes_per_checkpoint():
    ds = make_dataset(n=42, episode_len=7)          # 6 episodes per task, all truncated
    tr = ds.transitions
    tr["checkpoint"] = np.where(np.arange(42) < 21, 3, 5).astype(np.int32)[None].repeat(T, 0)
    ds.meta.update(checkpoints=[3, 5], checkpoint_returns=[[1.0, 1.0]] * T)
    # task 0: checkpoint 3's second episode falls at its 4th step (the rest of it is a new
    # episode, cut where checkpoint 3's stream ends and so not counted); task 2: every episode
    # of checkpoint 5 falls
    tr["terminated"][0, 10], tr["truncated"][0, 13] = True, False
    tr["terminated"][2, 21:] = tr["truncated"][2, 21:]
    tr["truncated"][2, 21:] = False
    table = ds_lib.checkpoint_termination_table(ds)
    np.testing.assert_allclose(table, [[1 / 3, 0.0], [0.0, 0.0], [0.0, 1.0]])
    tr["truncated"][1, :21] = False                  # no completed episode of checkpoint 3
    assert np.isnan(ds_lib.checkpoint_termination_table(ds)[1, 0])
