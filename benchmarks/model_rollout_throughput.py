"""Model-rollout throughput: branch rollouts in every task's dynamics ensemble, one jitted program.

ReDA generates adversarial contexts by rolling a policy out in the learned models of every
training task from start states of the joint dataset. This measures that program
(``Dynamics.rollout`` vmapped over tasks; every step evaluates all ensemble members for the
uncertainty and samples one of them) for tasks x members x starts, with ReDA's model sizes
(3 hidden layers of 200, 3 members) and HalfCheetah's dimensions. Parameters are untrained:
throughput does not depend on them. Each configuration is compiled and run twice before timing.

    python benchmarks/model_rollout_throughput.py --num_tasks=3 --members=3 --starts=256,2048

Prints a table and, on its last line, one JSON object.
"""
from __future__ import annotations

import json
import platform
import time

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from jaxomrl.data.sampler import TaskData
from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics
from jaxomrl.types import Transition

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_tasks", 3, "Tasks (each with its own ensemble).")
flags.DEFINE_integer("members", 3, "Ensemble members per task.")
flags.DEFINE_list("starts", ["256", "2048"], "Start states per task (rollouts in parallel).")
flags.DEFINE_integer("length", 10, "Model steps per branch rollout.")
flags.DEFINE_list("hidden", ["200", "200", "200"], "Hidden sizes of each member.")
flags.DEFINE_integer("obs_dim", 17, "Observation size (HalfCheetah: 17).")
flags.DEFINE_integer("action_dim", 6, "Action size (HalfCheetah: 6).")
flags.DEFINE_integer("repeats", 3, "Timed repeats (best is reported).")


def _data(t: int, n: int, obs_dim: int, action_dim: int) -> TaskData:
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.normal(k[0], (t, n, obs_dim))
    zeros = jnp.zeros((t, n), bool)
    tr = Transition(obs=obs, action=jax.random.uniform(k[1], (t, n, action_dim), minval=-1),
                    reward=jax.random.normal(k[2], (t, n)), next_obs=obs + 0.1,
                    terminated=zeros, truncated=zeros)
    idx = jnp.zeros((t, n), jnp.int32)
    return TaskData(transitions=tr, episode=idx, timestep=idx, checkpoint=idx,
                    attributes=jnp.zeros((t, 1)))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    cfg = DynamicsConfig(hidden=tuple(int(h) for h in FLAGS.hidden),
                         ensemble_size=FLAGS.members)
    dyn = make_dynamics(cfg, FLAGS.obs_dim, FLAGS.action_dim)
    data = _data(FLAGS.num_tasks, 512, FLAGS.obs_dim, FLAGS.action_dim)
    state = dyn.init(jax.random.PRNGKey(1), data)
    act = lambda obs, z, k: jax.random.uniform(k, (FLAGS.action_dim,), minval=-1.0, maxval=1.0)
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    machine = f"{device.platform}:{device.device_kind} ({cpu})"
    print(f"device: {machine}; {FLAGS.num_tasks} tasks x {FLAGS.members} members, hidden "
          f"{cfg.hidden}, obs {FLAGS.obs_dim}, action {FLAGS.action_dim}, rollout length "
          f"{FLAGS.length}")
    print("| starts / task | transitions / call | seconds / call | transitions / s | "
          "member evaluations / s |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for s in map(int, FLAGS.starts):
        starts = jnp.broadcast_to(data.transitions.obs[:, :1], (FLAGS.num_tasks, s, FLAGS.obs_dim))
        fn = jax.jit(jax.vmap(lambda p, n, st, k: dyn.rollout(p, n, act, st, k, FLAGS.length)))
        keys = jax.random.split(jax.random.PRNGKey(2), FLAGS.num_tasks)
        for _ in range(2):
            jax.block_until_ready(fn(state.best, state.norm, starts, keys))
        best = float("inf")
        for r in range(FLAGS.repeats):
            keys = jax.random.split(jax.random.PRNGKey(3 + r), FLAGS.num_tasks)
            t0 = time.perf_counter()
            jax.block_until_ready(fn(state.best, state.norm, starts, keys))
            best = min(best, time.perf_counter() - t0)
        n = FLAGS.num_tasks * s * FLAGS.length
        rows.append({"starts": s, "transitions": n, "seconds": best,
                     "transitions_per_s": n / best,
                     "member_evals_per_s": n * FLAGS.members / best})
        print(f"| {s} | {n:,} | {best:.4f} | {n / best:,.0f} | {n * FLAGS.members / best:,.0f} |",
              flush=True)
    print(json.dumps({"device": machine, "num_tasks": FLAGS.num_tasks, "members": FLAGS.members,
                      "length": FLAGS.length, "hidden": list(cfg.hidden), "rows": rows}))


if __name__ == "__main__":
    app.run(main)
