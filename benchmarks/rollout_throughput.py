"""Environment-step throughput of the jitted, vmapped rollout of each task family.

For every family and batch size it measures, in one run on one machine:

* ``framework``: ``num_envs`` auto-resetting environments (tasks assigned round-robin from the
  training split, each env with its own task's physics) stepped with random actions inside one
  ``jit(lax.scan(vmap(step_autoreset)))``;
* ``bare`` (MJX families): a ``lax.scan`` of ``frame_skip`` ``mjx.step`` calls on the nominal model,
  vmapped over the same number of environments: the floor the env layer is compared with;
* ``mujoco_c`` (MJX families): single-thread MuJoCo C (``mujoco.rollout``) on the same model and
  solver settings, measured before any JAX work;
* ``c_backend`` (MJX families): the same framework rollout with ``physics="c"`` (MuJoCo C through
  ``jax.pure_callback``, one call per control step, ``jaxomrl.envs.mujoco_c``), against
  ``mujoco_c_threads``: MuJoCo C's own multi-threaded ``mujoco.rollout`` (a persistent pool on
  every core) of the same environments with their tasks' models, whole trajectories in one call
  -- the physics alone, without a policy in the loop. Both with first-call (compile) times.

Prints a table and, on its last line, one JSON object with every figure.

    python benchmarks/rollout_throughput.py --families=cheetah_vel,hopper_rand_params \
        --num_envs=64,1024 --steps=100
"""
import json
import platform
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from absl import app, flags, logging
from mujoco import mjx
from mujoco import rollout as mj_rollout

from jaxomrl import envs
from jaxomrl.envs.mjx_family import MJXFamily

_FAMILIES = flags.DEFINE_list("families", ["point_robot_sparse", "cheetah_vel",
                                           "hopper_rand_params", "walker_rand_params",
                                           "ant_gravity", "inverted_pendulum_gravity"],
                              "Families to measure, or 'all'.")
_NUM_ENVS = flags.DEFINE_list("num_envs", ["64", "1024"], "Parallel environment counts.")
_STEPS = flags.DEFINE_integer("steps", 100, "Environment steps per timed rollout.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats (best is reported).")
_C_STEPS = flags.DEFINE_integer("c_steps", 20000, "Physics steps for the MuJoCo C reference.")


def best_time(fn, *args, repeats):
    """Best wall time of ``fn(*args)`` after two warm-up calls (compile, then caches)."""
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def mujoco_c_physics_steps_per_s(family: MJXFamily, nstep: int, repeats: int,
                                 segment: int = 200) -> float:
    """Single-thread MuJoCo C physics steps per second with random controls.

    ``nstep`` steps as trajectories of ``segment`` steps from the initial state, so that no
    trajectory runs long enough under random controls to go unstable (MuJoCo would reset it).
    """
    m = family.mj_model
    d = mujoco.MjData(m)
    state = np.zeros((1, mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS)))
    mujoco.mj_getState(m, d, state[0], mujoco.mjtState.mjSTATE_FULLPHYSICS)
    nroll = max(1, nstep // segment)
    state = np.repeat(state, nroll, axis=0)
    rng = np.random.default_rng(0)
    ctrl = rng.uniform(family.action_low, family.action_high, (nroll, segment, m.nu))
    best = np.inf
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        mj_rollout.rollout(m, d, state, ctrl)
        best = min(best, time.perf_counter() - t0)
    return nroll * segment / best


def mujoco_c_threads_physics_steps_per_s(family: MJXFamily, tasks, num_envs: int, steps: int,
                                         repeats: int) -> float:
    """MuJoCo C's multi-threaded rollout (every core, persistent pool) of ``num_envs``
    environments, each with its task's model (round-robin over ``tasks``, as the framework's),
    ``steps`` control steps of random controls from the nominal initial state in one call."""
    m, stepper = family.mj_model, family.c_stepper
    index = np.arange(num_envs) % tasks.num_tasks
    models = stepper.models_for({k: np.asarray(v)[index] for k, v in tasks.params.items()})
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    d = mujoco.MjData(m)
    state = np.zeros((1, mujoco.mj_stateSize(m, spec)))
    mujoco.mj_getState(m, d, state[0], spec)
    state = np.repeat(state, num_envs, axis=0)
    nstep = steps * family.robot.frame_skip
    ctrl = np.random.default_rng(0).uniform(family.action_low, family.action_high,
                                            (num_envs, nstep, m.nu))
    pool = mj_rollout.Rollout(nthread=stepper.threads)
    datas = [mujoco.MjData(m) for _ in range(stepper.threads)]
    best = np.inf
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        pool.rollout(models, datas, state, ctrl)
        best = min(best, time.perf_counter() - t0)
    pool.close()
    return num_envs * nstep / best


def first_call_s(fn, *args) -> float:
    """Wall time of the first call (compilation included)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def framework_rollout(family, tasks, num_envs, steps):
    """jit(scan(vmap(step_autoreset))) over ``num_envs`` envs, one task per env."""
    index = jnp.arange(num_envs) % tasks.num_tasks
    env_tasks = tasks[index]

    @jax.jit
    def run(key):
        reset_key, run_key = jax.random.split(key)
        states = jax.vmap(family.reset)(env_tasks, jax.random.split(reset_key, num_envs))

        def body(s, k):
            a = jax.random.uniform(k, (num_envs, family.action_dim), minval=family.action_low,
                                   maxval=family.action_high)
            s = jax.vmap(family.step_autoreset)(env_tasks, s, a)
            return s, s.reward

        # Return the final observations too: a reward that does not depend on the physics (the
        # pendulum's alive bonus) would otherwise let XLA drop the simulation altogether.
        final, rewards = jax.lax.scan(body, states, jax.random.split(run_key, steps))
        return final.obs, rewards

    return run


def bare_rollout(family: MJXFamily, num_envs, steps):
    """lax.scan of frame_skip mjx.step calls on the nominal model, vmapped over envs."""
    mx, frame_skip = family.mx, family.robot.frame_skip
    data0 = family.data0.replace(qpos=family.qpos0)

    def one(ctrl):
        def body(d, u):
            d = jax.lax.fori_loop(0, frame_skip, lambda _, x: mjx.step(mx, x), d.replace(ctrl=u))
            return d, d.qpos[0]
        return jax.lax.scan(body, data0, ctrl)[1]

    @jax.jit
    def run(key):
        ctrl = jax.random.uniform(key, (num_envs, steps, family.action_dim),
                                  minval=family.action_low, maxval=family.action_high)
        return jax.vmap(one)(ctrl)

    return run


def main(_):
    logging.set_verbosity(logging.WARNING)
    names = envs.list_families() if _FAMILIES.value == ["all"] else _FAMILIES.value
    sizes = [int(n) for n in _NUM_ENVS.value]
    machine = (f"{platform.processor() or platform.machine()}, {jax.local_device_count()} "
               f"{jax.default_backend()} device(s) ({jax.devices()[0].device_kind}), "
               f"jax {jax.__version__}, mujoco {mujoco.__version__}")
    # MJX families on MJX; pure-JAX families (the point robot) have no physics backend to choose
    # and are measured as they are, without the MuJoCo comparisons.
    families = {n: envs.make(n, physics="mjx") if envs.has_physics(n) else envs.make(n)
                for n in names}
    # MuJoCo C first, before any XLA thread pool exists.
    c_ref = {n: mujoco_c_physics_steps_per_s(f, _C_STEPS.value, _REPEATS.value)
             for n, f in families.items() if isinstance(f, MJXFamily)}
    rows = []
    for name, family in families.items():
        train, _ = family.train_test_split(0)
        frame_skip = family.robot.frame_skip if isinstance(family, MJXFamily) else 1
        for b in sizes:
            key = jax.random.PRNGKey(0)
            fn = framework_rollout(family, train, b, _STEPS.value)
            compile_s = first_call_s(fn, key)
            t = best_time(fn, key, repeats=_REPEATS.value)
            row = {"family": name, "num_envs": b, "steps": _STEPS.value,
                   "framework_env_steps_per_s": b * _STEPS.value / t,
                   "framework_first_call_s": compile_s}
            if name in c_ref:
                fc = envs.make(name, physics="c")
                fn = framework_rollout(fc, train, b, _STEPS.value)
                row["c_backend_first_call_s"] = first_call_s(fn, key)
                tc = best_time(fn, key, repeats=_REPEATS.value)
                row["c_backend_env_steps_per_s"] = b * _STEPS.value / tc
                row["c_backend_physics_steps_per_s"] = row["c_backend_env_steps_per_s"] * frame_skip
                row["mujoco_c_threads_physics_steps_per_s"] = mujoco_c_threads_physics_steps_per_s(
                    fc, train, b, _STEPS.value, _REPEATS.value)
                row["c_threads"] = fc.c_stepper.threads
                row["c_backend_over_c_threads"] = (row["c_backend_physics_steps_per_s"]
                                                   / row["mujoco_c_threads_physics_steps_per_s"])
                row["c_backend_over_mjx"] = t / tc
                tb = best_time(bare_rollout(family, b, _STEPS.value), key, repeats=_REPEATS.value)
                row["bare_env_steps_per_s"] = b * _STEPS.value / tb
                row["env_layer_overhead"] = t / tb - 1.0
                row["framework_physics_steps_per_s"] = row["framework_env_steps_per_s"] * frame_skip
                row["mujoco_c_physics_steps_per_s"] = c_ref[name]
                row["mjx_over_c"] = row["framework_physics_steps_per_s"] / c_ref[name]
            rows.append(row)
            print(f"done {name} B={b}", flush=True)

    print(f"\nmachine: {machine}")
    print("MuJoCo C backend (physics='c') against MuJoCo C's own multi-threaded rollout:")
    print(f"{'family':28s} {'envs':>5s} {'threads':>7s} {'phys/s C-backend':>16s} "
          f"{'phys/s C threads':>16s} {'ratio':>6s} {'vs MJX':>7s} {'1st call C':>10s} "
          f"{'1st call MJX':>12s}")
    for r in rows:
        if "c_backend_env_steps_per_s" in r:
            print(f"{r['family']:28s} {r['num_envs']:5d} {r['c_threads']:7d} "
                  f"{r['c_backend_physics_steps_per_s']:16.0f} "
                  f"{r['mujoco_c_threads_physics_steps_per_s']:16.0f} "
                  f"{r['c_backend_over_c_threads']:6.2f} {r['c_backend_over_mjx']:6.1f}x "
                  f"{r['c_backend_first_call_s']:9.1f}s {r['framework_first_call_s']:11.1f}s")
    print("MJX backend:")
    print(f"{'family':28s} {'envs':>5s} {'env steps/s':>12s} {'bare':>12s} {'overhead':>9s} "
          f"{'phys/s MJX':>11s} {'phys/s C':>10s} {'MJX/C':>6s}")
    for r in rows:
        def fmt(k, w, f="{:.0f}"):
            return (f.format(r[k]) if k in r else "-").rjust(w)
        print(f"{r['family']:28s} {r['num_envs']:5d} {fmt('framework_env_steps_per_s', 12)} "
              f"{fmt('bare_env_steps_per_s', 12)} {fmt('env_layer_overhead', 9, '{:+.1%}')} "
              f"{fmt('framework_physics_steps_per_s', 11)} "
              f"{fmt('mujoco_c_physics_steps_per_s', 10)} {fmt('mjx_over_c', 6, '{:.2f}')}")
    print(json.dumps({"machine": machine, "results": rows}))


if __name__ == "__main__":
    app.run(main)
