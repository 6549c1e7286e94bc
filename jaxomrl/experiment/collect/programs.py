"""The jitted programs of a collection (SAC chunks, checkpoint rollouts and evaluation, all
tasks at once), its resumable state, and the diagnosis of a non-finite chunk."""
from __future__ import annotations

import functools
import os
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxomrl import envs
from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.errors import NonFiniteError, tree_all_finite
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.collect.config import CollectConfig
from jaxomrl.learners.online_sac import OnlineSACConfig, OnlineSACState, make_online_sac


@struct.dataclass
class CollectState:
    """Everything a resumed collection needs; leading axis ``[T]`` on per-task leaves."""

    sac: OnlineSACState      # [T] (one agent, no task axis, if conditioned)
    bank: Any                # actor params [T, K + 1, ...] ([K + 1, ...] if conditioned)
    curve: jax.Array         # [K + 1, T] mean training-episode return per chunk (nan: none)
    chunk: jax.Array         # [] chunks completed


class Programs:
    """The jitted programs of one configuration (cached: tests and reruns share compilations).
    Per-task SAC: one agent per task, ``vmap``-ped; conditioned: one agent for the batch."""

    def __init__(self, family: TaskFamily, online_config: OnlineSACConfig,
                 checkpoint_interval: int, num_checkpoints: int, rollout_envs: int,
                 deterministic: bool):
        online = make_online_sac(family, online_config)
        self.online = online
        self.conditioned = conditioned = online_config.conditioned
        k_total = num_checkpoints + 1

        def init(key, task):
            state = online.init(key, task)
            bank = jax.tree_util.tree_map(
                lambda p: jnp.zeros((k_total,) + p.shape, p.dtype).at[0].set(p),
                state.agent.actor_params)
            return state, bank

        def chunk(state, bank, task, k):
            state, metrics = online.iterate(state, task, checkpoint_interval)
            bank = jax.tree_util.tree_map(lambda b, p: b.at[k].set(p), bank,
                                          state.agent.actor_params)
            return state, bank, metrics

        def rollout(actor_params, task, key, num_steps):
            act = online.sac.make_policy(actor_params, deterministic)

            def policy(obs, z, k):
                return act(online.policy_input(obs, task), z, k)
            return envs.rollout(family, task, key, policy, num_steps, rollout_envs)[1]

        def first_episode_return(actor_params, task, key):
            tr = rollout(actor_params, task, key, family.horizon)   # [horizon, envs]
            done = tr.terminated | tr.truncated
            before = jnp.cumsum(done, axis=0) - done                 # episodes ended earlier
            return jnp.mean(jnp.sum(jnp.where(before == 0, tr.reward, 0.0), axis=0))

        def finite(state, num_tasks):  # [T, 3]: agent, replay buffer, each task's observations
            obs = jnp.reshape(state.env.obs, (num_tasks, -1))
            shared = jnp.stack([tree_all_finite(state.agent), tree_all_finite(state.buffer)])
            return jnp.concatenate([jnp.broadcast_to(shared, (num_tasks, 2)),
                                    jnp.all(jnp.isfinite(obs), axis=1)[:, None]], axis=1)

        if conditioned:
            self.init = jax.jit(lambda keys, tasks: init(keys[0], tasks))
            self.chunk = jax.jit(chunk)
            self.finite = jax.jit(finite, static_argnums=1)
        else:
            self.init = jax.jit(jax.vmap(init))
            self.chunk = jax.jit(jax.vmap(chunk, in_axes=(0, 0, 0, None)))
            self.finite = jax.jit(jax.vmap(lambda st: finite(st, 1)[0]))
        bank_axis = None if conditioned else 0
        # tasks x checkpoints: mean return of every env's first episode [T, C]
        self.evaluate = jax.jit(jax.vmap(jax.vmap(first_episode_return, in_axes=(0, None, 0)),
                                         in_axes=(bank_axis, 0, 0)))
        # tasks (outer) x checkpoints (inner): Transition [T, C, steps, envs]
        self.rollout = jax.jit(
            jax.vmap(jax.vmap(rollout, in_axes=(0, None, 0, None)), in_axes=(0, 0, 0, None)),
            static_argnums=3)

    def task_params(self, bank, ids: np.ndarray):
        """Actor parameters ``[T, C, ...]`` of checkpoints ``ids [T, C]`` of every task."""
        if self.conditioned:
            return jax.tree_util.tree_map(lambda b: b[ids], bank)
        rows = np.arange(ids.shape[0])[:, None]
        return jax.tree_util.tree_map(lambda b: b[rows, ids], bank)

    def check_finite(self, sac_state, num_tasks: int) -> np.ndarray:
        return np.asarray(self.finite(sac_state, num_tasks) if self.conditioned
                          else self.finite(sac_state))


@functools.lru_cache(maxsize=8)
def _cached_programs(*args) -> Programs:
    return Programs(*args)


def programs_for(config: CollectConfig) -> Programs:
    """Programs depend on these fields only (seeds, tasks and budgets are arguments / shapes)."""
    return _cached_programs(config.make_family(), config.online, config.checkpoint_interval,
                            config.num_checkpoints, config.rollout_envs, config.deterministic)


def fresh_state(progs: Programs, config: CollectConfig, tasks: Task) -> CollectState:
    """The state before any SAC step: every task's agent from ``config.seed``."""
    keys = jax.random.split(jax.random.PRNGKey(config.seed), tasks.num_tasks)
    sac_state, bank = progs.init(keys, tasks)
    return CollectState(sac=sac_state, bank=bank,
                        curve=jnp.full((config.num_checkpoints + 1, tasks.num_tasks), jnp.nan),
                        chunk=jnp.zeros((), jnp.int32))


def restore_state(ckpt: Checkpointer, step: int, progs: Programs, config: CollectConfig,
                  tasks: Task) -> CollectState:
    """The state ``ckpt`` saved after chunk ``step`` (its structure: ``fresh_state``'s)."""
    return ckpt.restore(step, jax.eval_shape(functools.partial(fresh_state, progs, config,
                                                               tasks)))


def evaluation_keys(config: CollectConfig, num_tasks: int) -> jax.Array:
    """``[T, K + 1]`` keys of the checkpoints' evaluation (one per task x checkpoint)."""
    return jax.vmap(lambda t: jax.random.split(jax.random.fold_in(
        jax.random.PRNGKey(config.seed), 3 + t), config.num_checkpoints + 1))(
            jnp.arange(num_tasks))


def check_finite(progs: Programs, config: CollectConfig, tasks: Task, state: CollectState,
                  metrics: Dict[str, Any], chunk: int, out_dir: str) -> None:
    """Raises ``NonFiniteError`` naming the tasks and env steps if SAC's parameters, replay
    buffer, the simulated observations or the losses of ``chunk`` (0: the warm-up) are not
    finite. Called before the chunk is checkpointed, so the last checkpoint stays finite."""
    parts = progs.check_finite(state.sac, tasks.num_tasks)               # [T, 3]
    losses = {k: np.broadcast_to(np.asarray(v), (tasks.num_tasks,)) for k, v in metrics.items()
              if k not in ("episode_return", "episodes")}                # [T] each
    bad_loss = {k: ~np.isfinite(v) for k, v in losses.items()}
    bad = ~parts.all(1) | np.any([v for v in bad_loss.values()] or [np.zeros(len(parts), bool)],
                                 axis=0)
    if not bad.any():
        return
    t = int(np.argmax(bad))
    agent_ok, buffer_ok, obs_ok = parts[t]
    nan_losses = [k for k, v in bad_loss.items() if v[t]]
    if not agent_ok:
        what = "the SAC agent diverged (non-finite parameters"
        what += f"; losses {', '.join(nan_losses)})" if nan_losses else ")"
    elif not (buffer_ok and obs_ok):
        what = ("the simulation blew up under a finite agent (non-finite "
                f"{'observations' if not obs_ok else 'replay-buffer transitions'})")
    else:
        what = f"non-finite losses {', '.join(nan_losses)}"
    per_chunk = config.env_steps_per_checkpoint
    warm = config.online.warmup_iterations * config.online.num_envs
    steps = (f"in the warm-up (env steps 1-{warm} per task)" if chunk == 0 else
             f"between env steps {warm + (chunk - 1) * per_chunk + 1:,} and "
             f"{warm + chunk * per_chunk:,} per task (checkpoint {chunk} of "
             f"{config.num_checkpoints})")
    attrs = np.round(np.asarray(tasks.attributes[t], np.float64), 4).tolist()
    kept = (f"checkpoint {chunk - 1}, the last finite one, is kept in "
            f"{os.path.join(out_dir, 'sac_checkpoints')}" if chunk else "nothing was saved")
    raise NonFiniteError(
        f"collection on {config.family} became non-finite {steps}: in task {t} (attributes "
        f"{attrs}) {what}; tasks affected: "
        f"{np.flatnonzero(bad).tolist()}. No dataset was written and {kept}; change the SAC "
        "settings (learning rate, batch, updates per iteration) and collect into a new "
        "--out_dir")
