"""Task families: API contract, determinism, vmap, physics, and errors."""
import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from jaxomrl import envs

ALL = envs.list_families()
MJX_FAMILIES = [n for n in ALL if envs.has_physics(n)]
EPISODE = 8


def _first_per_robot(names):
    """The first family of each robot (MJX model): vmap over tasks is checked against a loop once
    per model, the per-perturbation physics (gravity, damping, body parameters) by their own
    tests below on the same batched program."""
    seen = {}
    for n in names:
        seen.setdefault(getattr(envs.make(n), "robot_name", n), n)
    return set(seen.values())


LOOP_CHECKED = _first_per_robot(ALL)


def _episode(family, task, key, action_scale):
    """One environment of one task for EPISODE steps of scaled uniform random actions."""
    state = family.reset(task, key)

    def body(s, k):
        a = action_scale * jax.random.uniform(k, (family.action_dim,), minval=family.action_low,
                                              maxval=family.action_high)
        s2 = family.step(task, s, a)
        qpos = s2.physics.qpos if hasattr(s2.physics, "qpos") else s2.physics
        return s2, (s.obs, a, s2.reward, s2.next_obs, s2.done, qpos)

    return jax.lax.scan(body, state, jax.random.split(key, EPISODE))[1]


@functools.cache
def episode_fns(name, **config):
    """(vmapped-over-tasks, single-task) jitted episode functions, shared across tests."""
    family = envs.make(name, **config)
    fn = functools.partial(_episode, family)
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None))), jax.jit(fn)


@functools.cache
def split(name, **config):
    return envs.make(name, **config).train_test_split(0)


@pytest.mark.parametrize("name", ALL)
def test_shapes_determinism_and_vmap_equals_loop(name):
    family = envs.make(name)
    train, test = split(name)
    assert train.num_tasks == family.num_train and test.num_tasks == family.num_test
    assert train.attributes.shape == (family.num_train, family.attr_dim)
    assert np.all(np.isfinite(train.attributes))
    # Every training task in one batch: the physics tests below run this same program.
    batched, single = episode_fns(name)
    key = jax.random.PRNGKey(3)
    out = batched(train, key, 1.0)
    obs, act, rew, next_obs, done, _ = out
    n = family.num_train
    assert obs.shape == (n, EPISODE, family.obs_dim) and obs.dtype == jnp.float32
    assert act.shape == (n, EPISODE, family.action_dim)
    assert rew.shape == (n, EPISODE) and rew.dtype == jnp.float32
    assert done.shape == (n, EPISODE) and done.dtype == jnp.bool_
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(rew))
    assert np.all(np.abs(act) <= family.action_high + 1e-6)
    # the observation-level termination function agrees with the environment's
    assert family.horizon > EPISODE
    np.testing.assert_array_equal(np.asarray(family.terminal_obs(next_obs)), np.asarray(done))
    # consecutive steps chain: obs[t+1] == next_obs[t]
    np.testing.assert_array_equal(obs[:, 1:], next_obs[:, :-1])
    # determinism: same key, same trajectory
    again = batched(train, key, 1.0)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a, b)
    if name not in LOOP_CHECKED:
        return
    # vmap over tasks equals a Python loop over the same tasks (once per robot model). Batched
    # and unbatched kernels round differently in float32 and contacts amplify that, so: tight
    # over the first steps, looser over the episode (a wrong task or key gives differences
    # orders larger).
    for i in range(2):
        one = single(train[i], key, 1.0)
        for a, b in zip(out, one):
            np.testing.assert_allclose(a[i][:2], b[:2], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(a[i], b, rtol=1e-2, atol=1e-2)


def test_terminal_obs_is_the_unhealthy_condition_on_observations():
    pendulum, cheetah = envs.make("inverted_pendulum_gravity"), envs.make("halfcheetah_gravity")
    obs = np.zeros((4, pendulum.obs_dim), np.float32)
    obs[:, 1] = [0.19, -0.19, 0.21, -0.21]              # pole angle; |angle| > 0.2 ends
    np.testing.assert_array_equal(np.asarray(pendulum.terminal_obs(obs)), [0, 0, 1, 1])
    wild = np.full((2, cheetah.obs_dim), 50.0, np.float32)
    wild[1, 3] = np.nan                                 # no termination but a non-finite state
    np.testing.assert_array_equal(np.asarray(cheetah.terminal_obs(wild)), [0, 1])


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task family 'cheetah_velocity'.*cheetah_vel"):
        envs.make("cheetah_velocity")


def test_wrong_action_shape_is_a_clear_error():
    family = envs.make("hopper_gravity")
    task = split("hopper_gravity")[0][0]
    state = family.reset(task, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"action must have shape \(3,\), got \(4,\)"):
        family.step(task, state, jnp.zeros(4))


def test_task_from_another_family_is_a_clear_error():
    family = envs.make("hopper_dof_damping")
    other = split("hopper_gravity")[0][0]
    with pytest.raises(ValueError, match="family 'hopper_gravity', not 'hopper_dof_damping'"):
        family.reset(other, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="vmap over the leading axes"):
        family.reset(split("hopper_dof_damping")[0], jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="task params must have keys"):
        family.make_tasks({"gravity_scale": np.ones(2)})


# ------------------------------------------------------------------------------------ physics
def _height(name, obs):
    """Height of the dropped body (torso z-displacement), or the pendulum's pole angle."""
    return np.abs(obs[..., 1]) if name == "inverted_pendulum_gravity" else -obs[..., 0]


@pytest.mark.parametrize("name", [n for n in ALL if n.endswith("_gravity")])
def test_heavier_gravity_falls_faster(name):
    train, _ = split(name)
    scales = np.asarray(train.params["gravity_scale"])
    order = np.argsort(scales)
    batched, _ = episode_fns(name)
    obs = np.asarray(batched(train, jax.random.PRNGKey(0), 0.0)[3])  # next_obs, zero actions
    # Drop (or pole angle) over the first 3 control steps, before the ant's legs land.
    fallen = _height(name, obs[:, :3])[order]
    assert np.all(np.diff(fallen, axis=0) > 0), (scales[order], fallen)


def test_damping_changes_the_trajectory():
    name = "hopper_dof_damping"
    train, _ = split(name)
    batched, _ = episode_fns(name)
    obs = np.asarray(batched(train, jax.random.PRNGKey(0), 1.0)[3])
    scales = np.asarray(train.params["dof_damping_scale"])
    lo, hi = np.argmin(scales), np.argmax(scales)
    assert np.max(np.abs(obs[lo] - obs[hi])) > 1e-2
    # Same torques against more damping: slower hinge joints.
    joint_speed = np.abs(obs[:, :, -3:]).mean(axis=(1, 2))
    assert joint_speed[hi] < joint_speed[lo]


@pytest.mark.parametrize("name", MJX_FAMILIES)
def test_mjx_and_c_backends_agree(name):
    """The same tasks, start states and actions through both backends: the same trajectories
    within the solvers' tolerance (float32 MJX against float64 MuJoCo C, each solver stopping
    by its own rule), over the first steps tightly and over the episode loosely (a wrong task
    model, frame skip or state layout gives differences orders larger)."""
    train, _ = split(name)
    outs = [episode_fns(name, physics=p)[0](train, jax.random.PRNGKey(4), 1.0)
            for p in ("mjx", "c")]
    assert envs.make(name, physics="c").backend == "c"
    (obs_m, act_m, rew_m, nxt_m, done_m, _), (obs_c, act_c, rew_c, nxt_c, done_c, _) = outs
    np.testing.assert_array_equal(np.asarray(act_m), np.asarray(act_c))
    np.testing.assert_array_equal(np.asarray(obs_m[:, 0]), np.asarray(obs_c[:, 0]))  # resets
    # Errors relative to each observation dimension's scale (velocities reach tens); measured
    # 2026-12-02: at most 4e-4 over the first two steps, 1.1e-3 over the episode (ant,
    # halfcheetah), 1e-6-6e-5 for the others.
    nxt_m, nxt_c = np.asarray(nxt_m), np.asarray(nxt_c)
    error = np.abs(nxt_m - nxt_c) / (1.0 + np.abs(nxt_m).max(axis=(0, 1)))
    assert error[:, :2].max() < 2e-3 and error.max() < 2e-2, (error[:, :2].max(), error.max())
    np.testing.assert_allclose(rew_m, rew_c, rtol=1e-2, atol=1e-2)
    np.testing.assert_array_equal(np.asarray(done_m), np.asarray(done_c))


def test_c_backend_reports_divergence_as_a_non_finite_state():
    """MuJoCo C resets a simulation it finds diverging; the C backend returns NaN instead, so
    the family's non-finite termination ends the episode as MJX's NaNs do."""
    family = envs.make("halfcheetah_gravity", physics="c")
    task = split("halfcheetah_gravity")[0][0]
    state = family.reset(task, jax.random.PRNGKey(0))
    wild = state.physics.replace(qvel=state.physics.qvel.at[3].set(1e30))
    nxt = jax.jit(family.step)(task, state.replace(physics=wild), jnp.ones(family.action_dim))
    assert bool(nxt.terminated) and not np.all(np.isfinite(np.asarray(nxt.next_obs)))
    fine = jax.jit(family.step)(task, state, jnp.ones(family.action_dim))
    assert not bool(fine.terminated) and np.all(np.isfinite(np.asarray(fine.next_obs)))


@pytest.mark.parametrize("name", ["hopper_rand_params", "walker_rand_params"])
def test_rand_params_match_mujoco_c(name):
    # Converged solver settings: with a single Newton iteration MJX's and MuJoCo C's line searches
    # stop at different points once constraints are active, which is not a model difference.
    config = dict(iterations=4, ls_iterations=10, physics="mjx")
    family = envs.make(name, **config)
    train, _ = split(name, **config)
    tasks = train[:2]
    batched, _ = episode_fns(name, **config)
    key = jax.random.PRNGKey(5)
    _, act, _, _, _, qpos = map(np.asarray, batched(tasks, key, 1.0))
    state0 = jax.vmap(family.reset, in_axes=(0, None))(tasks, key)
    for i in range(2):
        params = {k: np.asarray(v[i]) for k, v in tasks.params.items()}
        m = family.build_mj_model(params)
        # The task's MJX model carries MuJoCo's derived constants, not stale nominal ones.
        ref = mjx.put_model(m)
        for f in ("body_mass", "body_inertia", "body_invweight0", "dof_invweight0", "dof_M0"):
            np.testing.assert_allclose(np.asarray(tasks.model[f][i]), np.asarray(getattr(ref, f)),
                                       rtol=1e-6, err_msg=f)
        assert not np.allclose(np.asarray(tasks.model["body_invweight0"][i]),
                               np.asarray(family.mx.body_invweight0))
        d = mujoco.MjData(m)
        d.qpos[:] = np.asarray(state0.physics.qpos[i])
        d.qvel[:] = np.asarray(state0.physics.qvel[i])
        for t in range(EPISODE):
            d.ctrl[:] = act[i, t]
            mujoco.mj_step(m, d, family.robot.frame_skip)
            np.testing.assert_allclose(qpos[i, t], d.qpos, atol=2e-4, err_msg=f"task {i} step {t}")


def test_cheetah_vel_reward_equals_formula():
    family = envs.make("cheetah_vel")
    train, _ = split("cheetah_vel")

    @jax.jit
    def one_step(task, key):
        s0 = family.reset(task, key)
        a = jax.random.uniform(key, (family.action_dim,), minval=-1.5, maxval=1.5)  # clipped
        return s0, family.step(task, s0, a), a

    task = train[3]
    s0, s1, a = one_step(task, jax.random.PRNGKey(2))
    v = (float(s1.physics.qpos[0]) - float(s0.physics.qpos[0])) / family.dt
    a = np.clip(np.asarray(a), -1, 1)
    expected = -abs(v - float(task.params["target_velocity"])) - 0.05 * np.sum(a ** 2)
    np.testing.assert_allclose(float(s1.reward), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(s1.info["x_velocity"]), v, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- point robot
def test_point_robot_oracle_reaches_goal_and_autoreset():
    family = envs.make("point_robot_sparse")
    train, _ = split("point_robot_sparse")
    task = train[0]
    goal = np.asarray(family.goal(task))
    np.testing.assert_allclose(np.linalg.norm(goal), 1.0, rtol=1e-6)
    assert goal[1] >= 0  # upper semicircle

    def oracle(obs, z, key):
        return 10.0 * (family.goal(task) - obs)  # in [-1, 1]: 0.1 x this, clipped by the env

    steps = 2 * family.horizon + 5
    final, tr = jax.jit(lambda k: envs.rollout(family, task, k, oracle, steps, 3))(
        jax.random.PRNGKey(0))
    r = np.asarray(tr.reward)[:, 0]
    # 0.1 per step along the line to a goal at distance 1: inside radius 0.2 from step 8 on.
    np.testing.assert_array_equal(r[:7], 0)
    np.testing.assert_array_equal(r[8:family.horizon], 1)
    trunc = np.asarray(tr.truncated)[:, 0]
    assert list(np.nonzero(trunc)[0]) == [family.horizon - 1, 2 * family.horizon - 1]
    # After the auto-reset the episode restarts at the origin; next_obs keeps the terminal obs.
    np.testing.assert_array_equal(np.asarray(tr.obs)[family.horizon, 0], [0, 0])
    assert np.linalg.norm(np.asarray(tr.next_obs)[family.horizon - 1, 0] - goal) < 0.2
    assert int(final.t[0]) == 5


def test_next_obs_from_obs_is_the_tasks_physics():
    """``next_obs_from_obs`` steps a task's MuJoCo C model from observed states: on the C
    backend's own episode it gives the recorded next observations, and under heavier gravity the
    torso's vertical velocity ends lower."""
    name = "walker2d_gravity"
    family = envs.make(name, physics="c")
    train, _ = split(name, physics="c")
    obs, act, _, nxt, done, _ = (np.asarray(x) for x in
                                 episode_fns(name, physics="c")[0](train, jax.random.PRNGKey(4),
                                                                   0.1))
    del done                            # family.step does not reset: every step is physics
    params = lambda i: {k: np.asarray(v)[i] for k, v in train.params.items()}
    for i in range(len(obs)):
        keep = np.all(np.abs(np.concatenate([obs[i, :, 8:], nxt[i, :, 8:]], -1)) < 10, -1)
        assert keep.sum() >= 4                                  # velocities not clipped
        np.testing.assert_allclose(family.next_obs_from_obs(params(i), obs[i, keep],
                                                            act[i, keep]),
                                   nxt[i, keep], rtol=1e-5, atol=1e-5)
    o, a = obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1])
    scales = np.asarray(train.params["gravity_scale"])
    light, heavy = (family.next_obs_from_obs(params(i), o, a)
                    for i in (np.argmin(scales), np.argmax(scales)))
    vz = 9                              # qvel[1] (root z) after qpos[1:] (8)
    assert np.mean(heavy[:, vz] - light[:, vz]) < 0, heavy[:, vz] - light[:, vz]
    # The pendulum: no hidden root coordinate, actions in [-3, 3] (the environment's units).
    name = "inverted_pendulum_gravity"
    family = envs.make(name, physics="c")
    train, _ = split(name, physics="c")
    obs, act, _, nxt, _, _ = (np.asarray(x) for x in episode_fns(name, physics="c")[0](
        train, jax.random.PRNGKey(4), 1.0))
    assert np.abs(act).max() > 1.0
    first = {k: np.asarray(v)[0] for k, v in train.params.items()}
    np.testing.assert_allclose(family.next_obs_from_obs(first, obs[0], act[0]), nxt[0],
                               rtol=1e-5, atol=1e-5)


def test_assets_load_as_mujoco_compiles_them_without_the_deprecated_totalmass_attribute():
    """``load_model`` applies an asset's ``<compiler settotalmass>`` after compiling (MuJoCo's
    advice): every array of every robot's model equals MuJoCo's own compilation of the file."""
    from jaxomrl.envs.mjx_family import ASSET_DIR, ROBOTS, load_model
    for robot in ROBOTS.values():
        ours = load_model(robot.xml, 4, 4)
        theirs = mujoco.MjModel.from_xml_path(str(ASSET_DIR / robot.xml))
        fields = [f for f in dir(theirs) if not f.startswith("_")
                  and isinstance(getattr(theirs, f), np.ndarray)]
        assert "body_mass" in fields and "dof_M0" in fields
        for f in fields:
            np.testing.assert_array_equal(getattr(ours, f), getattr(theirs, f),
                                          err_msg=f"{robot.xml} {f}")
    spec = mujoco.MjSpec.from_file(str(ASSET_DIR / ROBOTS["halfcheetah"].xml))
    assert spec.compiler.settotalmass == 14.0      # the case this is for
