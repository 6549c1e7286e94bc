"""MuJoCo C physics behind the jittable env API: the CPU backend of the MJX task families.

``MJXFamily(..., backend="c")`` keeps the family's pure-function API (``reset`` / ``step`` /
``step_autoreset``, ``vmap`` over tasks and environments, ``jit`` over whole episodes), but every
control step's physics runs in MuJoCo C: one ``jax.pure_callback`` per batch of environments
(``vmap_method="broadcast_all"``, so any nesting of ``vmap`` arrives as one batch) hands the
batch's states, actions and task parameters to :class:`CStepper`, which steps them with
``mujoco.rollout`` (``frame_skip`` physics steps each, one ``MjModel`` per environment: its task's
model with MuJoCo's derived constants recomputed, cached per task) on a persistent thread pool
over the machine's cores.

Semantics match the MJX backend's, with MuJoCo C's numerics (float64, its own solver stopping
rule): every control step starts its constraint solver from a zero warm start (``mujoco.rollout``
takes one in and gives none back; the solver then starts from the unconstrained acceleration),
and a simulation MuJoCo finds diverging (which MuJoCo C resets in place) comes back as a
non-finite state, so the family's non-finite termination ends the episode as with MJX's NaNs.
Deterministic: each environment's step depends only on its own inputs, whatever thread runs it.

The physics state an ``EnvState`` carries is :class:`CPhysics` (``qpos``, ``qvel``, float32).
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import rollout as mj_rollout

# The state vector mujoco.rollout takes and returns (time, qpos, qvel, act, history, mocap,
# plugin state); the task families' robots have no activations, mocap bodies or plugins.
STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
# Rollouts start at this simulation time: MuJoCo C resets a diverging simulation (time 0 again),
# which is how a step's divergence is told apart from a valid state.
_START_TIME = 1.0


@struct.dataclass
class CPhysics:
    """One environment's physics state under the C backend."""

    qpos: jax.Array
    qvel: jax.Array


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _rows(params: Dict[str, np.ndarray]) -> np.ndarray:
    """``[B, P]``: every environment's task parameters, one row each (keys sorted)."""
    b = next(iter(params.values())).shape[0]
    return np.ascontiguousarray(np.concatenate(
        [np.asarray(params[k], np.float32).reshape(b, -1) for k in sorted(params)], axis=1))


class CStepper:
    """Steps batches of environments of one robot in MuJoCo C, each with its own task's model.

    Args:
      build_model: ``build_model(params) -> MjModel`` of one task (its parameters, one row of
        every ``Task.params`` entry), derived constants recomputed (``MJXFamily.build_mj_model``).
      nominal: the nominal ``MjModel`` (sizes; the threads' scratch data).
      frame_skip: physics steps per control step.
      threads: MuJoCo threads (default: every core this process may use; 0: the calling thread).
    """

    def __init__(self, build_model: Callable[[Dict[str, np.ndarray]], mujoco.MjModel],
                 nominal: mujoco.MjModel, frame_skip: int, threads: Optional[int] = None):
        self.build_model, self.frame_skip = build_model, int(frame_skip)
        self.nq, self.nv, self.nu = int(nominal.nq), int(nominal.nv), int(nominal.nu)
        self.nstate = int(mujoco.mj_stateSize(nominal, STATE_SPEC))
        if self.nstate != 1 + self.nq + self.nv:
            raise ValueError("the C backend supports models whose physics state is time, qpos "
                             f"and qvel only (nstate {self.nstate} != 1 + nq + nv)")
        self.threads = default_threads() if threads is None else int(threads)
        self._nominal = nominal
        self._models: Dict[bytes, mujoco.MjModel] = {}
        self._lock = threading.Lock()
        self._pool = None
        self._datas = None
        self._last_key, self._last_models = None, None
        self._bufs = None

    def _pool_and_datas(self):
        if self._pool is None:
            self._pool = mj_rollout.Rollout(nthread=self.threads)
            self._datas = [mujoco.MjData(self._nominal) for _ in range(max(self.threads, 1))]
        return self._pool, self._datas

    def _buffers(self, b: int):
        """Output and warm-start arrays for a batch of ``b`` (kept for the next call of the same
        size): states ``[b, frame_skip, nstate]``, sensor data, zero warm starts ``[b, nv]``."""
        if self._bufs is None or self._bufs[0].shape[0] != b:
            self._bufs = (np.empty((b, self.frame_skip, self.nstate)),
                          np.empty((b, self.frame_skip, self._nominal.nsensordata)),
                          np.zeros((b, self.nv)))
        return self._bufs

    def model_for(self, params: Dict[str, np.ndarray]) -> mujoco.MjModel:
        """The cached model of the task with parameters ``params`` (one task's rows)."""
        params = {k: np.asarray(v, np.float32) for k, v in params.items()}
        key = _rows({k: v[None] for k, v in params.items()}).tobytes()
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self.build_model(params)
        return model

    def models_for(self, params: Dict[str, np.ndarray]) -> list:
        """Every environment's model (``params`` ``{k: [B, ...]}``); the list is kept while the
        batch's tasks stay the same (the usual case: every step of a rollout)."""
        rows = _rows(params)
        key = rows.tobytes()
        if key != self._last_key:
            _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
            per_task = [self.model_for({k: v[i] for k, v in params.items()}) for i in first]
            self._last_key, self._last_models = key, [per_task[j] for j in inverse.ravel()]
        return self._last_models

    def step_batch(self, params: Dict[str, np.ndarray], qpos: np.ndarray, qvel: np.ndarray,
                   ctrl: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """One control step of ``B`` environments: ``params`` ``{k: [B, ...]}``, ``qpos [B, nq]``,
        ``qvel [B, nv]``, ``ctrl [B, nu]`` -> ``(qpos, qvel)`` float32 (NaN where the
        simulation diverged)."""
        b = qpos.shape[0]
        with self._lock:
            models = self.models_for(params)
            state = np.empty((b, self.nstate))
            state[:, 0] = _START_TIME
            state[:, 1:1 + self.nq] = qpos
            state[:, 1 + self.nq:] = qvel
            control = np.empty((b, self.frame_skip, self.nu))
            control[:] = np.asarray(ctrl, np.float64)[:, None]
            out, sensordata, warmstart = self._buffers(b)
            pool, datas = self._pool_and_datas()
            # skip_checks: the per-call shape checks loop over every environment's model in
            # Python (~3 calls a model); the models all come from build_model of one robot
            # and the arrays are built here with the shapes rollout.cc expects.
            pool.rollout(models, datas, state, control, skip_checks=True, nstep=self.frame_skip,
                         initial_warmstart=warmstart, state=out, sensordata=sensordata)
            last = out[:, -1]                        # (the buffers are reused: read here)
            diverged = last[:, 0] < _START_TIME      # reset by MuJoCo on the way
            q = np.where(diverged[:, None], np.nan, last[:, 1:1 + self.nq]).astype(np.float32)
            v = np.where(diverged[:, None], np.nan, last[:, 1 + self.nq:]).astype(np.float32)
        return q, v

    def __call__(self, params: Dict[str, jax.Array], physics: CPhysics,
                 action: jax.Array) -> CPhysics:
        """Jittable, vmappable: one environment's control step (batched by ``vmap``)."""
        nq, nv = self.nq, self.nv

        def host(p, qpos, qvel, ctrl):
            lead = np.shape(qpos)[:-1]                 # the vmapped axes, broadcast
            flat = lambda x: np.asarray(x).reshape((-1,) + np.shape(x)[len(lead):])
            q, v = self.step_batch({k: flat(x) for k, x in p.items()}, flat(qpos), flat(qvel),
                                   flat(ctrl))
            return q.reshape(lead + (nq,)), v.reshape(lead + (nv,))

        out = (jax.ShapeDtypeStruct((nq,), jnp.float32), jax.ShapeDtypeStruct((nv,), jnp.float32))
        q, v = jax.pure_callback(host, out, params, physics.qpos, physics.qvel, action,
                                 vmap_method="broadcast_all")
        return CPhysics(qpos=q, qvel=v)
