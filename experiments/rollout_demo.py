"""Rollout demo: one jitted program runs every train and test task of a family in parallel.

For each task it runs ``--episodes_per_task`` full episodes of a random policy and, on
point_robot_sparse, of the goal-directed oracle (which knows the task), and prints the mean return
per split with the throughput. A stand-in for the main job until the R2PGO runner lands.

    python experiments/rollout_demo.py --family=point_robot_sparse
    python experiments/rollout_demo.py --family=cheetah_vel --horizon=100
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from jaxomrl import envs
from jaxomrl.types import scale_action

_FAMILY = flags.DEFINE_string("family", "point_robot_sparse", "Task family name.")
_EPISODES = flags.DEFINE_integer("episodes_per_task", 8, "Parallel episodes per task.")
_HORIZON = flags.DEFINE_integer("horizon", None, "Override the family's horizon.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the task split and the rollouts.")


def episode_return(family, task, key, policy):
    """Undiscounted return of one episode (rewards after termination are masked) of
    ``policy(task)``, a ``jaxomrl.types.Policy`` (actions in [-1, 1], mapped to the box)."""
    state = family.reset(task, key)
    act = policy(task)

    def body(carry, k):
        s, alive, ret = carry
        action = scale_action(act(s.obs, None, k), family.action_low, family.action_high)
        s = family.step(task, s, action)
        ret = ret + alive * s.reward
        return (s, alive * (1.0 - s.done), ret), None

    init = (state, jnp.float32(1.0), jnp.float32(0.0))
    (_, _, ret), _ = jax.lax.scan(body, init, jax.random.split(key, family.horizon))
    return ret


def main(_):
    logging.set_verbosity(logging.WARNING)
    config = {} if _HORIZON.value is None else {"horizon": _HORIZON.value}
    family = envs.make(_FAMILY.value, **config)
    train, test = family.train_test_split(_SEED.value)

    uniform = envs.uniform_policy(family)
    policies = {"random": lambda task: uniform}
    if _FAMILY.value == "point_robot_sparse":   # full speed towards the goal: 1 is the box's edge
        policies["oracle (knows the goal)"] = lambda task: lambda obs, z, key: jnp.clip(
            (family.goal(task) - obs) / family.action_high, -1.0, 1.0)

    print(f"{family}\n{train.num_tasks} train / {test.num_tasks} test tasks, "
          f"{_EPISODES.value} episodes each, backend {jax.default_backend()}")
    for pname, policy in policies.items():
        run = jax.jit(jax.vmap(jax.vmap(lambda t, k: episode_return(family, t, k, policy),
                                        in_axes=(None, 0)), in_axes=(0, 0)))
        for split_name, tasks in (("train", train), ("test", test)):
            keys = jax.random.split(jax.random.PRNGKey(_SEED.value),
                                    tasks.num_tasks * _EPISODES.value)
            keys = keys.reshape(tasks.num_tasks, _EPISODES.value, -1)
            jax.block_until_ready(run(tasks, keys))  # compile
            t0 = time.perf_counter()
            returns = np.asarray(jax.block_until_ready(run(tasks, keys)))
            dt = time.perf_counter() - t0
            steps = returns.size * family.horizon
            print(f"  {pname:24s} {split_name:5s} return {returns.mean():9.2f} "
                  f"± {returns.mean(axis=1).std():7.2f} (std over tasks)   "
                  f"{steps / dt:12,.0f} env steps/s")


if __name__ == "__main__":
    app.run(main)
