"""Soft Actor-Critic losses (Haarnoja et al. 2018, "SAC: algorithms and applications").

Written on network *outputs* so they can be used with any actor / critic / conditioning head.
Batch axes are written ``[B]``; ``n`` is the number of critics in the ensemble. Every function
is pure and jittable; none applies ``stop_gradient`` to its inputs except where stated, so the
caller decides what is differentiated (e.g. the TD target is computed from target networks).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from jaxomrl.nets.actor_critic import tanh_gaussian_mode, tanh_gaussian_sample


def soft_q_target(reward: jax.Array, terminated: jax.Array, next_q: jax.Array,
                  next_log_prob: jax.Array, alpha: jax.Array, discount: float) -> jax.Array:
    """Soft Bellman target ``y = r + gamma (1 - d) (min_k Q'_k(s', a') - alpha log pi(a'|s'))``.

    Args:
      reward: ``[B]``.
      terminated: ``[B]`` bool or {0, 1}; only true terminal states cut the bootstrap (a time-limit
        truncation is not terminal).
      next_q: ``[n, B]`` target-critic values at ``(s', a' ~ pi(.|s'))``.
      next_log_prob: ``[B]`` ``log pi(a'|s')``.
      alpha: ``[]`` entropy temperature.
      discount: gamma.
    Returns: ``[B]`` targets, with gradients stopped.
    """
    soft_v = jnp.min(next_q, axis=0) - alpha * next_log_prob
    not_done = 1.0 - terminated.astype(reward.dtype)
    return jax.lax.stop_gradient(reward + discount * not_done * soft_v)


def critic_loss(q: jax.Array, target: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Clipped double-Q regression ``L_Q = sum_k mean_B (Q_k(s, a) - y)^2``.

    Args: q ``[n, B]`` critic values at the data's ``(s, a)``; target ``[B]``.
    Returns: (scalar loss, metrics).
    """
    err = q - target[None]
    loss = jnp.sum(jnp.mean(err ** 2, axis=-1))
    return loss, {"critic_loss": loss, "q_mean": jnp.mean(q), "td_abs": jnp.mean(jnp.abs(err))}


def cql_penalty(q_data: jax.Array, q_random: jax.Array, q_policy: jax.Array,
                logp_policy: jax.Array, action_dim: int
                ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """CQL(H)'s conservative term (Kumar et al. 2020, eq. 4, with the importance-sampled
    log-sum-exp of its appendix F and public code): per critic and state, the soft maximum of Q
    over actions, estimated from ``N`` uniform actions on ``[-1, 1]^d`` (density ``2^-d``) and
    ``N`` actions of the current policy (density ``pi``), minus Q at the data's action::

        P = mean_{k,B} [ logsumexp_n ( Q_k(s, u_n) + d log 2,  Q_k(s, a_n) - log pi(a_n|s) )
                         - Q_k(s, a_data) ]

    Args: q_data ``[n, B]``; q_random, q_policy ``[N, n, B]``; logp_policy ``[N, B]`` (constants
    here: the penalty trains the critics only); action_dim ``d``.
    Returns: (scalar penalty, metrics).
    """
    samples = jnp.concatenate([q_random + action_dim * jnp.log(2.0),
                               q_policy - logp_policy[:, None, :]], axis=0)    # [2N, n, B]
    gap = jnp.mean(jax.nn.logsumexp(samples, axis=0) - q_data)
    return gap, {"cql_gap": gap}


def weighted_mean(x: jax.Array, weight: Optional[jax.Array] = None) -> jax.Array:
    """``mean_B x`` or, with ``weight [B]`` (>= 0, a constant), ``sum_B w x / sum_B w`` (0 if
    every weight is 0): e.g. an actor trained only at the transitions of a task's best episodes
    (``jaxomrl.data.sampler.top_episodes``)."""
    if weight is None:
        return jnp.mean(x)
    weight = jax.lax.stop_gradient(weight)
    return jnp.sum(weight * x) / jnp.maximum(jnp.sum(weight), 1e-8)


def sac_actor_loss(q: jax.Array, log_prob: jax.Array, alpha: jax.Array,
                   weight: Optional[jax.Array] = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """``L_pi = mean_B (alpha log pi(a|s) - min_k Q_k(s, a))`` with ``a ~ pi(.|s)`` reparameterised.

    Args: q ``[n, B]`` critic values at the policy's actions; log_prob ``[B]``; alpha ``[]``
    (treated as a constant here); weight ``[B]`` (optional): the states' weights
    (``weighted_mean``).
    """
    alpha = jax.lax.stop_gradient(alpha)
    loss = weighted_mean(alpha * log_prob - jnp.min(q, axis=0), weight)
    return loss, {"actor_loss": loss, "entropy": -jnp.mean(log_prob)}


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float
                     ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """``L_alpha = -log(alpha) * mean_B (log pi(a|s) + H_target)``.

    Gradient descent raises alpha when the policy's entropy ``-E log pi`` is below ``H_target``
    and lowers it when above. ``log_prob`` ``[B]`` is treated as a constant. (Parameterised by
    ``log alpha``, as most implementations: the stationary point is the same as for
    ``-alpha (log pi + H)``.)
    """
    log_prob = jax.lax.stop_gradient(log_prob)
    loss = -log_alpha * jnp.mean(log_prob + target_entropy)
    return loss, {"alpha_loss": loss, "alpha": jnp.exp(log_alpha)}


def bc_loss(pred_action: jax.Array, data_action: jax.Array,
            weight: Optional[jax.Array] = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Behaviour cloning ``mean_B ||pi(s) - a_data||^2`` (``[B, d]`` each; squared error summed
    over action dimensions); with ``weight [B]`` the weighted mean (``weighted_mean``)."""
    loss = weighted_mean(jnp.sum((pred_action - data_action) ** 2, axis=-1), weight)
    return loss, {"bc_loss": loss}


def sac_bc_actor_loss(q: jax.Array, log_prob: jax.Array, alpha: jax.Array,
                      pred_action: jax.Array, data_action: jax.Array, rl_weight: float = 2.5,
                      bc_weight: float = 1.0, weight: Optional[jax.Array] = None
                      ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Offline SAC+BC actor loss, TD3+BC-style (Fujimoto & Gu 2021; ReDA appendix B.4):

        L = rl_weight * mean_B(alpha log pi(a|s) - min_k Q_k(s, a)) / sg(mean_B |min_k Q_k(s, a)|)
            + bc_weight * mean_B ||pi(s) - a_data||^2

    ``q [n, B]`` at reparameterised policy actions, ``log_prob [B]``, ``pred_action [B, d]`` the
    policy's action used for cloning (its mode, tanh(mean)), ``data_action [B, d]`` in the same
    normalised box. The normaliser ``sg(.)`` is a constant (stop-gradient), so the RL term's scale
    does not depend on the reward scale of the task family. With ``weight [B]`` every mean over
    ``B`` is the weighted one (``weighted_mean``): the actor learns at the weighted states only.
    """
    alpha = jax.lax.stop_gradient(alpha)
    q_min = jnp.min(q, axis=0)
    scale = jax.lax.stop_gradient(weighted_mean(jnp.abs(q_min), weight)) + 1e-6
    rl = weighted_mean(alpha * log_prob - q_min, weight) / scale
    bc, _ = bc_loss(pred_action, data_action, weight)
    loss = rl_weight * rl + bc_weight * bc
    return loss, {"actor_loss": loss, "actor_rl": rl, "bc_loss": bc,
                  "entropy": -jnp.mean(log_prob), "q_scale": scale}


# Composable objectives (the role of Brax's ``agents/sac/losses.py``): SAC's variants are built
# by composing these factories (``jaxomrl.learners.sac.compose_objectives``), not by switches in
# an update. Each is written on network outputs and on callables the learner binds to its
# parameters, so it can be used with any actor, critic or conditioning head.

class CriticObjective(NamedTuple):
    """A critic loss in two parts, as the learner runs it:

    - ``split(key) -> (critic_key, rest)``: the critic's randomness, split from the step's key
      (``rest`` is for the actor);
    - ``constants(act, target_q, batch, z, next_z, alpha, critic_key)``: what the loss treats as
      constants (the TD target, sampled actions), computed outside the gradient;
      ``act(obs, z) -> (mean, log_std)`` is the current actor and ``target_q(obs, action, z)
      -> [n, B]`` the target critics;
    - ``loss(q, q_at, constants) -> (loss, metrics)``: ``q [n, B]`` the critics at the data's
      ``(s, a)`` and ``q_at(actions [B, d]) -> [n, B]`` the same critics at other actions, both
      differentiable in the critics' parameters.
    """

    split: Callable[[jax.Array], Tuple[Any, jax.Array]]
    constants: Callable[..., Any]
    loss: Callable[..., Tuple[jax.Array, Dict[str, jax.Array]]]


def soft_bellman_objective(discount: float) -> CriticObjective:
    """SAC's critic: ``critic_loss`` towards ``soft_q_target`` at ``a' ~ pi(.|s')``."""

    def constants(act, target_q, batch, z, next_z, alpha, key):
        next_mean, next_log_std = act(batch.next_obs, next_z)
        next_action, next_logp = tanh_gaussian_sample(next_mean, next_log_std, key)
        next_q = target_q(batch.next_obs, next_action, next_z)
        return soft_q_target(batch.reward, batch.terminated, next_q, next_logp, alpha, discount)

    return CriticObjective(split=jax.random.split, constants=constants,
                           loss=lambda q, q_at, target: critic_loss(q, target))


def conservative_objective(inner: CriticObjective, weight: float, num_actions: int,
                           action_dim: int) -> CriticObjective:
    """``inner`` plus ``weight`` x CQL(H)'s penalty (``cql_penalty``) over ``num_actions`` uniform
    actions on ``[-1, 1]^d`` and as many actions of the current policy at ``s``."""

    def split(key):
        key, k_cql = jax.random.split(key)
        k_inner, rest = inner.split(key)
        return (k_inner, k_cql), rest

    def constants(act, target_q, batch, z, next_z, alpha, keys):
        k_inner, k_cql = keys
        inner_constants = inner.constants(act, target_q, batch, z, next_z, alpha, k_inner)
        k_unif, k_pol = jax.random.split(k_cql)
        shape = batch.action.shape
        uniform = jax.random.uniform(k_unif, (num_actions,) + shape, minval=-1.0, maxval=1.0)
        mean, log_std = act(batch.obs, z)
        policy_actions, logp = jax.vmap(lambda k: tanh_gaussian_sample(mean, log_std, k))(
            jax.random.split(k_pol, num_actions))
        return inner_constants, jax.lax.stop_gradient((uniform, policy_actions, logp))

    def loss(q, q_at, constants):
        inner_constants, (uniform, policy_actions, logp) = constants
        value, metrics = inner.loss(q, q_at, inner_constants)
        q_at_many = jax.vmap(q_at)
        penalty, cql_metrics = cql_penalty(q, q_at_many(uniform), q_at_many(policy_actions), logp,
                                           action_dim)
        return value + weight * penalty, {**metrics, **cql_metrics}

    return CriticObjective(split=split, constants=constants, loss=loss)


# An actor objective: ``(q, mean, logp, data_action, alpha, weight) -> (loss, metrics)``, with
# ``q()`` the critics at the policy's reparameterised sample (a thunk: behaviour cloning never
# evaluates them), ``mean [B, d]`` the policy's pre-tanh mean, ``logp [B]`` the sample's log
# density, ``data_action [B, d]`` the data's action in [-1, 1] and ``weight [B]`` or None.
ActorObjective = Callable[..., Tuple[jax.Array, Dict[str, jax.Array]]]


def sac_actor_objective() -> ActorObjective:
    """SAC's actor (``sac_actor_loss``)."""
    return lambda q, mean, logp, data_action, alpha, weight: sac_actor_loss(q(), logp, alpha,
                                                                            weight)


def sac_bc_actor_objective(rl_weight: float, bc_weight: float) -> ActorObjective:
    """SAC+BC (``sac_bc_actor_loss``), cloning with the policy's mode ``tanh(mean)``."""

    def objective(q, mean, logp, data_action, alpha, weight):
        return sac_bc_actor_loss(q(), logp, alpha, tanh_gaussian_mode(mean), data_action,
                                 rl_weight, bc_weight, weight)
    return objective


def bc_actor_objective() -> ActorObjective:
    """Behaviour cloning of the policy's mode ``tanh(mean)`` (``bc_loss``); no critic."""
    return lambda q, mean, logp, data_action, alpha, weight: bc_loss(
        tanh_gaussian_mode(mean), data_action, weight)
