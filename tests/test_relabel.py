"""BOReL's reward relabelling (jaxomrl.data.relabel) and the borel/reward_relabelling spec."""
import dataclasses

import jax
import numpy as np
import pytest

from jaxomrl import algos, envs
from jaxomrl.data.relabel import check_episode_layout, relabel_episodes
from jaxomrl.data.sampler import run_data
from scripted_data import scripted_point_robot_dataset


def _point_robot_reward(goal_angle, next_obs, radius=0.2):
    goal = np.stack([np.cos(goal_angle), np.sin(goal_angle)], -1)
    return (np.linalg.norm(next_obs - goal, axis=-1) <= radius).astype(np.float32)


def test_relabelled_episodes_are_other_tasks_episodes_with_this_tasks_rewards():
    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds)
    train, tasks = data["train"], data["train_tasks"]
    family = ds.make_family()
    check_episode_layout(train, family.horizon)
    fraction, h = 0.5, family.horizon
    out = jax.jit(relabel_episodes, static_argnums=(2, 4))(train, tasks, family,
                                                           jax.random.PRNGKey(0), fraction)
    T, N = train.episode.shape
    E = N // h
    ep = lambda x: np.asarray(x).reshape((T, E, h) + np.asarray(x).shape[2:])
    obs, new_obs = ep(train.transitions.obs), ep(out.transitions.obs)
    new_next, new_reward = ep(out.transitions.next_obs), ep(out.transitions.reward)
    np.testing.assert_array_equal(np.asarray(out.episode), np.asarray(train.episode))
    np.testing.assert_array_equal(np.asarray(out.timestep), np.asarray(train.timestep))
    angles = np.asarray(tasks.params["goal_angle"])
    for i in range(T):
        changed = [e for e in range(E) if not np.array_equal(new_obs[i, e], obs[i, e])]
        assert len(changed) == round(fraction * E)
        for e in range(E):
            if e not in changed:       # kept episodes are untouched, rewards included
                for f in ("obs", "action", "reward", "next_obs"):
                    np.testing.assert_array_equal(ep(getattr(out.transitions, f))[i, e],
                                                  ep(getattr(train.transitions, f))[i, e])
                continue
            # a whole episode of another task, rewarded by this task's goal
            lenders = [(j, k) for j in range(T) for k in range(E)
                       if np.array_equal(obs[j, k], new_obs[i, e])]
            assert lenders and all(j != i for j, _ in lenders), (i, e, lenders)
            np.testing.assert_array_equal(new_reward[i, e],
                                          _point_robot_reward(angles[i], new_next[i, e]))
    # the data's own rewards are the same function (of the task that collected them)
    np.testing.assert_array_equal(ep(train.transitions.reward)[3],
                                  _point_robot_reward(angles[3], ep(train.transitions.next_obs)[3]))
    same = relabel_episodes(train, tasks, family, jax.random.PRNGKey(0), 0.0)
    np.testing.assert_array_equal(np.asarray(same.transitions.obs),
                                  np.asarray(train.transitions.obs))
    shuffled = train.replace(timestep=train.timestep[:, ::-1])
    with pytest.raises(ValueError, match="consecutive transitions"):
        check_episode_layout(shuffled, h)
    with pytest.raises(ValueError, match="fraction"):
        relabel_episodes(train, tasks, family, jax.random.PRNGKey(0), 1.5)


def test_borel_with_relabelling_trains_and_families_without_a_transition_reward_refuse():
    ds = scripted_point_robot_dataset()
    data, eval_data = run_data(ds)
    family = ds.make_family()
    settings = algos.Settings(hidden=(16, 16), latent_dim=3, encoder_hidden=16, window=10,
                              contexts_per_task=4, encoder_meta_batch=4, encoder_steps=4,
                              policy_steps=4, batch_size=32, meta_batch=4)
    config = algos.make_config("borel/reward_relabelling", settings)
    assert config.reward_relabelling == pytest.approx(0.32)
    assert algos.make_config("borel", settings).reward_relabelling == 0.0
    algorithm = algos.make("borel/reward_relabelling", settings, family, 12)
    # the encoder phase learns from the relabelled data, and its shared-phase identity says so
    assert algorithm.phases[0].config["reward_relabelling"] == pytest.approx(0.32)
    aux = algorithm.phases[0].prepare(None, data)
    assert not np.array_equal(np.asarray(aux.transitions.obs),
                              np.asarray(data["train"].transitions.obs))
    out = jax.jit(algos.make_train(algorithm, chunk_steps=2))(jax.random.PRNGKey(0), data)
    res = jax.jit(algorithm.evaluate)(out, jax.random.PRNGKey(1), eval_data)
    assert np.all(np.isfinite(np.asarray(res["test_online"])))
    cheetah = envs.make("cheetah_vel")
    with pytest.raises(ValueError, match="cheetah_vel: the reward cannot be recomputed"):
        algos.make("borel/reward_relabelling", dataclasses.replace(settings, window=10),
                   cheetah, 3)
