"""Test data: point-robot datasets from scripted goal-seeking behaviour (no SAC needed), and
TaskData of synthetic transitions (known model dynamics)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl import envs
from jaxomrl.data.dataset import from_rollouts
from jaxomrl.data.sampler import TaskData
from jaxomrl.types import Transition

NOISE = (0.03, 0.08)  # two behaviour "checkpoints": goal-directed with different action noise


@functools.cache
def scripted_point_robot_dataset(num_train=12, num_test=4, num_envs=4, steps=40):
    """A point-robot MultiTaskDataset (train and test tasks) of noisy goal-seeking behaviour."""
    family = envs.make("point_robot_sparse")
    train, test = family.train_test_split(0)
    tasks = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[:num_train], b[:num_test]]),
                                   train, test)
    is_test = np.arange(num_train + num_test) >= num_train

    def run(task, noise, key):
        def policy(obs, z, k):   # a jaxomrl.types.Policy: [-1, 1] is the box [-0.1, 0.1]
            d = family.goal(task) - obs
            a = d / (jnp.linalg.norm(d) + 1e-6)
            return jnp.clip(a + 10.0 * noise * jax.random.normal(k, (2,)), -1.0, 1.0)
        return envs.rollout(family, task, key, policy, steps, num_envs)[1]

    keys = jax.random.split(jax.random.PRNGKey(0), (num_train + num_test) * len(NOISE))
    keys = keys.reshape(num_train + num_test, len(NOISE), -1)
    tr = jax.jit(jax.vmap(jax.vmap(run, in_axes=(None, 0, 0)), in_axes=(0, None, 0)))(
        tasks, jnp.asarray(NOISE), keys)
    return from_rollouts(family, tasks, is_test, tr, [1, 2], "train", {"policy": "scripted"})


def transition_data(obs, action, next_obs, reward, episode_length=20) -> TaskData:
    """``TaskData [T, N]`` of synthetic transitions (never terminal), cut into episodes of
    ``episode_length`` rows, one checkpoint; task ``t``'s attribute is ``t``."""
    t, n = reward.shape
    zeros, idx = jnp.zeros((t, n), bool), jnp.broadcast_to(jnp.arange(n), (t, n))
    tr = Transition(obs=obs, action=action, reward=reward, next_obs=next_obs, terminated=zeros,
                    truncated=zeros)
    return TaskData(transitions=tr, episode=idx // episode_length,
                    timestep=idx % episode_length, checkpoint=jnp.zeros((t, n), jnp.int32),
                    attributes=jnp.arange(t, dtype=jnp.float32)[:, None])
