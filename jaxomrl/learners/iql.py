"""Implicit Q-learning (Kostrikov et al. 2022) as a pure-functional, optionally task-conditioned
offline learner with the SAC learner's shape (``jaxomrl.learners.sac``):

    iql = make_iql(IQLConfig(head="hyper"), obs_dim, action_dim, latent_dim)
    state = iql.init(key)
    state, metrics = iql.update(state, batch, key)   # Transition [B], or TaskBatch with z
    policy = iql.make_policy(state.actor_params, deterministic=True)   # (obs, z, key) -> a

so a meta-policy can use either (``MetaConfig.policy``). One update, in IQL's order: the state
value V(s) regresses to an upper expectile of the target critics at the data's actions
(``losses.iql.value_loss``); the policy clones the data's actions weighted by exp(beta (Q - V))
(``awr_actor_loss``); the critics regress to r + gamma V(s'); Polyak averaging of the targets.
The critics are only ever evaluated at actions in the data, so nothing is extrapolated to
actions the behaviour never took -- the failure of SAC+BC on data mixing poor and expert
checkpoints (research/NOTES.md, Half-Cheetah-Vel: the policy learner's ceiling).

The actor is the SAC learner's network (``mean, log_std``); IQL's policy is the Gaussian
N(tanh(mean), exp(log_std)^2) (the official implementation's squashed-mean Gaussian), so the
deterministic action is ``tanh(mean)`` as for SAC. Defaults are IQL's MuJoCo locomotion settings
(paper appendix B / the authors' code: expectile 0.7, temperature 3, weights clipped at 100,
lr 3e-4, discount 0.99, Polyak 0.005, two critics).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxomrl.learners.base import InitFn, UpdateFn
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.learners.sac import check_agent_config
from jaxomrl.losses import iql as iql_losses
from jaxomrl.losses.sac import critic_loss
from jaxomrl.nets.actor_critic import tanh_gaussian_mode
from jaxomrl.nets.heads import actor_and_critic
from jaxomrl.types import Metrics, Policy, PRNGKey, TaskBatch, Transition


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """Hyperparameters (defaults: IQL's locomotion settings)."""

    hidden: Tuple[int, ...] = (256, 256)
    num_critics: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 5e-3
    expectile: float = 0.7
    temperature: float = 3.0
    max_weight: float = 100.0
    batch_size: int = 256
    head: str = "none"                      # none | concat | hyper (task conditioning)
    hyper_hidden: Tuple[int, ...] = (64,)

    def __post_init__(self):
        check_agent_config(self)
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")
        if self.temperature < 0 or self.max_weight <= 0:
            raise ValueError("temperature must be >= 0 and max_weight > 0")


@struct.dataclass
class IQLState:
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    value_params: Any
    actor_opt: Any
    critic_opt: Any
    value_opt: Any
    step: jax.Array


class IQL(NamedTuple):
    init: InitFn
    update: UpdateFn
    make_policy: Callable[..., Policy]
    value_loss: Callable[..., Tuple[jax.Array, Metrics]]
    actor_loss: Callable[..., Tuple[jax.Array, Metrics]]
    critic_loss: Callable[..., Tuple[jax.Array, Metrics]]
    actor: Any
    critic: Any
    value: Any
    config: IQLConfig


def make_iql(config: IQLConfig, obs_dim: int, action_dim: int, latent_dim: int = 0) -> IQL:
    conditioned = config.head != "none"
    nets = dict(hidden=config.hidden, action_dim=action_dim, head=config.head,
                hyper_hidden=config.hyper_hidden, latent_dim=latent_dim)
    actor, critic = actor_and_critic(num_critics=config.num_critics, **nets)
    value = actor_and_critic(num_critics=1, **nets)[1]        # V(s): a critic without action
    extra = lambda z: (z,) if conditioned else ()
    no_action = lambda obs: jnp.zeros(obs.shape[:-1] + (0,), obs.dtype)

    def q_apply(params, obs, action, z):
        return critic.apply(params, obs, action, *extra(z))

    def v_apply(params, obs, z):                                     # [B]
        return value.apply(params, obs, no_action(obs), *extra(z))[0]

    actor_tx, critic_tx = optax.adam(config.actor_lr), optax.adam(config.critic_lr)
    value_tx = optax.adam(config.value_lr)

    def init(key: jax.Array, batch: Optional[Union[Transition, TaskBatch]] = None) -> IQLState:
        del batch                     # shapes come from the config
        ka, kc, kv = jax.random.split(key, 3)
        obs, z = jnp.zeros((1, obs_dim)), jnp.zeros((1, max(latent_dim, 1)))
        actor_params = actor.init(ka, obs, *extra(z))
        critic_params = critic.init(kc, obs, jnp.zeros((1, action_dim)), *extra(z))
        value_params = value.init(kv, obs, no_action(obs), *extra(z))
        return IQLState(actor_params=actor_params, critic_params=critic_params,
                        target_critic_params=critic_params, value_params=value_params,
                        actor_opt=actor_tx.init(actor_params),
                        critic_opt=critic_tx.init(critic_params),
                        value_opt=value_tx.init(value_params), step=jnp.zeros((), jnp.int32))

    def make_policy(actor_params, deterministic: bool = False) -> Policy:
        """``policy(obs, z, key) -> action`` in [-1, 1]^d (``z`` None for ``head="none"``): the
        mean ``tanh(mean)`` if ``deterministic``, else a Gaussian sample around it, clipped."""
        def policy(obs: jax.Array, z: Optional[jax.Array], key: PRNGKey) -> jax.Array:
            mean, log_std = actor.apply(actor_params, obs, *extra(z))
            mode = tanh_gaussian_mode(mean)
            if deterministic:
                return mode
            noise = jnp.exp(log_std) * jax.random.normal(key, mode.shape, mode.dtype)
            return jnp.clip(mode + noise, -1.0, 1.0)
        return policy

    def value_loss(value_params, batch: Transition, z, target_q):
        """Expectile regression of V(s) on the target critics at the data's actions."""
        return iql_losses.value_loss(target_q, v_apply(value_params, batch.obs, z),
                                     config.expectile)

    def actor_loss(actor_params, batch: Transition, z, advantage):
        """Advantage-weighted log-likelihood of the data's actions."""
        mean, log_std = actor.apply(actor_params, batch.obs, *extra(z))
        log_prob = iql_losses.gaussian_log_prob(batch.action, tanh_gaussian_mode(mean), log_std)
        return iql_losses.awr_actor_loss(log_prob, advantage, config.temperature,
                                         config.max_weight)

    def critic_loss_fn(critic_params, batch: Transition, z, target):
        """Squared error of the critics at the data's ``(s, a)`` towards ``r + gamma V(s')``."""
        return critic_loss(q_apply(critic_params, batch.obs, batch.action, z), target)

    def update(state: IQLState, batch: Union[Transition, TaskBatch], key: PRNGKey):
        """One step on ``batch`` [B] (``key`` unused: IQL's update is deterministic)."""
        del key
        z = next_z = None
        if isinstance(batch, TaskBatch):
            if batch.actor_weight is not None:
                raise ValueError("IQL weights its actor by advantages; actor_weight is SAC's")
            batch, z, next_z = batch.transition, batch.z, batch.next_z
        next_z = z if next_z is None else next_z
        if conditioned and (z is None or z.shape[:-1] != batch.reward.shape):
            raise ValueError(f"a {config.head!r} head needs task embeddings z [B, latent_dim] "
                             f"for the batch {batch.reward.shape} (a TaskBatch)")
        target_q = q_apply(state.target_critic_params, batch.obs, batch.action, z)
        value_params, value_opt, _, v_metrics = gradient_step(
            value_loss, value_tx, state.value_params, state.value_opt, batch, z, target_q)
        advantage = jnp.min(target_q, axis=0) - v_apply(value_params, batch.obs, z)
        actor_params, actor_opt, _, a_metrics = gradient_step(
            actor_loss, actor_tx, state.actor_params, state.actor_opt, batch, z, advantage)
        target = iql_losses.value_target(batch.reward, batch.terminated,
                                         v_apply(value_params, batch.next_obs, next_z),
                                         config.discount)
        critic_params, critic_opt, _, c_metrics = gradient_step(
            critic_loss_fn, critic_tx, state.critic_params, state.critic_opt, batch, z, target)
        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params,
                                                        config.tau)
        new_state = IQLState(actor_params=actor_params, critic_params=critic_params,
                             target_critic_params=target_critic_params,
                             value_params=value_params, actor_opt=actor_opt,
                             critic_opt=critic_opt, value_opt=value_opt, step=state.step + 1)
        return new_state, {**v_metrics, **a_metrics, **c_metrics}

    return IQL(init=init, update=update, make_policy=make_policy, value_loss=value_loss,
               actor_loss=actor_loss, critic_loss=critic_loss_fn, actor=actor, critic=critic,
               value=value, config=config)
