"""ReDA's adversarial data generation (Algorithm 1, lines 8-12), as pure jittable functions.

One call of :func:`adversarial_batch` rolls the adversarial policy out in every training task's
learned models from start states of the joint dataset (branch rollouts), embeds every prefix of
each rollout with the current context encoder, and rewards each model step with eq. 6:

    r_k = [R(z_{k-1}) - R(z_k)] - lambda_1 u(s, a) + lambda_2 r(s, a)

where ``z_k`` embeds the rollout's first ``k`` transitions (right-aligned, as the encoder's
context windows; the query is the state after them), ``R`` is the InfoNCE score against the
task's real contexts (positives) and the other tasks' real contexts (negatives)
(``jaxomrl.losses.adversarial``), ``u`` MOPO's ensemble uncertainty and ``r`` the shared reward
model. The first step of a rollout has no earlier embedding: its ``r_adv`` is 0. The returned
rollouts (with the reward model's task reward, as contexts carry it) are the adversarial contexts
the encoder trains on; with ``reward`` replaced by ``info["adv_reward"]`` they are the
adversary's SAC batch.

:func:`make_reda` builds ReDA for the experiment runner: a ``models`` phase (per-task
next-state ensembles and the shared reward model, early-stopped), an ``adversarial`` phase
(every step: generate a batch, one SAC step of the adversary on it, one encoder step on InfoNCE
over real contexts plus InfoNCE with the adversarial contexts as anchors), then the frozen
encoder's SAC+BC ``policy`` phase on the real data (optionally mixed with one-step model
transitions, ``policy_model_fraction``; the models pass through the adversarial phase's output)
and the evaluation of ``jaxomrl.algos.offline_meta``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxomrl.algos.base import Algorithm, Phase, PhaseData
from jaxomrl.algos.offline_meta import MetaConfig, ModelData, TrainedEncoder, make_algorithm
from jaxomrl.config import from_json
from jaxomrl.data.sampler import TaskData, sample_transitions
from jaxomrl.envs.base import TaskFamily
from jaxomrl.errors import check_finite_fields
from jaxomrl.learners.base import PlainLearner
from jaxomrl.learners.dynamics import (DynamicsConfig, make_dynamics, pool_tasks, task_input,
                                       with_task_input)
from jaxomrl.learners.encoder import make_encoder_learner
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.losses import contrastive
from jaxomrl.losses.adversarial import adversarial_reward_from_scores, infonce_score
from jaxomrl.types import Transition


CONTRASTS = ("real", "adversarial")
MODEL_STRUCTURES = ("per_task", "task_conditioned")


def _right_aligned(rollout: Transition, k: jax.Array) -> Tuple[Transition, jax.Array, Transition]:
    """The first ``k`` transitions of one rollout ``[L]`` at the end of a context window of
    length ``L``: ``(ctx [L], mask [L], query)``, the query being the transition whose ``obs``
    is the state after them."""
    length = rollout.reward.shape[0]
    pos = jnp.arange(length) - (length - k)
    ctx = jax.tree_util.tree_map(lambda x: x[jnp.clip(pos, 0, length - 1)], rollout)
    last = jax.tree_util.tree_map(lambda x: x[k - 1], rollout)
    return ctx, pos >= 0, last.replace(obs=last.next_obs)


def prefix_contexts(rollout: Transition) -> Tuple[Transition, jax.Array, Transition]:
    """Every prefix of one rollout ``[L]`` as a right-aligned context window of length ``L``:
    ``(ctx [L, L], mask [L, L], query [L])``; row ``k - 1`` holds the first ``k`` transitions at
    the window's end and its query is the transition whose ``obs`` is the state after them."""
    length = rollout.reward.shape[0]
    return jax.vmap(functools.partial(_right_aligned, rollout))(jnp.arange(1, length + 1))


def valid_steps(terminated: jax.Array) -> jax.Array:
    """``[..., L]`` bool: the steps of a model rollout before its end. ``terminated`` is set
    from the step that reaches a terminal state on (``Dynamics.rollout``), so step ``k`` is
    valid when step ``k - 1`` had not ended the rollout; the first step always is."""
    return jnp.concatenate([jnp.ones_like(terminated[..., :1]),
                            jnp.logical_not(terminated[..., :-1])], axis=-1)


def full_contexts(rollouts: Transition) -> Tuple[Transition, jax.Array, Transition]:
    """Whole rollouts ``[..., L]`` as contexts: ``(ctx [..., L], mask [..., L], query [...])``:
    each rollout's valid steps (all, unless it ended) right-aligned, as the row of
    :func:`prefix_contexts` of that length, the query being the state after them."""
    lead = rollouts.reward.shape[:-1]
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[len(lead):]), rollouts)
    out = jax.vmap(_right_aligned)(flat, jnp.sum(valid_steps(flat.terminated), axis=-1))
    return jax.tree_util.tree_map(lambda x: x.reshape(lead + x.shape[1:]), out)


def other_tasks(z: jax.Array) -> jax.Array:
    """``z [T, P, D] -> [T, (T - 1) P, D]``: for every task, the embeddings of all other tasks."""
    t = z.shape[0]
    other = np.array([[j for j in range(t) if j != i] for i in range(t)]).reshape(t, t - 1)
    return z[other].reshape(t, -1, z.shape[-1])


def adversarial_batch(embed: Callable, sample_contexts: Callable, encoder_params,
                      rollout: Callable, reward_fn: Callable, data: TaskData, key: jax.Array,
                      starts_per_task: int, length: int, num_positives: int,
                      lambda_uncertainty: float = 1.0,
                      lambda_task: float = 1.0, temperature: float = 1.0,
                      contrast: str = "real") -> Tuple[Transition, Dict[str, jax.Array]]:
    """Adversarial rollouts in every task's models, rewarded by eq. 6.

    Args:
      embed: ``embed(params, ctx, mask, query) -> z`` of the context encoder (leading axes
        broadcast; ``EncoderLearner.embed`` with a transformer / window encoder).
      sample_contexts: ``sample_contexts(data, key, num) -> (ctx, mask, query)``, the encoder's
        real contexts (``EncoderLearner.sample_contexts``).
      encoder_params: the current encoder.
      rollout: ``rollout(task_index, starts [S, obs], key, length) -> (Transition [S, L],
        u [S, L])``: the adversarial policy acting in task ``task_index``'s learned models
        (e.g. ``Dynamics.rollout`` with the adversary's ``act`` over that task's slice of the
        ensemble parameters, and the family's termination function). A rollout that ends
        (``terminated``) keeps its last valid prefix as context and earns 0 afterwards.
      reward_fn: ``reward_fn(obs, action) -> r`` (the shared reward model).
      data: the real data ``TaskData [T, N]`` (start states from the joint dataset; positives
        and negatives from the tasks' real contexts).
      starts_per_task, length: rollouts per task and model steps per rollout (= context length).
      num_positives: real contexts per task behind ``R`` (``contrast="real"``).
      contrast: what ``R`` scores a prefix against. ``"real"``: the task's real contexts
        (positives) and the other tasks' real contexts (negatives). ``"adversarial"``: eq. 3 /
        eq. 5 as printed, the batch's own whole adversarial contexts: positives the task's
        other rollouts, negatives every rollout in the other tasks' models (the same adversary,
        so they differ by the models alone).
    Returns (rollouts ``Transition [T, S, L]`` with the model's task reward, info):
    ``adv_reward`` (eq. 6; 0 after a rollout's end), ``valid`` (:func:`valid_steps`),
    ``uncertainty``, ``task_reward``, ``score`` (``R(z_k)`` of each step's valid prefix)
    ``[T, S, L]``, ``embeddings`` ``[T, S, L, D]``, ``positives`` (the real contexts'
    embeddings ``[T, P, D]``; with ``contrast="adversarial"`` the whole rollouts' embeddings
    ``[T, S, D]``).
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    t = data.num_tasks
    k_start, k_roll, k_real = jax.random.split(key, 3)
    # Start states from the joint dataset: every task draws from all tasks' states.
    pool = sample_transitions(data, k_start, starts_per_task).obs            # [T, S, obs]
    shuffle = jax.random.permutation(jax.random.fold_in(k_start, 1), t * starts_per_task)
    starts = pool.reshape((t * starts_per_task, -1))[shuffle].reshape(pool.shape)
    tr, u = jax.vmap(lambda i, s, k: rollout(i, s, k, length))(
        jnp.arange(t), starts, jax.random.split(k_roll, t))                  # [T, S, L]
    task_r = jax.vmap(jax.vmap(jax.vmap(reward_fn)))(tr.obs, tr.action)
    tr = tr.replace(reward=task_r)

    ctx, mask, query = jax.vmap(jax.vmap(prefix_contexts))(tr)               # [T, S, L, L]
    z = embed(encoder_params, ctx, mask, query)                               # [T, S, L, D]
    valid = valid_steps(tr.terminated)
    last = jnp.sum(valid, axis=-1, keepdims=True) - 1                         # [T, S, 1]
    flat = lambda x: x.reshape((-1,) + x.shape[3:])
    if contrast == "real":
        # Real contexts: positives of their own task, negatives of the others.
        z_ref = embed(encoder_params, *sample_contexts(data, k_real, num_positives))  # [T, P, D]
        per_prefix = lambda x: jnp.broadcast_to(x[:, None, None], z.shape[:3] + x.shape[1:])
        positives, negatives = per_prefix(z_ref), per_prefix(other_tasks(z_ref))
    else:
        # The whole rollouts (each one's valid prefix): positives the same task's other
        # rollouts, negatives the other tasks'.
        z_ref = jnp.take_along_axis(z, last[..., None], axis=2)[:, :, 0]      # [T, S, D]
        s = z_ref.shape[1]
        others = np.array([[j for j in range(s) if j != i] for i in range(s)]).reshape(s, s - 1)
        per_step = lambda x: jnp.broadcast_to(x[:, :, None], z.shape[:3] + x.shape[2:])
        positives = per_step(z_ref[:, others])                                # [T, S, L, S-1, D]
        rest = other_tasks(z_ref)                                             # [T, (T-1) S, D]
        negatives = per_step(jnp.broadcast_to(rest[:, None], (rest.shape[0], s) + rest.shape[1:]))
    # R(z_k) of every prefix, once; eq. 6 from consecutive scores (r_adv_1 = 0: no z_0, the
    # first step's "previous" score is its own).
    score = infonce_score(flat(z), flat(positives), flat(negatives),
                          temperature).reshape(z.shape[:3])                    # [T, S, L]
    # An ended rollout's later prefixes are its valid one (their r_adv is 0), and its steps
    # after the end earn nothing: the end is absorbing.
    score = jnp.take_along_axis(score, jnp.minimum(jnp.arange(length), last), axis=2)
    previous = jnp.concatenate([score[:, :, :1], score[:, :, :-1]], axis=2)
    total = adversarial_reward_from_scores(previous, score, u, task_r, lambda_uncertainty,
                                           lambda_task)
    total = jnp.where(valid, total, 0.0)
    info = {"adv_reward": total, "valid": valid, "uncertainty": u, "task_reward": task_r,
            "score": score, "positives": z_ref, "embeddings": z}
    return tr, info


def adversarial_info_nce(z_adv: jax.Array, z_real: jax.Array, key: jax.Array,
                         contrast: str = "real", temperature: float = 1.0, kind: str = "dot"
                         ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """The encoder's InfoNCE with the adversarial contexts ``z_adv [T, S, D]`` (whole rollouts,
    one row per task's models) as anchors.

    ``"real"``: each anchor's positive is one of its task's real contexts ``z_real [T, P, D]``
    drawn at random, its negatives every real context of the other tasks. ``"adversarial"``
    (eq. 7 as printed): the positive is another rollout in the same task's models drawn at
    random (never the anchor itself), the negatives every rollout in the other tasks' models.
    Returns ``contrastive.info_nce``'s ``(loss, metrics)``.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    t, s, d = z_adv.shape
    ref = z_real if contrast == "real" else z_adv
    p = ref.shape[1]
    if contrast == "real":
        pick = jax.random.randint(key, (t, s), 0, p)
    else:
        pick = (jnp.arange(s) + jax.random.randint(key, (t, s), 1, s)) % s
    pos = ref[jnp.arange(t)[:, None], pick]
    neg = jnp.broadcast_to(other_tasks(ref)[:, None], (t, s, (t - 1) * p, d))
    return contrastive.info_nce(z_adv.reshape(-1, d), pos.reshape(-1, d),
                                neg.reshape(t * s, -1, d), temperature, kind)


@dataclasses.dataclass(frozen=True)
class ReDAConfig:
    """``meta``: the encoder (a window encoder, ReDA's transformer) and the policy phase.
    ``augment=False`` is ReDA without models (the encoder trains on real contexts only);
    ``adversary="random"`` rolls out uniform actions in the models (ReDA without the adversary).
    """

    meta: MetaConfig
    dynamics: DynamicsConfig = DynamicsConfig(target="next_state")
    reward_model: DynamicsConfig = DynamicsConfig(target="reward")
    # models phase steps (each: eval_every SGD steps + eval), at most: the runner ends the phase
    # once every member of every ensemble has early-stopped (Phase.done), with the same models
    model_rounds: int = 20
    adversary: SACConfig = SACConfig()
    adversarial_steps: int = 1000       # adversarial phase steps
    starts_per_task: int = 32
    # Model steps per adversarial rollout (= the adversarial contexts' length); 0: the encoder's
    # window. ReDA's code rolls out 5 steps (with a window of 3); long rollouts compound the
    # models' error (research/NOTES.md, ReDA's Gravity-1 task sets).
    adversary_rollout: int = 0
    num_positives: int = 8
    lambda_uncertainty: float = 1.0
    # > 0: an adversarial rollout in task i's models ends (as at a terminal state) at the first
    # step whose u exceeds this quantile of u of task i's models on task i's training
    # transitions (MOReL's HALT): its context keeps only steps where the models are near their
    # data. 0: never (the paper's; the eq. 6 penalty alone). Off the data's behaviour the
    # per-task models no longer tell the gravities apart (Walker2d-Gravity-1:
    # research/model_discrimination.py, research/NOTES.md).
    support_quantile: float = 0.0
    support_transitions: int = 4096     # training transitions per task behind the quantile
    lambda_task: float = 1.0
    # Weight of the adversarial-context InfoNCE term against the real-context one. Algorithm 1
    # (line 15) updates the encoder with the adversarial data; 4 lets that term rule while the
    # real term keeps the real contexts apart (chosen on the didactic example's d(phi):
    # research/NOTES.md).
    adversarial_weight: float = 4.0
    adversary_mode: str = "sac"         # sac | random
    # What the adversarial contexts are contrasted with, in the encoder's adversarial InfoNCE
    # and in R of eq. 5. "real" (default): anchors the adversarial contexts, positives real
    # contexts of their task, negatives real contexts of the other tasks. "adversarial": eq. 3
    # / eq. 7 as printed: z, z* and z' all embed adversarial contexts -- the positive another
    # rollout in the same task's models, the negatives the rollouts in the other tasks' models
    # (the adversary acts without z, so they differ by the models alone); research/NOTES.md
    # compares the two.
    adversarial_contrast: str = "real"
    # The next-state models. "per_task" (the paper's, §3.2 eq. 4): one ensemble per task, each
    # trained on its task's data alone. "task_conditioned": one ensemble trained on every
    # task's data with the task's one-hot as an input, so the dynamics the tasks share are fit
    # once from all of it and the one-hot carries what differs (research/NOTES.md and
    # research/model_discrimination.py compare the two); the paper's per-task models stay the
    # default.
    model_structure: str = "per_task"
    augment: bool = True
    # Policy phase: this fraction of every task's rows are one-step model transitions from real
    # states (the policy's action, the task's ensemble, the shared reward model minus
    # policy_uncertainty * u, MOPO); 0 (default): real data only, ReDA's Algorithm 1 (line 18:
    # the meta-policy learns from the datasets D_i with the encoder fixed), the same SAC+BC
    # learner as every baseline's (appendix B.4). Penalised model rows can hold the policy to
    # the data, below the same encoder's real-data policy (research/NOTES.md, "ReDA's
    # Gravity-1 task sets").
    policy_model_fraction: float = 0.0
    policy_uncertainty: float = 1.0

    def __post_init__(self):
        check_finite_fields(self)
        if self.meta.encoder is None or self.meta.encoder.kind == "gru":
            raise ValueError("ReDA needs a window context encoder (transformer or mlp)")
        if self.adversary_mode not in ("sac", "random"):
            raise ValueError(f"adversary_mode must be sac or random, got {self.adversary_mode!r}")
        if self.adversarial_contrast not in CONTRASTS:
            raise ValueError(f"adversarial_contrast must be one of {CONTRASTS}, got "
                             f"{self.adversarial_contrast!r}")
        if self.model_structure not in MODEL_STRUCTURES:
            raise ValueError(f"model_structure must be one of {MODEL_STRUCTURES}, got "
                             f"{self.model_structure!r}")
        if self.adversarial_weight < 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {self.adversarial_weight}")
        if self.adversary_rollout < 0:
            raise ValueError(f"adversary_rollout must be >= 0, got {self.adversary_rollout}")
        if not 0.0 <= self.support_quantile <= 1.0 or self.support_transitions < 1:
            raise ValueError(f"support_quantile must be in [0, 1] and support_transitions >= 1, "
                             f"got {self.support_quantile}, {self.support_transitions}")
        if self.model_rounds < 1 or self.adversarial_steps < 1:
            raise ValueError("model_rounds and adversarial_steps must be >= 1")
        if not 0.0 <= self.policy_model_fraction < 1.0 or self.policy_uncertainty < 0:
            raise ValueError("policy_model_fraction must be in [0, 1) and policy_uncertainty "
                             ">= 0")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ReDAConfig":
        """Inverse of ``dataclasses.asdict`` (a run's ``run.json`` config)."""
        meta = MetaConfig.from_dict(d["meta"])     # with its defaults for older runs
        return from_json(cls, {**d, "meta": dataclasses.asdict(meta)})


@struct.dataclass
class Models:
    dyn_params: Any
    dyn_norm: Any
    reward_params: Any
    reward_norm: Any


@struct.dataclass
class AdversarialState:
    encoder: Any
    adversary: Any


@struct.dataclass
class AdversarialAux:
    """What the adversarial phase derives once from the models phase's output: the learned
    ``models``, the joint training data's per-dimension state range ``[obs_dim]`` (for the
    ``adv_outside_data`` diagnostic) and each task's rollout-ending uncertainty ``[T]``
    (``support_quantile``; +inf when 0)."""

    models: Models
    obs_low: jax.Array
    obs_high: jax.Array
    max_uncertainty: jax.Array


def _take(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def task_models(structure: str, num_tasks: int) -> Callable:
    """``task_model(models, i) -> (params, norm, extend)``: task ``i``'s next-state ensemble in
    ``models`` (``Models``) and the map from an action to that ensemble's action input --
    ``per_task``: ensemble ``i``, the action itself; ``task_conditioned``: the one ensemble,
    the action with ``onehot(i)`` appended (``dynamics.task_input``). ``i`` may be traced."""
    if structure not in MODEL_STRUCTURES:
        raise ValueError(f"model structure must be one of {MODEL_STRUCTURES}, got {structure!r}")
    if structure == "per_task":
        return lambda models, i: (_take(models.dyn_params, i), _take(models.dyn_norm, i),
                                  lambda a: a)
    return lambda models, i: (_take(models.dyn_params, 0), _take(models.dyn_norm, 0),
                              lambda a: task_input(a, i, num_tasks))


def shared_reward_fn(reward_model, models: Models) -> Callable:
    """The shared reward model's mean prediction ``r(obs, action)`` (unbatched)."""
    params, norm = _take(models.reward_params, 0), _take(models.reward_norm, 0)
    return lambda obs, a: jnp.mean(reward_model.predict(params, norm, obs, a)[0][:, 0])


def policy_model_transitions(dynamics, reward_model, policy_uncertainty: float, models: Models,
                             act: Callable, obs: jax.Array, z: jax.Array, tasks: jax.Array,
                             key: jax.Array, terminal_fn: Optional[Callable] = None,
                             task_model: Optional[Callable] = None) -> Transition:
    """The meta-policy's model data: one model step from every real state ``obs [M, K]`` of task
    ``tasks[m]`` in that task's ensemble, the action ``act(obs, z, key)`` of the policy being
    trained, reward = shared reward model - ``policy_uncertainty`` * u (MOPO), terminal where
    ``terminal_fn(next_obs)`` (the family's termination function; None: never). ``task_model``:
    :func:`task_models`' (default: per-task ensembles)."""
    reward_fn = shared_reward_fn(reward_model, models)
    task_model = task_model or task_models("per_task", 0)

    def one_task(i, o, zz, k):
        params, norm, extend = task_model(models, i)

        def one(o1, z1, k1):
            k_act, k_step = jax.random.split(k1)
            a = act(o1, z1, k_act)
            nxt, _, u = dynamics.step(params, norm, o1, extend(a), k_step)
            end = jnp.zeros((), bool) if terminal_fn is None else terminal_fn(nxt)
            return Transition(obs=o1, action=a, reward=reward_fn(o1, a) - policy_uncertainty * u,
                              next_obs=nxt, terminated=end,
                              truncated=jnp.zeros((), bool))
        return jax.vmap(one)(o, zz, jax.random.split(k, o.shape[0]))
    return jax.vmap(one_task)(tasks, obs, z, jax.random.split(key, tasks.shape[0]))


def make_reda(name: str, config: ReDAConfig, family: TaskFamily,
              num_train_tasks: int) -> Algorithm:
    """ReDA's three phases (models, adversarial, policy). ``augment=False`` (``reda/no_model``)
    is not built here: it has no models and no adversary, so it is the offline-meta recipe with
    ReDA's encoder (``registry.make`` builds it, as ``make_algorithm`` on ``config.meta``)."""
    if not config.augment:
        raise ValueError("ReDAConfig(augment=False) is the offline-meta recipe with ReDA's "
                         "encoder: build it with make_algorithm(name, config.meta, ...)")
    obs_dim, action_dim = family.obs_dim, family.action_dim
    enc_cfg = config.meta.encoder
    enc = make_encoder_learner(enc_cfg, obs_dim, action_dim)
    conditioned = config.model_structure == "task_conditioned"
    dyn = make_dynamics(config.dynamics, obs_dim,
                        action_dim + (num_train_tasks if conditioned else 0))
    task_model = task_models(config.model_structure, num_train_tasks)
    model_input = with_task_input if conditioned else (lambda d: d)
    rew = make_dynamics(config.reward_model, obs_dim, action_dim)
    shared_reward = functools.partial(shared_reward_fn, rew)
    model_transitions = functools.partial(policy_model_transitions, dyn, rew,
                                          config.policy_uncertainty,
                                          terminal_fn=family.terminal_obs, task_model=task_model)

    model_data = (ModelData(config.policy_model_fraction, model_transitions)
                  if config.policy_model_fraction > 0 else None)
    base = make_algorithm(name, config.meta, family, num_train_tasks, model_data)
    adv = make_sac(config.adversary, obs_dim, action_dim)
    length = config.adversary_rollout or enc_cfg.window

    # ---- models ------------------------------------------------------------------------------
    def models_batch(aux, data):
        """(the dynamics models' data, the reward model's data)."""
        return model_input(data["train"]), pool_tasks(data["train"])

    def models_init(key, batch):
        k1, k2 = jax.random.split(key)
        return dyn.init(k1, batch[0]), rew.init(k2, batch[1])

    def models_update(state, batch, key):
        k1, k2 = jax.random.split(key)
        d, m_d = dyn.update(state[0], batch[0], k1)
        r, m_r = rew.update(state[1], batch[1], k2)
        # This round's held-out scores (normalised targets; mean over members) [T] (per-task
        # models; [1]: the task-conditioned one).
        mse, nll = (jnp.mean(m_d[k], axis=1) for k in ("holdout_mse", "holdout_nll"))
        per_task = range(0 if conditioned else num_train_tasks)
        return (d, r), {"model_holdout_mse": jnp.mean(mse), "model_holdout_nll": jnp.mean(nll),
                        **{f"model_holdout_mse/task{i}": mse[i] for i in per_task},
                        **{f"model_holdout_nll/task{i}": nll[i] for i in per_task},
                        "model_best_score": jnp.mean(d.members.best_error),
                        "reward_holdout_mse": jnp.mean(m_r["holdout_mse"]),
                        "model_nll": jnp.mean(m_d["nll"])}

    def models_output(state, aux):
        d, r = state
        return Models(dyn_params=d.best, dyn_norm=d.norm, reward_params=r.best,
                      reward_norm=r.norm)

    # ---- adversarial encoder training ----------------------------------------------------------
    def adversarial_init(key, batch=None):
        k1, k2 = jax.random.split(key)
        return AdversarialState(encoder=enc.init(k1), adversary=adv.init(k2))

    def encoder_loss(params, data: TaskData, rollouts, key):
        """The encoder learner's loss on the real data plus ReDA's adversarial InfoNCE."""
        k_enc, k_ctx, k_pos = jax.random.split(key, 3)
        total, metrics = enc.loss(params, data, k_enc)
        z_real = enc.embed(params, *enc.sample_contexts(data, k_ctx,
                                                        enc_cfg.contexts_per_task))  # [T, P, D]
        z_adv = enc.embed(params, *full_contexts(rollouts))                  # [T, S, D]
        l_adv, m_adv = adversarial_info_nce(z_adv, z_real, k_pos, config.adversarial_contrast,
                                            enc_cfg.temperature, enc_cfg.similarity)
        total = total + config.adversarial_weight * l_adv
        return total, {**metrics, "adv_infonce": l_adv,
                       "adv_infonce_accuracy": m_adv["infonce_accuracy"]}

    def support_thresholds(models: Models, data: TaskData) -> jax.Array:
        """``[T]``: the ``support_quantile`` of task i's models' u on task i's (first
        ``support_transitions``) training transitions."""
        tr = data.transitions
        n = min(config.support_transitions, tr.obs.shape[1])

        def own(i, obs, action):
            params, norm, extend = task_model(models, i)
            return dyn.uncertainty(params, norm, obs, extend(action))
        u = jax.vmap(own)(jnp.arange(tr.obs.shape[0]), tr.obs[:, :n], tr.action[:, :n])  # [T, n]
        return jnp.quantile(u, config.support_quantile, axis=1)

    def adversarial_prepare(models: Models, data) -> AdversarialAux:
        obs = data["train"].transitions.obs
        max_u = (support_thresholds(models, data["train"]) if config.support_quantile > 0
                 else jnp.full((obs.shape[0],), jnp.inf))
        return AdversarialAux(models=models, obs_low=jnp.min(obs, axis=(0, 1)),
                              obs_high=jnp.max(obs, axis=(0, 1)), max_uncertainty=max_u)

    def adversarial_update(state: AdversarialState, batch: PhaseData, key):
        aux, train = batch.aux, batch.data["train"]
        models, low, high = aux.models, aux.obs_low, aux.obs_high
        k_gen, k_sac, k_enc = jax.random.split(key, 3)

        def act(obs, z, k):
            if config.adversary_mode == "random":
                return jax.random.uniform(k, (action_dim,), minval=-1.0, maxval=1.0)
            return adv.make_policy(state.adversary.actor_params)(obs, z, k)

        def rollout(i, starts, k, n):
            params, norm, extend = task_model(models, i)
            # a task-conditioned model reads the task beside the action: extend appends it
            tr, u = dyn.rollout(params, norm, lambda obs, z, kk: extend(act(obs, z, kk)), starts,
                                k, n, terminal_fn=family.terminal_obs,
                                max_uncertainty=aux.max_uncertainty[i])    # +inf: never
            return tr.replace(action=tr.action[..., :action_dim]), u        # the actions alone

        rollouts, info = adversarial_batch(
            enc.embed, enc.sample_contexts, state.encoder.params, rollout,
            shared_reward(models), train,
            k_gen, config.starts_per_task, length, config.num_positives, config.lambda_uncertainty,
            config.lambda_task, enc_cfg.temperature, config.adversarial_contrast)
        rollouts = jax.lax.stop_gradient(rollouts)
        valid = info["valid"]
        outside = jnp.any((rollouts.next_obs < low) | (rollouts.next_obs > high), axis=-1)
        # fraction of the valid steps (all, or one step of every rollout) outside the data
        frac = lambda o, v: jnp.sum(o & v) / jnp.maximum(jnp.sum(v), 1)
        metrics = {"adv_reward": jnp.mean(info["adv_reward"]),
                   # the adversary's return: eq. 6 summed over a rollout (0 after its end)
                   "adv_return": jnp.mean(jnp.sum(info["adv_reward"], axis=-1)),
                   "adv_outside_data": frac(outside, valid),
                   # the same at the rollouts' first and last model step (compounding error)
                   "adv_outside_first": frac(outside[..., 0], valid[..., 0]),
                   "adv_outside_last": frac(outside[..., -1], valid[..., -1]),
                   "adv_ended": jnp.mean(rollouts.terminated[..., -1]),
                   # model steps per adversarial context (ended rollouts keep their prefix)
                   "adv_context_length": jnp.mean(jnp.sum(valid, axis=-1)),
                   "model_uncertainty": jnp.mean(info["uncertainty"]),
                   "model_task_reward": jnp.mean(info["task_reward"]),
                   "adv_context_score": jnp.mean(info["score"][:, :, -1])}
        adversary = state.adversary
        if config.adversary_mode == "sac":
            flat = lambda x: x.reshape((-1,) + x.shape[3:])
            batch = jax.tree_util.tree_map(flat, rollouts.replace(reward=info["adv_reward"]))
            adversary, m_sac = adv.update(adversary, batch, k_sac)
            metrics.update({f"adversary_{k}": v for k, v in m_sac.items()
                            if k in ("critic_loss", "actor_loss")})
        params, opt_state, _, m_enc = gradient_step(encoder_loss, enc.optimizer,
                                                    state.encoder.params, state.encoder.opt_state,
                                                    train, rollouts, k_enc)
        encoder = state.encoder.replace(params=params, opt_state=opt_state,
                                        step=state.encoder.step + 1)
        metrics.update(m_enc)
        return AdversarialState(encoder=encoder, adversary=adversary), metrics

    models_phase = Phase(name="models", num_steps=config.model_rounds,
                         learner=PlainLearner(init=models_init, update=models_update),
                         batch=models_batch, output=models_output,
                         # "structure" only when not the default: per-task runs keep the
                         # digests (and shared models phases) they had before the option
                         config={"dynamics": dataclasses.asdict(config.dynamics),
                                 **({"structure": config.model_structure} if conditioned
                                    else {}),
                                 "reward_model": dataclasses.asdict(config.reward_model),
                                 "rounds": config.model_rounds},
                         done=lambda state: dyn.stopped(state[0]) & rew.stopped(state[1]))
    adversarial_phase = Phase(name="adversarial", num_steps=config.adversarial_steps,
                              learner=PlainLearner(init=adversarial_init,
                                                   update=adversarial_update),
                              prepare=adversarial_prepare,
                              output=lambda state, aux: TrainedEncoder(
                                  params=state.encoder.params,
                                  models=aux.models if model_data is not None else None))
    return Algorithm(name=name, phases=(models_phase, adversarial_phase, base.phases[-1]),
                     evaluate=base.evaluate, config=dataclasses.asdict(config),
                     embed=base.embed, policy=base.policy)
