"""MuJoCo MJX locomotion task families with per-task physics.

Models are Brax's MJX-ready copies of the Gym MuJoCo assets (``brax/envs/assets``); observations,
rewards, resets and termination follow Gym's ``*-v3`` environments (Brax's ports of them):

=================  ==========  ======================================  ===========================
robot              frame_skip  observation                             termination (when enabled)
=================  ==========  ======================================  ===========================
halfcheetah        5           qpos[1:], qvel (17)                     never
hopper             4           qpos[1:], clip(qvel, +-10) (11)         z<=0.7, |angle|>=0.2, |s|>=100
walker2d           4           qpos[1:], clip(qvel, +-10) (17)         z not in (0.8, 2), |angle|>=1
ant                5           qpos[2:], qvel (27; no contact forces)  z not in (0.2, 1)
inverted_pendulum  2           qpos, qvel (4)                          |pole angle| > 0.2
=================  ==========  ======================================  ===========================

z is the torso height (root slide + the torso frame's height in Brax's planar assets, whose rootz
has no reference offset, so ``qpos[1]`` in the observation is a displacement from 1.25 m). Every
family also terminates on a non-finite state. Forward velocity is the root x-position change
over the control step, as in Gym.

Per-task physics: a task's ``model`` holds every ``mjx.Model`` field that differs from the nominal
model, *including the constants MuJoCo derives from masses and inertias* (``body_invweight0``,
``dof_invweight0``, ``dof_M0``, ``actuator_acc0``, ...). Tasks are built on the host by setting
the parameters on an ``MjModel``, calling ``mj_setConst`` and ``mjx.put_model``; which fields to
keep is found once per family by diffing a perturbed model against the nominal one. Inside jitted
code the task's fields are written into the nominal ``mjx.Model`` with ``tree_replace``, so
``vmap`` over tasks batches only the fields that vary.

Solver settings (the defaults here): Newton solver with ``iterations=4`` and ``ls_iterations=4``
(MuJoCo's XML defaults are 100 / 50; the Brax assets use 4 / 50). A single Newton iteration is
cheaper but not converged, and it is unstable in a way a learning agent finds (README, "Known
issues", has the measurements); ``tests/test_envs.py`` checks MJX against MuJoCo C. Both are
constructor arguments (``envs.make(name, iterations=..., ls_iterations=...)``).

Backends (``backend``; ``envs.make(name, physics=...)``): ``"mjx"`` steps ``mjx.step`` inside
the jitted program; ``"c"`` steps MuJoCo C through a host callback (``jaxomrl.envs.mujoco_c``:
the task's ``build_mj_model``, the same solver settings, float64), with the same observations,
rewards, termination and resets computed in JAX around it. The physics state is ``mjx.Data``
or ``mujoco_c.CPhysics`` (``qpos``, ``qvel``).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from etils import epath
from mujoco import mjx

from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.envs.mujoco_c import CPhysics, CStepper

ASSET_DIR = epath.resource_path("brax") / "envs/assets"


@dataclasses.dataclass(frozen=True)
class Robot:
    """Static description of one robot: asset, control rate, observation, reward and termination."""

    xml: str
    frame_skip: int
    qpos_skip: int  # leading qpos entries hidden from the observation
    qvel_clip: Optional[float]
    reset_noise: float
    qvel_noise: str  # "uniform": U(-noise, noise); "normal": noise * N(0, 1) (Gym's conventions)
    ctrl_cost_weight: float
    healthy_reward: float
    healthy: Optional[Callable[[jax.Array, jax.Array, jax.Array], jax.Array]]  # (z, qpos, qvel)


def _hopper_healthy(z_range, angle_range, state_range=(-100.0, 100.0)):
    def healthy(z, qpos, qvel):
        angle = qpos[2]
        state = jnp.concatenate([qpos[2:], qvel])
        return (jnp.all((state > state_range[0]) & (state < state_range[1]))
                & (z > z_range[0]) & (z < z_range[1])
                & (angle > angle_range[0]) & (angle < angle_range[1]))
    return healthy


def _walker_healthy(z, qpos, qvel):
    del qvel
    angle = qpos[2]
    return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


def _ant_healthy(z, qpos, qvel):
    del qpos, qvel
    return (z >= 0.2) & (z <= 1.0)


def _pendulum_healthy(z, qpos, qvel):
    del z, qvel
    return jnp.abs(qpos[1]) <= 0.2


ROBOTS: Dict[str, Robot] = {
    "halfcheetah": Robot("half_cheetah.xml", 5, 1, None, 0.1, "normal", 0.1, 0.0, None),
    "hopper": Robot("hopper.xml", 4, 1, 10.0, 5e-3, "uniform", 1e-3, 1.0,
                    _hopper_healthy((0.7, np.inf), (-0.2, 0.2))),
    "walker2d": Robot("walker2d.xml", 4, 1, 10.0, 5e-3, "uniform", 1e-3, 1.0, _walker_healthy),
    "ant": Robot("ant.xml", 5, 2, None, 0.1, "normal", 0.5, 1.0, _ant_healthy),
    "inverted_pendulum": Robot("inverted_pendulum.xml", 2, 0, None, 0.01, "uniform", 0.0, 1.0,
                               _pendulum_healthy),
}


@functools.lru_cache(maxsize=None)
def load_model(xml: str, iterations: int, ls_iterations: int) -> mujoco.MjModel:
    """Loads a Brax asset as an ``MjModel`` with the Newton solver settings applied. An asset's
    ``<compiler settotalmass>`` (deprecated in MuJoCo; brax's half_cheetah.xml has it) is
    applied as MuJoCo advises, ``mj_setTotalmass`` and ``mj_setConst`` on the compiled model:
    the same model, without MuJoCo's deprecation warning in every process."""
    spec = mujoco.MjSpec.from_file(str(ASSET_DIR / xml))
    total = spec.compiler.settotalmass
    spec.compiler.settotalmass = -1
    m = spec.compile()
    if total > 0:
        mujoco.mj_setTotalmass(m, total)
        mujoco.mj_setConst(m, mujoco.MjData(m))
    m.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
    m.opt.iterations = iterations
    m.opt.ls_iterations = ls_iterations
    return m


def _leaf_paths(mx) -> Dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p)[1:]: np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(mx)}


def _get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- perturbations
class Perturbation:
    """How task parameters are drawn and written into an ``MjModel``."""

    def sample(self, key, num, m: mujoco.MjModel) -> Dict[str, jax.Array]:
        raise NotImplementedError

    def probe(self, m: mujoco.MjModel) -> Dict[str, np.ndarray]:
        """One task's params that perturb every affected field (finds the fields to keep)."""
        p = jax.device_get(self.sample(jax.random.PRNGKey(1), 1, m))
        return {k: v[0] for k, v in p.items()}

    def apply(self, m: mujoco.MjModel, params: Dict[str, np.ndarray]) -> None:
        """Writes one task's params into ``m`` in place (before ``mj_setConst``)."""

    def attributes(self, params: Dict[str, np.ndarray], m: mujoco.MjModel) -> np.ndarray:
        raise NotImplementedError

    def fixed_split(self) -> Optional[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]]:
        """Fixed (train, test) params, or None to split random draws."""
        return None

    def fixed_validation(self) -> Optional[Dict[str, np.ndarray]]:
        """Fixed validation params (with :meth:`fixed_split`), or None."""
        return None


class TargetVelocity(Perturbation):
    """Reward-varying tasks: target forward velocity ~ U(low, high); physics unchanged."""

    def __init__(self, low: float = 0.0, high: float = 3.0):
        self.low, self.high = float(low), float(high)

    def sample(self, key, num, m):
        return {"target_velocity": jax.random.uniform(key, (num,), minval=self.low,
                                                      maxval=self.high)}

    def attributes(self, params, m):
        return params["target_velocity"][:, None]


class ScaleSet(Perturbation):
    """One model field scaled by a scalar multiplier (ReDA's gravity / dof-damping task sets).

    ``train_test_split`` returns the fixed sets; ``sample_tasks`` draws log-uniformly over their
    range. Attribute: ``[log multiplier]``.
    """

    def __init__(self, field: str, train: Sequence[float], test: Sequence[float],
                 val: Sequence[float]):
        if field not in ("gravity", "dof_damping"):
            raise ValueError(f"unsupported scaled field {field!r}")
        self.field, self.train, self.test = field, tuple(train), tuple(test)
        self.val = tuple(val)
        values = self.train + self.test + self.val
        self.low, self.high = min(values), max(values)
        self.key = f"{field}_scale"

    def sample(self, key, num, m):
        u = jax.random.uniform(key, (num,), minval=np.log(self.low), maxval=np.log(self.high))
        return {self.key: jnp.exp(u)}

    def probe(self, m):
        return {self.key: np.float32(1.37)}

    def apply(self, m, params):
        s = float(params[self.key])
        if self.field == "gravity":
            m.opt.gravity[:] = m.opt.gravity * s
        else:
            m.dof_damping[:] = m.dof_damping * s

    def attributes(self, params, m):
        return np.log(params[self.key])[:, None]

    def fixed_split(self):
        return ({self.key: np.asarray(self.train, np.float32)},
                {self.key: np.asarray(self.test, np.float32)})

    def fixed_validation(self):
        return {self.key: np.asarray(self.val, np.float32)}


class RandParams(Perturbation):
    """``rand_param_envs`` (CORRO / FOCAL / CSRO): body mass, body inertia and geom friction each
    scaled element-wise by ``mass_base ** U(-r, r)``, dof damping by ``damping_base ** U(-r, r)``.

    The world body is left unscaled. Attributes: the natural-log multipliers of the elements that
    act on the dynamics: masses and inertias of the moving bodies, the sliding friction of every
    geom (contacts are condim 3, which use sliding friction only), and the damping of dofs whose
    nominal damping is non-zero.
    """

    FIELDS = ("body_mass", "body_inertia", "geom_friction", "dof_damping")

    def __init__(self, log_range: float = 3.0, mass_base: float = 1.5, damping_base: float = 1.3,
                 fields: Sequence[str] = FIELDS):
        unknown = set(fields) - set(self.FIELDS)
        if unknown:
            raise ValueError(f"unknown rand-params fields {sorted(unknown)}")
        self.log_range, self.fields = float(log_range), tuple(fields)
        self.bases = {f: (damping_base if f == "dof_damping" else mass_base) for f in self.fields}

    def sample(self, key, num, m):
        out = {}
        for f, k in zip(self.fields, jax.random.split(key, len(self.fields))):
            shape = getattr(m, f).shape
            u = jax.random.uniform(k, (num,) + shape, minval=-self.log_range,
                                   maxval=self.log_range)
            mult = jnp.power(self.bases[f], u)
            if f in ("body_mass", "body_inertia"):
                mult = mult.at[:, 0].set(1.0)  # world body
            out[f] = mult
        return out

    def apply(self, m, params):
        for f in self.fields:
            getattr(m, f)[:] = getattr(m, f) * params[f]

    def _masks(self, m):
        return {"body_mass": (slice(None), slice(1, None)),
                "body_inertia": (slice(None), slice(1, None)),
                "geom_friction": (slice(None), slice(None), 0),
                "dof_damping": (slice(None), np.asarray(m.dof_damping) != 0)}

    def attributes(self, params, m):
        masks = self._masks(m)
        n = next(iter(params.values())).shape[0]
        return np.concatenate([np.log(params[f][masks[f]]).reshape(n, -1) for f in self.fields],
                              axis=1)


# ----------------------------------------------------------------------------- family
BACKENDS = ("mjx", "c", "auto")


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"c"`` where JAX runs on the CPU, else ``"mjx"``; others unchanged."""
    if backend == "auto":
        return "c" if jax.default_backend() == "cpu" else "mjx"
    return backend


# Robots whose Gym / PEARL observation appends entries to this family's (kept: the first
# obs_dim): size and what they are (MJXFamily.from_gym_obs).
_GYM_LONGER_OBS = {"ant": (111, "Gym Ant's 111 (with contact forces)"),
                   "halfcheetah": (20, "PEARL HalfCheetah's 20 (with the torso's centre of mass)")}


class MJXFamily(TaskFamily):
    """A task family over one MJX robot. See the module docstring for dynamics and settings.

    Args:
      name: registry name.
      robot: key of ``ROBOTS``.
      perturbation: how tasks differ (``TargetVelocity``, ``ScaleSet``, ``RandParams``).
      reward: ``"locomotion"`` (forward velocity + healthy reward - ctrl cost; Gym), ``"alive"``
        (healthy reward only; InvertedPendulum) or ``"target_velocity"`` (-|v_x - v_target| -
        ``ctrl_cost_weight``·|a|²; Half-Cheetah-Vel).
      horizon: episode length in control steps.
      terminate_when_unhealthy: end episodes on the robot's unhealthy condition.
      ctrl_cost_weight: overrides the robot's control cost weight.
      iterations, ls_iterations: Newton solver settings.
      backend: ``"mjx"`` (the physics in XLA, any device) or ``"c"`` (MuJoCo C on the CPU's
        cores through a host callback: ``jaxomrl.envs.mujoco_c``); ``"auto"``: C when JAX's
        default backend is the CPU, MJX otherwise (benchmarks/README.md has the measurements).
      c_threads: MuJoCo C threads (default: every core this process may use).
    """

    info_keys = ("x_velocity", "ctrl_cost", "healthy")

    def __init__(self, name: str, robot: str, perturbation: Perturbation, *, reward: str,
                 horizon: int, terminate_when_unhealthy: bool = True,
                 ctrl_cost_weight: Optional[float] = None, num_train: int = 40,
                 num_test: int = 10, num_val: int = 10, iterations: int = 4, ls_iterations: int = 4,
                 backend: str = "mjx", c_threads: Optional[int] = None):
        if reward not in ("locomotion", "alive", "target_velocity"):
            raise ValueError(f"unknown reward {reward!r}")
        if reward == "target_velocity" and not isinstance(perturbation, TargetVelocity):
            raise ValueError("reward 'target_velocity' needs a TargetVelocity perturbation")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        fixed = perturbation.fixed_split()
        if fixed is not None:
            num_train, num_test = len(next(iter(fixed[0].values()))), len(next(iter(fixed[1].values())))
            num_val = len(next(iter(perturbation.fixed_validation().values())))
        super().__init__(name, num_train, num_test, num_val)
        self.robot = ROBOTS[robot]
        self.robot_name = robot
        self.perturbation = perturbation
        self.reward_kind = reward
        self.horizon = int(horizon)
        self.terminate = bool(terminate_when_unhealthy) and self.robot.healthy is not None
        self.ctrl_cost_weight = (self.robot.ctrl_cost_weight if ctrl_cost_weight is None
                                 else float(ctrl_cost_weight))
        self.iterations, self.ls_iterations = int(iterations), int(ls_iterations)

        self.mj_model = load_model(self.robot.xml, self.iterations, self.ls_iterations)
        m = self.mj_model
        self.mx = mjx.put_model(m)
        self.data0 = mjx.make_data(self.mx)
        self.dt = float(m.opt.timestep) * self.robot.frame_skip
        self.qpos0 = jnp.asarray(m.qpos0, jnp.float32)
        # Torso height = z-coordinate of the root joint + height of the torso body's frame. Brax's
        # planar assets place the torso at its height and give rootz no reference offset.
        self.z_index = 2 if self.robot.qpos_skip == 2 else 1
        self.z_offset = float(m.body_pos[1, 2]) if self.robot.qpos_skip == 1 else 0.0
        self.obs_dim = (m.nq - self.robot.qpos_skip) + m.nv
        self.action_dim = int(m.nu)
        lo, hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
        if not (np.allclose(lo, lo[0]) and np.allclose(hi, hi[0])):
            raise ValueError(f"{robot}: non-uniform control ranges are not supported")
        self.action_low, self.action_high = float(lo[0]), float(hi[0])
        self.model_fields = self._find_model_fields()
        self.attr_dim = int(self.perturbation.attributes(
            {k: np.asarray(v)[None] for k, v in self.perturbation.probe(m).items()}, m).shape[1])
        self.backend = resolve_backend(backend)
        self.c_stepper = (CStepper(self.build_mj_model, m, self.robot.frame_skip, c_threads)
                          if self.backend == "c" else None)

    # ---------------------------------------------------------------- tasks
    def _find_model_fields(self) -> Tuple[str, ...]:
        nominal = _leaf_paths(self.mx)
        perturbed = _leaf_paths(mjx.put_model(self.build_mj_model(self.perturbation.probe(
            self.mj_model))))
        return tuple(p for p, v in nominal.items()
                     if v.shape != perturbed[p].shape or not np.array_equal(v, perturbed[p]))

    def build_mj_model(self, params: Dict[str, np.ndarray]) -> mujoco.MjModel:
        """A MuJoCo C model of one task: params applied, derived constants recomputed."""
        m = copy.copy(self.mj_model)
        self.perturbation.apply(m, params)
        mujoco.mj_setConst(m, mujoco.MjData(m))
        return m

    def sample_params(self, key, num):
        return self.perturbation.sample(key, num, self.mj_model)

    def _make_tasks(self, params):
        n = next(iter(params.values())).shape[0]
        fields = {f: [] for f in self.model_fields}
        for i in range(n):
            mx = mjx.put_model(self.build_mj_model({k: v[i] for k, v in params.items()}))
            for f in self.model_fields:
                fields[f].append(np.asarray(_get_path(mx, f)))
        model = {f: jnp.asarray(np.stack(v)) for f, v in fields.items()}
        attributes = jnp.asarray(self.perturbation.attributes(params, self.mj_model), jnp.float32)
        return Task(params={k: jnp.asarray(v) for k, v in params.items()},
                    attributes=attributes, model=model, family=self.name)

    def train_test_split(self, seed: int = 0):
        fixed = self.perturbation.fixed_split()
        if fixed is None:
            return super().train_test_split(seed)
        return self.make_tasks(fixed[0]), self.make_tasks(fixed[1])

    def validation_tasks(self, seed: int = 0):
        fixed = self.perturbation.fixed_validation()
        if fixed is None:
            return super().validation_tasks(seed)
        return self.make_tasks(fixed)

    def model(self, task: Task):
        """The ``mjx.Model`` of one task (nominal model with the task's fields written in)."""
        return self.mx.tree_replace(task.model) if task.model else self.mx

    # ---------------------------------------------------------------- dynamics
    def _obs(self, qpos, qvel):
        if self.robot.qvel_clip is not None:
            qvel = jnp.clip(qvel, -self.robot.qvel_clip, self.robot.qvel_clip)
        return jnp.concatenate([qpos[self.robot.qpos_skip:], qvel]).astype(jnp.float32)

    def from_gym_obs(self, obs: np.ndarray) -> np.ndarray:
        """Gym's MuJoCo observation (``*-v2`` / ``-v3``) and that of PEARL's ``rlkit`` task
        environments, which the peers' data use (CORRO, BOReL, FOCAL, CSRO, Prompt-DT), in this
        family's convention. Hopper and Walker2d: Gym's ``rootz`` joint has a reference of 1.25 m,
        so its ``qpos[1]`` (observation entry 0) is the torso height, where Brax's assets give a
        displacement from it: entry 0 minus the torso frame's height. Ant: Gym's 111 entries are
        ``qpos[2:]`` (13), ``qvel`` (14) and 84 clipped contact forces, which this family does not
        observe: the first 27 are kept. HalfCheetah: PEARL's ``HalfCheetahEnv`` (the peers'
        Half-Cheetah-Vel) appends the torso's centre of mass (3) to Gym's 17: the first 17 are
        kept. Gym's HalfCheetah and inverted pendulum agree with this family's."""
        obs = np.array(obs, np.float32)
        d = obs.shape[-1]
        longer = _GYM_LONGER_OBS.get(self.robot_name)
        if longer is not None and d == longer[0]:
            return obs[..., :self.obs_dim]
        if d != self.obs_dim:
            raise ValueError(
                f"{self.name}: observations have {d} entries, this family's {self.obs_dim} "
                f"({self.robot_name}: qpos[{self.robot.qpos_skip}:], qvel)"
                + (f" or {longer[1]}" if longer else "") + "; no mapping is known")
        if self.robot_name in ("hopper", "walker2d"):
            obs[..., 0] -= self.z_offset
        return obs

    def check_relabel_reward(self) -> None:
        if self.reward_kind != "target_velocity":
            raise ValueError(f"{self.name}: its {self.reward_kind!r} reward cannot be relabelled "
                             "for another task (its tasks differ in their physics, not in their "
                             "reward), so reward relabelling is not available for this family")

    def relabel_reward(self, task, source, obs, action, next_obs, reward):
        """Target-velocity rewards ``-|v - v_target| - c·|a|²`` for another target, with the
        forward velocity ``v`` (the root's displacement over the step, which the observation
        omits) recovered from the recorded reward: ``v = v_source ± d``, ``d = -(reward +
        c·|a|²)``, the sign that of an estimate of ``v`` from the observations' root x velocity
        at the two ends of the step relative to ``v_source``. The estimate weighs them as the
        semi-implicit Euler substeps do under a constant acceleration (the displacement is
        ``h·Σ qvel_k`` over the ``n`` substeps: weight ``(n + 1) / 2n`` on the end). Exact
        whenever the estimate is nearer the right candidate, i.e. unless ``d`` is below its
        error (tests/test_relabel.py measures both); the two candidates are then within ``2d``
        of each other."""
        self.check_relabel_reward()
        ctrl = self.ctrl_cost_weight * jnp.sum(jnp.square(action))
        d = jnp.maximum(-(reward + ctrl), 0.0)
        v_source = source.params["target_velocity"]
        root = self.qpos0.shape[0] - self.robot.qpos_skip    # root x velocity in the observation
        n = self.robot.frame_skip
        w = (n + 1) / (2 * n)
        estimate = (1 - w) * obs[root] + w * next_obs[root]
        v = jnp.where(estimate >= v_source, v_source + d, v_source - d)
        return (-jnp.abs(v - task.params["target_velocity"]) - ctrl).astype(jnp.float32)

    def state_from_obs(self, obs):
        """``(qpos, qvel)`` of observations ``[..., obs_dim]``: the hidden root coordinates
        (``qpos[:qpos_skip]``, which no force depends on) zero, the velocities the
        observation's (so clipped where the robot clips them)."""
        nq = self.qpos0.shape[0] - self.robot.qpos_skip
        qpos = jnp.concatenate(
            [jnp.zeros(obs.shape[:-1] + (self.robot.qpos_skip,), obs.dtype), obs[..., :nq]], -1)
        return qpos, obs[..., nq:]

    def next_obs_from_obs(self, params: Dict[str, np.ndarray], obs: np.ndarray,
                          action: np.ndarray) -> np.ndarray:
        """The true physics of one task (``params``: its rows of ``Task.params``) from
        observed states: the next observation of each ``(obs [N, obs_dim], action [N,
        action_dim])`` (the environment's actions, in ``[action_low, action_high]``; a
        ``TaskData``'s are in [-1, 1]: ``types.scale_action``), one control step in MuJoCo C
        from :meth:`state_from_obs` (exact unless an observed velocity was clipped). Host code,
        for diagnostics (e.g. how much a task's physics changes a transition:
        ``research/model_discrimination.py``)."""
        model = self.build_mj_model({k: np.asarray(v) for k, v in params.items()})
        data = mujoco.MjData(model)
        qpos, qvel = (np.asarray(x, np.float64) for x in self.state_from_obs(np.asarray(obs)))
        action = np.clip(np.asarray(action, np.float64), self.action_low, self.action_high)
        next_qpos, next_qvel = np.empty_like(qpos), np.empty_like(qvel)
        for i in range(len(qpos)):
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:], data.ctrl[:] = qpos[i], qvel[i], action[i]
            mujoco.mj_step(model, data, nstep=self.robot.frame_skip)
            next_qpos[i], next_qvel[i] = data.qpos, data.qvel
        return np.asarray(jax.vmap(self._obs)(jnp.asarray(next_qpos), jnp.asarray(next_qvel)))

    def terminal_obs(self, obs):
        """The unhealthy condition of ``_step`` evaluated on observations (hidden root
        coordinates, which no condition reads, are zero; velocities are the observation's,
        clipped where the robot clips them)."""
        finite = jnp.all(jnp.isfinite(obs), axis=-1)
        if not self.terminate:
            return jnp.logical_not(finite)
        qpos, qvel = self.state_from_obs(obs)
        healthy = jnp.vectorize(
            lambda q, v: self.robot.healthy(q[self.z_index] + self.z_offset, q, v),
            signature="(p),(v)->()")(qpos, qvel)
        return jnp.logical_not(finite & healthy)

    def _reset(self, task, key):
        kq, kv = jax.random.split(key)
        noise = self.robot.reset_noise
        nq, nv = self.qpos0.shape[0], self.data0.qvel.shape[0]
        qpos = self.qpos0 + jax.random.uniform(kq, (nq,), minval=-noise, maxval=noise)
        if self.robot.qvel_noise == "uniform":
            qvel = jax.random.uniform(kv, (nv,), minval=-noise, maxval=noise)
        else:
            qvel = noise * jax.random.normal(kv, (nv,))
        if self.backend == "c":
            return CPhysics(qpos=qpos, qvel=qvel), self._obs(qpos, qvel)
        data = self.data0.replace(qpos=qpos, qvel=qvel)
        return data, self._obs(qpos, qvel)

    # Fields an mjx.step reads from the previous step; everything else it recomputes.
    _STATE_FIELDS = ("qpos", "qvel", "act", "qacc_warmstart", "time", "ctrl")

    def _merge_reset(self, done, fresh, physics):
        if self.backend == "c":
            return super()._merge_reset(done, fresh, physics)
        return physics.replace(**{f: jnp.where(done, getattr(fresh, f), getattr(physics, f))
                                  for f in self._STATE_FIELDS})

    def _step(self, task, data, action, t):
        x_before = data.qpos[0]
        if self.backend == "c":
            data = self.c_stepper(task.params, data, action)
        else:
            model = self.model(task)
            data = data.replace(ctrl=action)
            data = jax.lax.fori_loop(0, self.robot.frame_skip, lambda _, d: mjx.step(model, d),
                                     data)
        qpos, qvel = data.qpos, data.qvel
        x_velocity = (qpos[0] - x_before) / self.dt
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(action))
        finite = jnp.all(jnp.isfinite(qpos)) & jnp.all(jnp.isfinite(qvel))
        healthy = finite
        if self.robot.healthy is not None:
            z = qpos[self.z_index] + self.z_offset
            healthy = healthy & self.robot.healthy(z, qpos, qvel)
        if self.reward_kind == "target_velocity":
            reward = -jnp.abs(x_velocity - task.params["target_velocity"]) - ctrl_cost
        else:
            alive = self.robot.healthy_reward * (1.0 if self.terminate else healthy)
            forward = x_velocity if self.reward_kind == "locomotion" else 0.0
            reward = forward + alive - ctrl_cost
        terminated = jnp.logical_not(finite)
        if self.terminate:
            terminated = jnp.logical_not(healthy)
        info = {"x_velocity": x_velocity, "ctrl_cost": ctrl_cost,
                "healthy": healthy.astype(jnp.float32)}
        return data, self._obs(qpos, qvel), reward, terminated, info
