"""The smallest program found that hangs jax 0.10.x on a CPU (README, "Known issues").

    python research/jax_cpu_hang.py --num_envs=1024 --steps=2     # hangs under jax 0.10.2

``jit(vmap(scan(mjx.step)))``: ``--num_envs`` copies of Half-Cheetah (this project's
``cheetah_vel`` model) stepped ``--steps`` times by ``lax.scan`` with random controls, in one
jitted program; prints the first call's seconds. Under jax / jaxlib 0.10.2 on a CPU the first
call never returns from ``block_until_ready``: every XLA worker thread parked, no CPU used.
What decides it (2-core x86-64 VM, Python 3.11, mujoco-mjx 3.17.0):

* 1,024 environments hang, 768 and fewer run (first call 8 s);
* a ``lax.scan`` of 2 steps hangs, a single ``mjx.step`` without the scan runs at 1,024;
* a free-floating box (no actuators, one contact) at 1,024 x 50 steps runs;
* jax 0.9.2 (Python 3.11) and jax 0.11.2 / 0.12.0.1 (Python 3.12) run every size above.

Hence jax 0.10.x is outside the range setup.py declares. The project's own programs at that
size (``benchmarks/rollout_throughput.py --families=cheetah_vel,hopper_rand_params
--num_envs=1024``) run under 0.12 (benchmarks/README.md).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import app, flags
from mujoco import mjx

from jaxomrl import envs

flags.DEFINE_integer("num_envs", 1024, "Environments vmapped in one program.")
flags.DEFINE_integer("steps", 2, "Control steps in the lax.scan.")
flags.DEFINE_integer("frame_skip", 1, "mjx.step calls per control step (a lax.fori_loop).")
FLAGS = flags.FLAGS


def main(_):
    model = envs.make("cheetah_vel", physics="mjx").mj_model
    mx = mjx.put_model(model)
    data0 = mjx.make_data(mx)

    def one(ctrl):
        def body(d, u):      # one control step: fori_loop over the physics steps
            d = jax.lax.fori_loop(0, FLAGS.frame_skip, lambda _, x: mjx.step(mx, x),
                                  d.replace(ctrl=u))
            return d, d.qpos[0]
        return jax.lax.scan(body, data0, ctrl)[1]

    @jax.jit
    def run(key):
        ctrl = jax.random.uniform(key, (FLAGS.num_envs, FLAGS.steps, model.nu))
        return jax.vmap(one)(ctrl)

    t0 = time.time()
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    print(f"jax {jax.__version__}: {FLAGS.num_envs} envs x {FLAGS.steps} steps, first call "
          f"{time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    app.run(main)
