"""Online SAC in a task family: one agent per task, trained in parallel environments.

``make_online_sac(family, config)`` returns ``OnlineSAC(init, update, iterate)``, the learner
shape with the task as the batch:

    state = init(key, task)                       # agent, replay buffer, envs; runs the warm-up
    state, metrics = update(state, task, key)     # one iteration
    state, metrics = iterate(state, task, num_iterations)   # lax.scan over iterations

The randomness of an online learner lives in its state (its environments and replay buffer are
part of it, with the PRNG stream that drives them), so ``update``'s ``key`` is unused: ``n``
calls of ``update`` equal ``iterate(state, task, n)`` step for step.

An iteration steps all ``num_envs`` auto-resetting environments once with actions sampled from
the current policy, appends the transitions to the task's replay buffer, and performs
``updates_per_iteration`` SAC updates on minibatches from it. Both functions are pure, so

    jax.jit(jax.vmap(iterate, in_axes=(0, 0, None)), static_argnums=2)(states, tasks, n)

trains an independent agent on every task of a batch in one program (per-task parameters,
buffers, environments and PRNG streams).

With ``OnlineSACConfig(conditioned=True)`` there is instead ONE agent for a whole batch of tasks:
``init(key, tasks)`` / ``iterate(state, tasks, n)`` take the tasks with their leading ``[T]`` axis
(no ``vmap``), run ``num_envs`` environments of every task, and the agent sees each observation
with its task's attribute vector appended (``policy_input``); one replay buffer holds every
task's transitions. Skills then transfer between neighbouring tasks (e.g. target velocities),
and every update serves all tasks -- on a CPU, where a SAC update costs many MJX steps
(``benchmarks/collection_cost.py``), this is what lets Half-Cheetah-Vel's 50 tasks reach expert
behaviour within the ``cpu`` preset's budget (research/NOTES.md). The agent's checkpoints,
conditioned on each task in turn, give that task's poor-to-expert behaviour. ``episode_return``
is then per task (``[T]``). The papers collect with per-task SAC (the default).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxomrl.errors import check_finite_fields
from jaxomrl.data.replay import ReplayBuffer, replay_add, replay_init, replay_sample
from jaxomrl.envs.base import EnvState, Task, TaskFamily
from jaxomrl.learners.base import InitFn, UpdateFn
from jaxomrl.learners.sac import SAC, SACConfig, SACState, make_sac
from jaxomrl.types import Transition, scale_action


@dataclasses.dataclass(frozen=True)
class OnlineSACConfig:
    sac: SACConfig = SACConfig()
    num_envs: int = 8
    buffer_capacity: int = 100_000
    warmup_steps: int = 1_000           # env steps per task with uniform actions, no updates
    updates_per_iteration: int = 1      # gradient updates per step of all num_envs envs
    train_reward: str = "reward"        # "reward", or an info key of the family (reward shaping)
    conditioned: bool = False           # one agent for all tasks, on [obs, task attributes]

    def __post_init__(self):
        check_finite_fields(self)
        if self.num_envs < 1 or self.updates_per_iteration < 0 or self.warmup_steps < 0:
            raise ValueError("num_envs must be >= 1; updates_per_iteration, warmup_steps >= 0")
        if self.buffer_capacity < self.num_envs:
            raise ValueError(f"buffer_capacity ({self.buffer_capacity}) must hold at least one "
                             f"step of all envs ({self.num_envs})")

    @property
    def warmup_iterations(self) -> int:
        """Steps of all envs in the warm-up (``warmup_steps`` rounded up to whole steps)."""
        return math.ceil(self.warmup_steps / self.num_envs)

    def validate_for(self, family: TaskFamily) -> None:
        if self.train_reward != "reward" and self.train_reward not in family.info_keys:
            raise ValueError(f"train_reward {self.train_reward!r} is neither 'reward' nor an info "
                             f"key of {family.name} ({', '.join(family.info_keys) or 'none'})")


@struct.dataclass
class OnlineSACState:
    agent: SACState
    buffer: ReplayBuffer
    env: EnvState            # [num_envs]
    key: jax.Array
    episode_return: jax.Array  # [num_envs] task-reward return of the running episodes
    env_steps: jax.Array     # [] environment steps taken (all envs)


class OnlineSAC(NamedTuple):
    init: InitFn
    update: UpdateFn
    iterate: Callable[[OnlineSACState, Task, int], Tuple[OnlineSACState, Dict[str, jax.Array]]]
    sac: SAC
    config: OnlineSACConfig
    # the agent's input for observations ``[..., obs_dim]`` of one ``task``
    policy_input: Callable[[jax.Array, Task], jax.Array]


def make_online_sac(family: TaskFamily, config: OnlineSACConfig) -> OnlineSAC:
    config.validate_for(family)
    conditioned = config.conditioned
    in_dim = family.obs_dim + (family.attr_dim if conditioned else 0)
    sac = make_sac(config.sac, in_dim, family.action_dim)

    def policy_input(obs, task):
        if not conditioned:
            return obs
        attrs = jnp.broadcast_to(task.attributes, obs.shape[:-1] + task.attributes.shape[-1:])
        return jnp.concatenate([obs, attrs.astype(obs.dtype)], -1)

    def env_tasks(task):
        """Per-task mode: the task. Conditioned: ``[T * num_envs]`` tasks, one per env."""
        if not conditioned:
            return task
        return jax.tree_util.tree_map(lambda x: jnp.repeat(x, config.num_envs, axis=0), task)

    step_envs = jax.vmap(family.step_autoreset, in_axes=(0 if conditioned else None, 0, 0))

    def iterations(state: OnlineSACState, task: Task, num_iterations: int,
                   random_actions: bool):
        per_env = env_tasks(task)
        num_envs = state.episode_return.shape[0]
        num_tasks = task.num_tasks if conditioned else 1

        def body(s: OnlineSACState, _):
            key, k_act, k_upd = jax.random.split(s.key, 3)
            obs = policy_input(s.env.obs, per_env)
            if random_actions:
                action = jax.random.uniform(k_act, (num_envs, family.action_dim), minval=-1.0,
                                            maxval=1.0)
            else:
                action = sac.make_policy(s.agent.actor_params)(obs, None, k_act)
            nxt = step_envs(per_env, s.env,
                            scale_action(action, family.action_low, family.action_high))
            reward = nxt.reward if config.train_reward == "reward" else nxt.info[config.train_reward]
            buffer = replay_add(s.buffer, Transition(
                obs=obs, action=action, reward=reward,
                next_obs=policy_input(nxt.next_obs, per_env),
                terminated=nxt.terminated, truncated=nxt.truncated))
            ep_return = s.episode_return + nxt.reward
            done = nxt.done
            by_task = lambda x: jnp.sum(jnp.reshape(x, (num_tasks, -1)), axis=1)   # [tasks]
            finished = (by_task(jnp.where(done, ep_return, 0.0)), by_task(done))
            agent, metrics = s.agent, {}
            if not random_actions and config.updates_per_iteration > 0:
                def update(agent, k):
                    k_batch, k_sac = jax.random.split(k)
                    batch = replay_sample(buffer, k_batch, config.sac.batch_size)
                    return sac.update(agent, batch, k_sac)

                agent, metrics = jax.lax.scan(
                    update, agent, jax.random.split(k_upd, config.updates_per_iteration))
                metrics = jax.tree_util.tree_map(jnp.mean, metrics)
            new = OnlineSACState(agent=agent, buffer=buffer, env=nxt, key=key,
                                 episode_return=jnp.where(done, 0.0, ep_return),
                                 env_steps=s.env_steps + num_envs)
            return new, (finished, metrics)

        state, ((ret_sum, ret_count), metrics) = jax.lax.scan(body, state, None, num_iterations)
        count = jnp.sum(ret_count, axis=0)                                   # [tasks]
        out = {k: jnp.mean(v) for k, v in metrics.items()}
        ret = jnp.where(count > 0, jnp.sum(ret_sum, axis=0) / jnp.maximum(count, 1), jnp.nan)
        out["episode_return"] = ret if conditioned else ret[0]
        out["episodes"] = count if conditioned else count[0]
        return state, out

    def init(key: jax.Array, batch: Task) -> OnlineSACState:
        """A fresh agent, buffer and environments in ``batch``: the task (a conditioned agent:
        the tasks ``[T]``) it will interact with."""
        task = batch
        k_agent, k_env, k_run = jax.random.split(key, 3)
        if conditioned:
            if task.attributes.ndim != 2:
                raise ValueError("a conditioned agent trains on a batch of tasks [T]")
            jax.vmap(family.check_task)(task)
        else:
            family.check_task(task)
        per_env = env_tasks(task)
        num_envs = config.num_envs * (task.num_tasks if conditioned else 1)
        env = jax.vmap(family.reset, in_axes=(0 if conditioned else None, 0))(
            per_env, jax.random.split(k_env, num_envs))
        example = Transition(obs=jnp.zeros(in_dim), action=jnp.zeros(family.action_dim),
                             reward=jnp.zeros(()), next_obs=jnp.zeros(in_dim),
                             terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool))
        state = OnlineSACState(agent=sac.init(k_agent),
                               buffer=replay_init(example, config.buffer_capacity), env=env,
                               key=k_run, episode_return=jnp.zeros(num_envs),
                               env_steps=jnp.zeros((), jnp.int32))
        if config.warmup_iterations:
            state, _ = iterations(state, task, config.warmup_iterations, random_actions=True)
        return state

    def update(state: OnlineSACState, batch: Task, key: jax.Array):
        """One iteration in the task(s) ``batch`` (``key`` unused: the state carries its own
        PRNG stream, so that resumed collections draw as uninterrupted ones)."""
        del key
        return iterations(state, batch, 1, random_actions=False)

    def iterate(state: OnlineSACState, task: Task, num_iterations: int):
        return iterations(state, task, num_iterations, random_actions=False)

    return OnlineSAC(init=init, update=update, iterate=iterate, sac=sac, config=config,
                     policy_input=policy_input)
