"""Point-Robot-Sparse: 2-D navigation to a goal on the unit semicircle, in pure JAX.

Follows CORRO's ``PointRobot-v1`` / BOReL's sparse point robot (the peers' public code): goal
angle ~ U(0, pi) on a circle of radius ``goal_distance`` (1), start at the origin, actions clipped
to +-``max_action`` (0.1) per axis, reward 1 only within ``goal_radius`` (0.2) of the goal,
horizon 20, no termination. Observation: the position. Task attribute vector: ``[goal_angle]``.

The sparse reward is BOReL's: PEARL's ``SparsePointEnv`` (and FOCAL, from it) pays ``1 - distance``
inside the radius (``sparse_reward += 1`` on the zeroed-out negative distance); BOReL's and
CORRO's copies of that class replace the line with ``sparse_reward = 1``. R2PGO evaluates BOReL
"under the same setting as our method" and builds on its code, so its Point-Robot-Sparse is
taken to be BOReL's (1 inside the radius); datasets imported from PEARL-lineage code carry their
own rewards.
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.envs.base import Task, TaskFamily


class PointRobotSparse(TaskFamily):
    obs_dim = 2
    action_dim = 2
    attr_dim = 1
    info_keys = ("distance", "dense_reward")

    def __init__(self, name: str = "point_robot_sparse", *, horizon: int = 20,
                 goal_radius: float = 0.2, goal_distance: float = 1.0, max_action: float = 0.1,
                 num_train: int = 40, num_test: int = 10, num_val: int = 10):
        super().__init__(name, num_train, num_test, num_val)
        if horizon < 1 or goal_radius <= 0 or max_action <= 0:
            raise ValueError("horizon, goal_radius and max_action must be positive")
        self.horizon = int(horizon)
        self.goal_radius = float(goal_radius)
        self.goal_distance = float(goal_distance)
        self.action_low, self.action_high = -float(max_action), float(max_action)

    def sample_params(self, key, num) -> Dict[str, jax.Array]:
        return {"goal_angle": jax.random.uniform(key, (num,), minval=0.0, maxval=jnp.pi)}

    def _make_tasks(self, params: Dict[str, np.ndarray]) -> Task:
        angle = jnp.asarray(params["goal_angle"], jnp.float32)
        return Task(params={"goal_angle": angle}, attributes=angle[:, None], model={},
                    family=self.name)

    def goal(self, task: Task) -> jax.Array:
        """``[2]`` goal position of one task."""
        a = task.params["goal_angle"]
        return self.goal_distance * jnp.stack([jnp.cos(a), jnp.sin(a)])

    def _reset(self, task, key):
        del key  # deterministic start at the origin
        pos = jnp.zeros(2, jnp.float32)
        return pos, pos

    def transition_reward(self, task, obs, action, next_obs):
        del obs, action
        dist = jnp.linalg.norm(next_obs - self.goal(task))
        return (dist <= self.goal_radius).astype(jnp.float32)

    def _step(self, task, pos, action, t):
        pos = pos + action
        dist = jnp.linalg.norm(pos - self.goal(task))
        reward = (dist <= self.goal_radius).astype(jnp.float32)
        info = {"distance": dist, "dense_reward": -dist}
        return pos, pos, reward, jnp.zeros((), bool), info
