"""Online adaptation: a task-conditioned policy acts in a task while its encoder infers the task
from the history so far (R2PGO §4, "zero-shot": no gradient steps, no pre-collected context).

``online_returns`` rolls one policy out in a batch of tasks for ``num_episodes`` consecutive
episodes and returns the return of every episode; episode 1 is zero-shot adaptation. At every
step the task embedding is re-inferred from the history (the context carry of
``jaxomrl.learners.encoder``), which is carried across episodes or reset at each one. Everything
is one ``lax.scan`` ``vmap``-ped over tasks; ``vmap`` it again over seeds (parameters).

With ``initial_context`` from :func:`context_from_data` and ``freeze_from=0`` the same rollout
is the offline-context protocol (FOCAL / CORRO): the task is inferred once from an episode of the
task's offline data and the embedding is held fixed.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxomrl.data.sampler import sample_episodes
from jaxomrl.envs.base import Task, TaskFamily
from jaxomrl.types import Transition, as_recurrent, scale_action


class Context(NamedTuple):
    """How a policy infers its task online (functions closed over the encoder's parameters).

    ``init() -> carry``, ``update(carry, transition) -> carry`` (one unbatched transition with
    actions in [-1, 1]), ``embed(carry, obs) -> z [latent]``.
    """

    init: Callable[[], Any]
    update: Callable[[Any, Transition], Any]
    embed: Callable[[Any, jax.Array], jax.Array]


def encoder_context(learner, params) -> Context:
    """The online context of a learner with ``context_init / context_update / context_embed``
    (an ``EncoderLearner``; Prompt-DT's prompt) with parameters ``params``."""
    return Context(init=learner.context_init,
                   update=lambda c, tr: learner.context_update(params, c, tr),
                   embed=lambda c, obs: learner.context_embed(params, c, obs))


def online_returns(family: TaskFamily, tasks: Task, policy, context: Optional[Context],
                   key: jax.Array, num_episodes: int = 1, carry_context: bool = True,
                   initial_context: Any = None, random_steps: int = 0,
                   freeze_from: Optional[int] = None) -> jax.Array:
    """Returns ``[num_tasks, num_episodes]`` of a policy adapting online in every task
    (:func:`online_rollout` without the per-step trace)."""
    return online_rollout(family, tasks, policy, context, key, num_episodes, carry_context,
                          initial_context, random_steps=random_steps, freeze_from=freeze_from)[0]


def online_rollout(family: TaskFamily, tasks: Task, policy, context: Optional[Context],
                   key: jax.Array, num_episodes: int = 1, carry_context: bool = True,
                   initial_context: Any = None, record: Tuple[str, ...] = (),
                   random_steps: int = 0, freeze_from: Optional[int] = None
                   ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Returns ``[num_tasks, num_episodes]`` of a policy adapting online in every task and the
    per-step trace ``{"reward": [num_tasks, steps], "z": [num_tasks, steps, ...] (with a
    context), name: [num_tasks, steps] for name in record}`` (``record``: keys of the family's
    step ``info``, e.g. ``"x_velocity"``), ``steps = num_episodes * horizon``. The trace's
    rewards sum to the returns: after the last episode has ended early they are 0.

    Args:
      family: the task family.
      tasks: a batch of tasks (leading axis).
      policy: a ``jaxomrl.types.Policy`` ``policy(obs, z, key) -> action in [-1, 1]^d`` (``z``
        is None without a context), e.g. ``sac.make_policy(actor_params, deterministic=True)``,
        or a ``jaxomrl.types.RecurrentPolicy``, whose memory starts empty at every episode and
        follows every step (whatever the context does).
      context: how the task embedding is inferred online (None: a task-agnostic policy).
      key: PRNG key (environment resets and stochastic actions).
      num_episodes: consecutive episodes per task; the rollout runs ``num_episodes * horizon``
        steps and episodes that end early (termination) leave the rest of the budget unused.
      carry_context: keep the history across episodes (True) or start each episode empty.
      initial_context: per-task context carries ``[num_tasks, ...]`` to start from (e.g. from
        :func:`context_from_data`) instead of the empty history.
      random_steps: the first ``random_steps`` steps act uniformly at random in [-1, 1]^d
        instead of by the policy (before episode ``freeze_from`` only; CSRO's non-prior context
        collection); their transitions enter the context and the policy's memory like the
        policy's own.
      freeze_from: from this episode (0-based) on, the context is no longer updated (it holds
        what the earlier episodes collected; 0: the context stays ``initial_context``, the
        offline-context protocol of FOCAL / CORRO); None: never frozen.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if random_steps < 0:
        raise ValueError(f"random_steps must be >= 0, got {random_steps}")
    if freeze_from is not None and not 0 <= freeze_from < num_episodes:
        raise ValueError(f"freeze_from must be an episode in [0, {num_episodes}), got "
                         f"{freeze_from}")
    if freeze_from and not carry_context:
        raise ValueError("freeze_from > 0 keeps what earlier episodes collected: it needs "
                         "carry_context=True")
    explore_until = num_episodes if freeze_from is None else freeze_from
    low, high = family.action_low, family.action_high
    policy = as_recurrent(policy)

    def one_task(task, key, start):
        k_reset, k_run = jax.random.split(key)
        state = family.reset(task, k_reset)
        ctx = start if start is not None else (context.init() if context is not None else ())

        def body(carry, inp):
            k, t = inp
            state, ctx, memory, episode, returns = carry
            z = context.embed(ctx, state.obs) if context is not None else None
            action = policy.act(memory, state.obs, z, k)
            if random_steps:
                uniform = jax.random.uniform(jax.random.fold_in(k, 1), action.shape,
                                             minval=-1.0, maxval=1.0)
                action = jnp.where((t < random_steps) & (episode < explore_until), uniform,
                                   action)
            nxt = family.step_autoreset(task, state, scale_action(action, low, high))
            live = episode < num_episodes
            returns = returns + jnp.where(live, nxt.reward, 0.0) * jax.nn.one_hot(
                jnp.minimum(episode, num_episodes - 1), num_episodes)
            memory = optax.tree_utils.tree_where(
                nxt.done, policy.init(), policy.update(memory, state.obs, action, nxt.reward))
            if context is not None and freeze_from != 0:
                tr = Transition(obs=state.obs, action=action, reward=nxt.reward,
                                next_obs=nxt.next_obs, terminated=nxt.terminated,
                                truncated=nxt.truncated)
                new = context.update(ctx, tr)
                if not carry_context:
                    new = optax.tree_utils.tree_where(nxt.done, context.init(), new)
                if freeze_from is not None:
                    new = optax.tree_utils.tree_where(episode >= freeze_from, ctx, new)
                ctx = new
            # the reward of the evaluated episodes (0 once the last has ended early and the
            # environment runs on into an episode nobody counts), summing to ``returns``
            trace = {"reward": jnp.where(live, nxt.reward, 0.0),
                     **{name: nxt.info[name] for name in record}}
            if z is not None:
                trace["z"] = z
            return (nxt, ctx, memory, episode + nxt.done.astype(jnp.int32), returns), trace

        init = (state, ctx, policy.init(), jnp.zeros((), jnp.int32),
                jnp.zeros((num_episodes,), jnp.float32))
        steps = num_episodes * family.horizon
        (*_, returns), trace = jax.lax.scan(
            body, init, (jax.random.split(k_run, steps), jnp.arange(steps)))
        return returns, trace

    return jax.vmap(one_task)(tasks, jax.random.split(key, tasks.num_tasks), initial_context)


def context_from_data(context: Context, data, key: jax.Array, length: int) -> Any:
    """Per-task context carries ``[T, ...]`` after reading one episode prefix of ``length``
    transitions drawn uniformly from each task's data (a ``TaskData``; any behaviour checkpoint)."""
    ctx, mask = sample_episodes(data, key, 1, length)

    def one(tr, m):
        def body(c, inp):
            t, valid = inp
            new = context.update(c, t)
            return optax.tree_utils.tree_where(valid, new, c), None
        return jax.lax.scan(body, context.init(), (tr, m))[0]

    return jax.vmap(one)(jax.tree_util.tree_map(lambda x: x[:, 0], ctx), mask[:, 0])
