"""Soft Actor-Critic as a pure-functional learner, optionally task-conditioned and offline.

``make_sac(config, obs_dim, action_dim, latent_dim=0)`` returns ``SAC``:

    state = sac.init(key)                                  # SACState pytree
    state, metrics = sac.update(state, batch, key)         # one gradient step
    policy = sac.make_policy(state.actor_params, deterministic)   # policy(obs, z, key)

``batch`` is a ``Transition [B]`` for an unconditioned agent, or a ``TaskBatch`` (transitions with
the task embeddings ``z [B, latent]`` to act on at ``obs`` and, optionally, ``next_z`` at
``next_obs``: a belief that changes along the step; and optionally ``actor_weight [B]``, the
actor loss's per-transition weights: e.g. an actor trained at the states of each task's best
episodes only, while the critics learn from every transition). All functions are jittable and
``vmap``-able (over tasks, over seeds). Actions are in the normalised box [-1, 1]^d
(``jaxomrl.types.scale_action`` maps them to the family's). One update does, in order: critic
step, actor step through the updated critics, temperature step, Polyak averaging of the targets.

The losses are composed, not switched: ``compose_objectives(config)`` picks the critic objective
(soft Bellman, with CQL(H)'s penalty added when ``cql_weight > 0``, or none), the actor
objective (SAC, SAC+BC, BC) and the temperature's from ``jaxomrl.losses.sac``'s factories, and
``update`` runs what it was given; ``critic_loss`` and ``actor_loss`` (the objectives bound to
the networks) are exposed.

The same learner is the data-collection agent (``head="none"``: plain SAC on the state) and the
offline meta-policy: ``head="concat"`` (``[s, z]``, the baselines) or ``"hyper"`` (R2PGO's
hypernetwork-generated last layer, ``jaxomrl.nets.heads``) condition actor and critics on a
task embedding (given, i.e. detached from the encoder), and ``bc_weight > 0`` makes the actor
SAC+BC, TD3+BC-style (``rl_weight = 0``: pure behaviour cloning, OM-BC; no critics trained).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxomrl.errors import check_finite_fields
from jaxomrl.losses import sac as sac_losses
from jaxomrl.nets.actor_critic import tanh_gaussian_mode, tanh_gaussian_sample
from jaxomrl.nets.heads import actor_and_critic
from jaxomrl.learners.base import InitFn, UpdateFn
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.types import Metrics, Policy, PRNGKey, TaskBatch, Transition


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Hyperparameters (defaults: Haarnoja et al. / the peer codebases' public code)."""

    hidden: Tuple[int, ...] = (256, 256)
    num_critics: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 5e-3
    # The entropy temperature: learned from init_alpha towards target_entropy, or held at
    # init_alpha (learn_alpha False; 0 removes the entropy terms: TD3+BC's objective). Offline,
    # with small per-step rewards, alpha learned from 1 (Adam moves log alpha by ~lr per step)
    # keeps the soft target's entropy bonus above the rewards for many updates
    # (research/NOTES.md, Half-Cheetah-Vel round 5).
    init_alpha: float = 1.0
    learn_alpha: bool = True
    target_entropy: Optional[float] = None  # None: -action_dim
    batch_size: int = 256
    head: str = "none"                      # none | concat | hyper (task conditioning)
    hyper_hidden: Tuple[int, ...] = (64,)
    rl_weight: float = 1.0                  # SAC+BC: lambda (2.5 in TD3+BC / ReDA)
    bc_weight: float = 0.0                  # > 0: SAC+BC actor loss; with rl_weight 0: BC only
    # CQL(H)'s conservative critic term (losses.sac.cql_penalty) with this weight (0: off; CQL's
    # public code: 5 on MuJoCo), over this many uniform and as many policy actions; BC alone
    # (rl_weight 0) trains no critics and ignores it.
    cql_weight: float = 0.0
    cql_actions: int = 10

    def __post_init__(self):
        check_agent_config(self)
        if self.rl_weight < 0 or self.bc_weight < 0 or (self.rl_weight == 0 and
                                                        self.bc_weight == 0):
            raise ValueError("rl_weight and bc_weight must be >= 0 and not both 0")
        if self.init_alpha < 0 or (self.learn_alpha and self.init_alpha == 0):
            raise ValueError(f"init_alpha must be positive (>= 0 if not learned), got "
                             f"{self.init_alpha}")
        if self.cql_weight < 0 or self.cql_actions < 1:
            raise ValueError(f"cql_weight must be >= 0 and cql_actions >= 1, got "
                             f"{self.cql_weight}, {self.cql_actions}")


def check_agent_config(config) -> None:
    """The checks every actor-critic config shares (SAC's, IQL's): finite fields, a known
    conditioning head, positive sizes, tau in (0, 1], discount in [0, 1)."""
    check_finite_fields(config)
    if config.head not in ("none", "concat", "hyper"):
        raise ValueError(f"head must be none, concat or hyper, got {config.head!r}")
    if not config.hidden or min(config.hidden) < 1:
        raise ValueError(f"hidden sizes must be positive, got {config.hidden}")
    if not 0.0 < config.tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {config.tau}")
    if not 0.0 <= config.discount < 1.0:
        raise ValueError(f"discount must be in [0, 1), got {config.discount}")
    if config.batch_size < 1 or config.num_critics < 1:
        raise ValueError("batch_size and num_critics must be positive")


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
    init: InitFn
    update: UpdateFn
    make_policy: Callable[..., Policy]
    critic_loss: Callable[..., Tuple[jax.Array, Metrics]]
    actor_loss: Callable[..., Tuple[jax.Array, Any]]
    objectives: "Objectives"
    actor: Any                  # TanhGaussianActor, or ConditionedActor with a head
    critic: Any                 # Critic, or ConditionedCritic with a head
    config: SACConfig


def make_sac(config: SACConfig, obs_dim: int, action_dim: int, latent_dim: int = 0) -> SAC:
    conditioned = config.head != "none"
    actor, critic = actor_and_critic(config.hidden, action_dim, config.head, config.hyper_hidden,
                                     config.num_critics, latent_dim)

    def actor_apply(params, obs, z):
        return actor.apply(params, obs, z) if conditioned else actor.apply(params, obs)

    def critic_apply(params, obs, action, z):
        return critic.apply(params, obs, action, z) if conditioned else \
            critic.apply(params, obs, action)
    actor_tx = optax.adam(config.actor_lr)
    critic_tx = optax.adam(config.critic_lr)
    alpha_tx = optax.adam(config.alpha_lr)

    def init(key: jax.Array, batch: Optional[Union[Transition, TaskBatch]] = None) -> SACState:
        del batch                     # shapes come from the config
        ka, kc = jax.random.split(key)
        obs, z = jnp.zeros((1, obs_dim)), jnp.zeros((1, max(latent_dim, 1)))
        extra = (z,) if conditioned else ()
        actor_params = actor.init(ka, obs, *extra)
        critic_params = critic.init(kc, obs, jnp.zeros((1, action_dim)), *extra)
        # a fixed alpha (0 included) is read from the config by update; this is a placeholder
        log_alpha = jnp.log(jnp.asarray(max(config.init_alpha, 1e-30), jnp.float32))
        return SACState(actor_params=actor_params, critic_params=critic_params,
                        target_critic_params=critic_params, log_alpha=log_alpha,
                        actor_opt=actor_tx.init(actor_params),
                        critic_opt=critic_tx.init(critic_params),
                        alpha_opt=alpha_tx.init(log_alpha), step=jnp.zeros((), jnp.int32))

    def make_policy(actor_params, deterministic: bool = False) -> Policy:
        """``policy(obs, z, key) -> action`` in [-1, 1]^d (``z`` None for ``head="none"``): the
        mode ``tanh(mean)`` if ``deterministic``, else a sample."""
        def policy(obs: jax.Array, z: Optional[jax.Array], key: PRNGKey) -> jax.Array:
            mean, log_std = actor_apply(actor_params, obs, z)
            if deterministic:
                return tanh_gaussian_mode(mean)
            return tanh_gaussian_sample(mean, log_std, key)[0]
        return policy

    objectives = compose_objectives(config, action_dim)

    def critic_loss(critic_params, batch: Transition, z, constants):
        """The critic objective at ``batch`` (``constants`` from its ``constants``: the TD
        target and, with CQL, the sampled actions)."""
        q = critic_apply(critic_params, batch.obs, batch.action, z)
        return objectives.critic.loss(
            q, lambda action: critic_apply(critic_params, batch.obs, action, z), constants)

    def actor_loss(actor_params, critic_params, batch: Transition, z, alpha, key,
                   weight=None):
        """The actor objective (``weight [B]``: its transitions' weights) and
        ``(metrics, log pi)``."""
        mean, log_std = actor_apply(actor_params, batch.obs, z)
        action, logp = tanh_gaussian_sample(mean, log_std, key)
        loss, metrics = objectives.actor(lambda: critic_apply(critic_params, batch.obs, action, z),
                                         mean, logp, batch.action, alpha, weight)
        return loss, (metrics, logp)

    def update(state: SACState, batch: Union[Transition, TaskBatch], key: PRNGKey):
        """One step on ``batch`` [B] (see the module docstring)."""
        z = next_z = actor_weight = None
        if isinstance(batch, TaskBatch):
            batch, z, next_z, actor_weight = (batch.transition, batch.z, batch.next_z,
                                              batch.actor_weight)
        next_z = z if next_z is None else next_z
        alpha = objectives.alpha(state.log_alpha)
        if conditioned and (z is None or z.shape[:-1] != batch.reward.shape):
            raise ValueError(f"a {config.head!r} head needs task embeddings z [B, latent_dim] "
                             f"for the batch {batch.reward.shape} (a TaskBatch)")

        # Critic (none trained by behaviour cloning).
        if objectives.critic is None:
            _, k_pi = jax.random.split(key)
            c_metrics, critic_opt, critic_params = {}, state.critic_opt, state.critic_params
        else:
            k_critic, k_pi = objectives.critic.split(key)
            constants = objectives.critic.constants(
                lambda obs, zz: actor_apply(state.actor_params, obs, zz),
                lambda obs, action, zz: critic_apply(state.target_critic_params, obs, action, zz),
                batch, z, next_z, alpha, k_critic)
            critic_params, critic_opt, _, c_metrics = gradient_step(
                critic_loss, critic_tx, state.critic_params, state.critic_opt, batch, z,
                constants)

        # Actor (through the updated critics).
        actor_params, actor_opt, _, (a_metrics, logp) = gradient_step(
            actor_loss, actor_tx, state.actor_params, state.actor_opt, critic_params, batch, z,
            alpha, k_pi, actor_weight)

        # Temperature (none learned when fixed, or without critics).
        if objectives.temperature is None:
            t_metrics, alpha_opt, log_alpha = {"alpha": alpha}, state.alpha_opt, state.log_alpha
        else:
            log_alpha, alpha_opt, _, t_metrics = gradient_step(
                objectives.temperature, alpha_tx, state.log_alpha, state.alpha_opt, logp)

        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params,
                                                        config.tau)
        new_state = SACState(actor_params=actor_params, critic_params=critic_params,
                             target_critic_params=target_critic_params, log_alpha=log_alpha,
                             actor_opt=actor_opt, critic_opt=critic_opt, alpha_opt=alpha_opt,
                             step=state.step + 1)
        return new_state, {**c_metrics, **a_metrics, **t_metrics}

    return SAC(init=init, update=update, make_policy=make_policy, critic_loss=critic_loss,
               actor_loss=actor_loss, objectives=objectives, actor=actor, critic=critic,
               config=config)


class Objectives(NamedTuple):
    """SAC's losses as composed for one config (``compose_objectives``): ``critic`` (None: no
    critics are trained), ``actor``, ``temperature(log_alpha, logp)`` (None: alpha is held) and
    ``alpha(log_alpha) -> alpha``."""

    critic: Optional[sac_losses.CriticObjective]
    actor: sac_losses.ActorObjective
    temperature: Optional[Callable[[jax.Array, jax.Array], Tuple[jax.Array, Metrics]]]
    alpha: Callable[[jax.Array], jax.Array]


def compose_objectives(config: SACConfig, action_dim: int) -> Objectives:
    """Composes SAC's variants from ``jaxomrl.losses.sac``'s factories:

    ============================  ===========================  ==========================
    config                        critic                       actor
    ============================  ===========================  ==========================
    rl_weight > 0, bc_weight 0    soft Bellman (+ CQL(H) if    SAC
                                  cql_weight > 0)
    rl_weight > 0, bc_weight > 0  the same                     SAC+BC (TD3+BC-style)
    rl_weight 0                   none                         BC of the policy's mode
    ============================  ===========================  ==========================

    The temperature is learned towards ``target_entropy`` (default ``-d``) when ``learn_alpha``
    and critics are trained, else held (at ``init_alpha`` when not learned).
    """
    critic = actor = None
    if config.rl_weight > 0:
        critic = sac_losses.soft_bellman_objective(config.discount)
        if config.cql_weight:
            critic = sac_losses.conservative_objective(critic, config.cql_weight,
                                                       config.cql_actions, action_dim)
        actor = (sac_losses.sac_bc_actor_objective(config.rl_weight, config.bc_weight)
                 if config.bc_weight > 0 else sac_losses.sac_actor_objective())
    else:
        actor = sac_losses.bc_actor_objective()
    target_entropy = (-float(action_dim) if config.target_entropy is None
                      else float(config.target_entropy))
    temperature = None
    if config.learn_alpha and critic is not None:
        temperature = lambda log_alpha, logp: sac_losses.temperature_loss(  # noqa: E731
            log_alpha, logp, target_entropy)
    if config.learn_alpha:
        alpha = jnp.exp
    else:
        alpha = lambda log_alpha: jnp.asarray(config.init_alpha, jnp.float32)  # noqa: E731
    return Objectives(critic=critic, actor=actor, temperature=temperature, alpha=alpha)
