"""Soft Actor-Critic as a pure-functional learner.

``make_sac(config, obs_dim, action_dim)`` returns ``SAC(init, update, act)``:

    state = sac.init(key)                          # SACState pytree
    state, metrics = sac.update(state, batch, key)  # one gradient step on a Transition batch [B]
    action = sac.act(state.actor_params, obs, key, deterministic)   # in [-1, 1]^d

All three are jittable and ``vmap``-able (e.g. over tasks: one independent agent per task).
Actions in batches are in the normalised box [-1, 1]^d (see ``jaxomrl.nets.actor_critic``).
One update does, in order: critic step on the soft Bellman target from the target critics,
actor step through the updated critics, temperature step, Polyak averaging of the targets.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxomrl.envs.base import Transition
from jaxomrl.losses import sac as sac_losses
from jaxomrl.nets.actor_critic import (Critic, TanhGaussianActor, tanh_gaussian_mode,
                                       tanh_gaussian_sample)


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Hyperparameters (defaults: Haarnoja et al. / the peer codebases, PEER_SETTINGS.md)."""

    hidden: Tuple[int, ...] = (256, 256)
    num_critics: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 5e-3
    init_alpha: float = 1.0
    learn_alpha: bool = True
    target_entropy: Optional[float] = None  # None: -action_dim
    batch_size: int = 256

    def __post_init__(self):
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.discount < 1.0:
            raise ValueError(f"discount must be in [0, 1), got {self.discount}")
        if self.init_alpha <= 0 or self.batch_size < 1 or self.num_critics < 1:
            raise ValueError("init_alpha, batch_size and num_critics must be positive")


@struct.dataclass
class SACState:
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    step: jax.Array


class SAC(NamedTuple):
    init: Callable[[jax.Array], SACState]
    update: Callable[[SACState, Transition, jax.Array], Tuple[SACState, Dict[str, jax.Array]]]
    act: Callable[..., jax.Array]
    actor: TanhGaussianActor
    critic: Critic
    config: SACConfig


def make_sac(config: SACConfig, obs_dim: int, action_dim: int) -> SAC:
    actor = TanhGaussianActor(config.hidden, action_dim)
    critic = Critic(config.hidden, config.num_critics)
    actor_tx = optax.adam(config.actor_lr)
    critic_tx = optax.adam(config.critic_lr)
    alpha_tx = optax.adam(config.alpha_lr)
    target_entropy = (-float(action_dim) if config.target_entropy is None
                      else float(config.target_entropy))

    def init(key: jax.Array) -> SACState:
        ka, kc = jax.random.split(key)
        obs = jnp.zeros((1, obs_dim))
        actor_params = actor.init(ka, obs)
        critic_params = critic.init(kc, obs, jnp.zeros((1, action_dim)))
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        return SACState(actor_params=actor_params, critic_params=critic_params,
                        target_critic_params=critic_params, log_alpha=log_alpha,
                        actor_opt=actor_tx.init(actor_params),
                        critic_opt=critic_tx.init(critic_params),
                        alpha_opt=alpha_tx.init(log_alpha), step=jnp.zeros((), jnp.int32))

    def act(actor_params, obs: jax.Array, key: jax.Array, deterministic: bool = False):
        mean, log_std = actor.apply(actor_params, obs)
        if deterministic:
            return tanh_gaussian_mode(mean)
        return tanh_gaussian_sample(mean, log_std, key)[0]

    def update(state: SACState, batch: Transition, key: jax.Array):
        k_next, k_pi = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)

        # Critic.
        next_mean, next_log_std = actor.apply(state.actor_params, batch.next_obs)
        next_action, next_logp = tanh_gaussian_sample(next_mean, next_log_std, k_next)
        next_q = critic.apply(state.target_critic_params, batch.next_obs, next_action)
        target = sac_losses.soft_q_target(batch.reward, batch.terminated, next_q, next_logp,
                                          alpha, config.discount)

        def c_loss(params):
            return sac_losses.critic_loss(critic.apply(params, batch.obs, batch.action), target)

        (_, c_metrics), c_grads = jax.value_and_grad(c_loss, has_aux=True)(state.critic_params)
        c_updates, critic_opt = critic_tx.update(c_grads, state.critic_opt, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, c_updates)

        # Actor.
        def a_loss(params):
            mean, log_std = actor.apply(params, batch.obs)
            action, logp = tanh_gaussian_sample(mean, log_std, k_pi)
            q = critic.apply(critic_params, batch.obs, action)
            loss, metrics = sac_losses.sac_actor_loss(q, logp, alpha)
            return loss, (metrics, logp)

        (_, (a_metrics, logp)), a_grads = jax.value_and_grad(a_loss, has_aux=True)(
            state.actor_params)
        a_updates, actor_opt = actor_tx.update(a_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, a_updates)

        # Temperature.
        if config.learn_alpha:
            (_, t_metrics), t_grad = jax.value_and_grad(
                sac_losses.temperature_loss, has_aux=True)(state.log_alpha, logp, target_entropy)
            t_update, alpha_opt = alpha_tx.update(t_grad, state.alpha_opt, state.log_alpha)
            log_alpha = optax.apply_updates(state.log_alpha, t_update)
        else:
            t_metrics, alpha_opt, log_alpha = {"alpha": alpha}, state.alpha_opt, state.log_alpha

        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params,
                                                        config.tau)
        new_state = SACState(actor_params=actor_params, critic_params=critic_params,
                             target_critic_params=target_critic_params, log_alpha=log_alpha,
                             actor_opt=actor_opt, critic_opt=critic_opt, alpha_opt=alpha_opt,
                             step=state.step + 1)
        return new_state, {**c_metrics, **a_metrics, **t_metrics}

    return SAC(init=init, update=update, act=act, actor=actor, critic=critic, config=config)
