"""Where collection time goes on a CPU: MJX environment steps vs SAC updates.

    python benchmarks/collection_cost.py --family=cheetah_vel --num_envs=32,128,512

* **env steps/s**: ``jit(lax.scan(vmap(step_autoreset)))`` of one task with random actions (20
  steps per call), for each batch size.
* **updates/s**: one SAC update (twin critics, target networks, learned temperature) on a fixed
  batch, 50 per ``lax.scan``, for each network width and batch size.

Each program is called twice before timing (compilation, then warm-up). Prints a table and, on
its last line, one JSON object. With U updates per env step, collection spends
``U / updates_per_s`` against ``1 / env_steps_per_s`` per env step: the share of time the
updates take decides whether per-task agents (U updates per task's step) or one conditioned agent
(updates shared by all tasks) fit a budget.
"""
from __future__ import annotations

import json
import platform
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxomrl import envs
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.types import Transition

FLAGS = flags.FLAGS
flags.DEFINE_string("family", "cheetah_vel", "Task family.")
flags.DEFINE_list("num_envs", ["32", "128", "512"], "Environment batch sizes.")
flags.DEFINE_list("networks", ["128x128:256", "256x256:256", "128x128:512"],
                  "SAC sizes as HIDDENxHIDDEN:BATCH.")


def _time(fn, *args) -> float:
    out = fn(*args)
    jax.block_until_ready(out)
    out = fn(*args)
    jax.block_until_ready(out)
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def main(argv):
    del argv
    family = envs.make(FLAGS.family)
    task = family.train_test_split(0)[0][0]
    rows = {"machine": f"{platform.machine()} {jax.devices()[0].platform}", "env": {}, "sac": {}}
    for n in map(int, FLAGS.num_envs):
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        state = jax.vmap(family.reset, in_axes=(None, 0))(task, keys)

        def body(s, k, n=n):
            a = jax.random.uniform(k, (n, family.action_dim), minval=-1.0, maxval=1.0)
            return jax.vmap(family.step_autoreset, in_axes=(None, 0, 0))(task, s, a), None

        run = jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, 20))[0])
        rows["env"][n] = 20 * n / _time(run, state, keys[0])
    for spec in FLAGS.networks:
        sizes, batch = spec.split(":")
        hidden, batch = tuple(int(h) for h in sizes.split("x")), int(batch)
        sac = make_sac(SACConfig(hidden=hidden, batch_size=batch), family.obs_dim,
                       family.action_dim)
        b = Transition(obs=jnp.ones((batch, family.obs_dim)),
                       action=jnp.zeros((batch, family.action_dim)), reward=jnp.zeros(batch),
                       next_obs=jnp.ones((batch, family.obs_dim)),
                       terminated=jnp.zeros(batch, bool), truncated=jnp.zeros(batch, bool))
        run = jax.jit(lambda s, k: jax.lax.scan(lambda s, k: sac.update(s, b, k), s,
                                                jax.random.split(k, 50))[0])
        rows["sac"][spec] = 50 / _time(run, sac.init(jax.random.PRNGKey(0)),
                                       jax.random.PRNGKey(1))
    print(f"{FLAGS.family} on {rows['machine']}")
    for n, v in rows["env"].items():
        print(f"  {n:5d} envs: {v:10,.0f} env steps/s")
    for spec, v in rows["sac"].items():
        print(f"  SAC {spec:12s}: {v:10,.0f} updates/s")
    print(json.dumps(rows))


if __name__ == "__main__":
    app.run(main)
