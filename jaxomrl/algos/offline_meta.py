"""Context-based offline meta-RL: a task encoder, then a task-conditioned SAC+BC / BC policy.

The recipe behind R2PGO and its baselines (``jaxomrl.algos.registry`` names the configurations):

1. ``encoder`` phase (skipped for a task-agnostic policy): train the task encoder on the training
   tasks' data with the configured representation losses (``jaxomrl.learners.encoder``).
2. ``policy`` phase: freeze the encoder; embed every dataset transition from its episode's
   history up to it (``embed_stream``: the embedding an online agent would have at that step, and
   the one after the step for the TD target's next state); train the conditioned SAC+BC policy
   (``jaxomrl.learners.sac``, concat or hypernetwork head) on meta-batches of tasks.
3. ``evaluate`` (``jaxomrl.eval.adaptation``) in the test and training tasks: online adaptation
   (the encoder re-infers z from the policy's own history at every step; episode 1 is zero-shot)
   and the offline-context protocol (z from one episode of the task's offline data, held fixed).

What the policy conditions on while training (``policy_context``):

* ``"task"`` (default): the embedding of a prefix of *another* episode of the same task, of
  uniform length 0..H (from empty to a whole episode), fixed along the transition. The policy
  learns to act on whatever the context reveals, and the embedding cannot leak the behaviour of
  the transition it conditions (actions of the same episode are not in its context).
* ``"history"`` (VariBAD / BOReL): the embedding of the transition's own episode up to it (and
  after it, for the TD target). Matches online inference step by step, but the context then holds
  the behaviour policy's earlier actions in that episode, which with goal-directed data identify
  the task by themselves; online, the policy's own first actions then decide "its" task
  (reward relabelling, BOReL's answer, gives every task other behaviours with its rewards).
* ``"mixed"``: each transition's z is drawn from the two above with probability 1/2 (per row of
  the batch): the policy learns on the beliefs of its own history (the online protocol's) and on
  another episode's (the fixed-context protocols').

``history_episodes`` (default: the encoder's ``context_episodes``) is the horizon of those
beliefs in episodes (``embed_stream``): with 2, a transition of a checkpoint's second episode
is embedded after the first one too, as in an agent's second online episode (BOReL's belief
over two episodes).

The policy sees observations standardised by the training data's per-dimension mean and std
(``normalize_obs``, TD3+BC's state normalisation; the moments are part of the policy's output and
applied by its ``act``); the encoder sees them as they are.

Data (``data`` of the phases): ``{"train": TaskData}`` of the training tasks. Evaluation data:
``{"tasks": {split: Task}, "data": {split: TaskData}}`` for ``train`` (and ``test``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxomrl.algos.base import Algorithm, Phase, PhaseData
from jaxomrl.config import from_json
from jaxomrl.data.relabel import relabel_episodes
from jaxomrl.data.sampler import (TaskData, observation_moments, sample_indices,
                                  sample_meta_batch, standardise, take, top_episodes)
from jaxomrl.envs.base import TaskFamily
from jaxomrl.errors import check_finite_fields
from jaxomrl.eval.adaptation import encoder_context
from jaxomrl.eval.metrics import task_representation_metric
from jaxomrl.eval.protocols import evaluate_policy
from jaxomrl.learners.base import PlainLearner
from jaxomrl.learners.encoder import EncoderConfig, make_encoder_learner
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.types import TaskBatch


POLICY_CONTEXTS = ("task", "history", "mixed")


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """One offline meta-RL run (per seed).

    ``encoder`` None trains a task-agnostic policy (no task embedding). ``meta_batch`` tasks per
    policy step (None: all) and ``policy.batch_size`` transitions in total, split evenly.
    """

    policy: SACConfig
    encoder: Optional[EncoderConfig] = None
    encoder_steps: int = 2000
    policy_steps: int = 5000
    meta_batch: Optional[int] = 16
    eval_episodes: int = 1
    carry_context: bool = True
    policy_context: str = "task"
    # Episodes the data's beliefs span (encoder.embed_stream); None: the encoder's
    # context_episodes (see the module docstring).
    history_episodes: Optional[int] = None
    eval_contexts: int = 4
    # CSRO's non-prior context protocol (eval.protocols.nonprior_returns): episodes the agent
    # collects its context in (the first half of their steps random) before the evaluated
    # episode; 0: not run. CSRO's evaluation budget is 3 episodes of context collection and
    # evaluation interleaved; 2 collection episodes: one random, one by the policy.
    nonprior_episodes: int = 2
    normalize_obs: bool = True
    # The policy sees task embeddings standardised per dimension by the moments of the training
    # transitions' embeddings (VariBAD's norm_latent_for_policy option; without an encoder
    # there is nothing to standardise). Off by default, BOReL included: on the point robot it
    # lowered BOReL's and a mean-belief SAC+BC's offline-context returns (research/NOTES.md).
    normalize_z: bool = False
    # BOReL's reward relabelling: this fraction of every training task's episodes replaced by
    # other tasks' episodes with rewards recomputed for it (jaxomrl.data.relabel), for the
    # encoder and the policy alike; 0: off. Needs the family's relabel_reward.
    reward_relabelling: float = 0.0
    # The policy's actor learns only at the transitions of each training task's best episodes
    # by return, this fraction of them (data.sampler.top_episodes; percentile behaviour cloning
    # for BC, and SAC+BC's RL term at the same states; with reward_relabelling, of the task's
    # own episodes: lent ones show another task's behaviour); the critics learn from every
    # transition. 1: every transition (the papers'). On Half-Cheetah-Vel a unimodal policy
    # cloning every checkpoint's gait stands still at slow targets (research/NOTES.md,
    # "The policy learner's ceiling", "Round 6").
    policy_top_fraction: float = 1.0

    def __post_init__(self):
        check_finite_fields(self)
        if not 0.0 < self.policy_top_fraction <= 1.0:
            raise ValueError(f"policy_top_fraction is a fraction in (0, 1], got "
                             f"{self.policy_top_fraction}")
        if self.policy_context not in POLICY_CONTEXTS:
            raise ValueError(f"policy_context must be one of {POLICY_CONTEXTS}, got "
                             f"{self.policy_context!r}")
        if self.history_episodes is not None:
            if self.history_episodes < 1:
                raise ValueError(f"history_episodes must be >= 1, got {self.history_episodes}")
            if self.encoder is None or self.encoder.kind != "gru":
                raise ValueError("history_episodes is the horizon of a recurrent encoder's "
                                 "beliefs: it needs encoder='gru'")
        if not 0.0 <= self.reward_relabelling <= 1.0:
            raise ValueError(f"reward_relabelling is a fraction in [0, 1], got "
                             f"{self.reward_relabelling}")
        if self.reward_relabelling == 1.0 and self.policy_top_fraction < 1.0:
            raise ValueError("policy_top_fraction ranks each task's own episodes, and "
                             "reward_relabelling 1 leaves none")
        if self.reward_relabelling and self.encoder is None:
            raise ValueError("reward relabelling needs a task encoder")
        if self.nonprior_episodes < 0:
            raise ValueError(f"nonprior_episodes must be >= 0, got {self.nonprior_episodes}")
        if self.eval_contexts < 1:
            raise ValueError(f"eval_contexts must be >= 1, got {self.eval_contexts}")
        if self.encoder is None and self.policy.head != "none":
            raise ValueError(f"a {self.policy.head!r} head needs an encoder")
        if self.encoder is not None and self.policy.head == "none":
            raise ValueError("an encoder needs a conditioned policy head (concat or hyper)")
        if self.encoder is not None and self.encoder_steps < 1:
            raise ValueError(f"encoder_steps must be >= 1, got {self.encoder_steps}")
        if self.policy_steps < 1:
            raise ValueError(f"policy_steps must be >= 1, got {self.policy_steps}")
        if self.eval_episodes < 1:
            raise ValueError(f"eval_episodes must be >= 1, got {self.eval_episodes}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "MetaConfig":
        """Inverse of ``dataclasses.asdict`` (e.g. the ``config`` of a run's ``run.json``)."""
        d = dict(d)
        d.setdefault("normalize_obs", False)     # runs written before the field did not
        return from_json(cls, d)


DPHI_CONTEXTS = 16  # contexts per task and source behind each d(phi)
RELABEL_SEED = 0    # the relabelled data are one transform of the data, the same for every seed


@struct.dataclass
class TrainedEncoder:
    """The encoder phase's output, the policy phase's input: the frozen encoder's ``params`` and,
    for a policy trained on model data too (ReDA), the learned ``models`` (else None). The
    first phase of an algorithm has no predecessor; its input is a placeholder scalar zero
    (``jaxomrl.algos.base.FIRST_INPUTS``)."""

    params: Any
    models: Any = None


@struct.dataclass
class Embedded:
    """What the policy phase derives once from its inputs and the data: the frozen encoder's
    parameters and every training transition's embeddings ``[T, N, D]`` (None without an
    encoder), with model data the learned models the policy phase generates it from, and with
    ``normalize_obs`` the observation moments ``(mean, std)`` the policy standardises by (with
    ``normalize_z`` those of the embeddings: ``z_moments``; ``z`` and ``next_z`` stay raw)."""

    encoder_params: Any = None
    z: Optional[jax.Array] = None
    next_z: Optional[jax.Array] = None
    models: Any = None
    obs_moments: Optional[Tuple[jax.Array, jax.Array]] = None
    z_moments: Optional[Tuple[jax.Array, jax.Array]] = None
    train: Optional[TaskData] = None        # the relabelled training data (reward relabelling)
    actor_weight: Optional[jax.Array] = None   # [T, N] the actor's weights (policy_top_fraction)


class ModelData(NamedTuple):
    """Model-generated transitions in the policy's batches (ReDA: "real and model data").

    ``fraction`` of every task's rows of a policy batch are replaced by one model step from the
    same (real) states: ``generate(models, act, obs [M, K, obs], z [M, K, D], tasks [M], key) ->
    Transition [M, K]``, ``act(obs, z, key)`` the current policy's mode action (so the BC term
    on these rows is zero and they train the critic and the RL term only). With model data the
    policy phase's input is ``{"encoder": params, "models": models}``.
    """

    fraction: float
    generate: Callable[..., Any]


def context_sources(eval_data) -> Dict[str, Any]:
    """The fixed-context protocols' sources (``evaluate_policy``'s ``sources``) of evaluation
    data: the training checkpoints' data and, where collected, the held-out ones' (``ood``)."""
    return {"data": eval_data["data"], "ood": eval_data.get("ood", {})}


def evaluate_protocols(family: TaskFamily, config, act, context, key: jax.Array,
                       eval_data) -> Dict[str, jax.Array]:
    """``evaluate_policy`` in every task set of ``eval_data`` with the evaluation fields
    (``eval_episodes``, ``carry_context``, ``eval_contexts``, ``nonprior_episodes``) of an
    algorithm's ``config`` (``MetaConfig``, Prompt-DT's run config)."""
    return evaluate_policy(family, eval_data["tasks"], act, context, key,
                           context_sources(eval_data), config.eval_episodes,
                           config.carry_context, config.eval_contexts, config.nonprior_episodes)


def make_algorithm(name: str, config: MetaConfig, family: TaskFamily,
                   num_train_tasks: int, model_data: Optional[ModelData] = None) -> Algorithm:
    obs_dim, action_dim = family.obs_dim, family.action_dim
    enc = (make_encoder_learner(config.encoder, obs_dim, action_dim)
           if config.encoder is not None else None)
    latent = config.encoder.embedding_dim if enc is not None else 0
    sac = make_sac(config.policy, obs_dim, action_dim, latent)
    meta_batch = min(config.meta_batch or num_train_tasks, num_train_tasks)
    per_task = max(config.policy.batch_size // meta_batch, 1)
    if model_data is not None:
        if enc is None or config.policy_context != "task":
            raise ValueError("model data needs an encoder and policy_context='task'")
        num_model = int(round(model_data.fraction * per_task))
        if not 0 < num_model < per_task:
            raise ValueError(f"model data fraction {model_data.fraction} leaves no model or no "
                             f"real rows in a task's {per_task} rows")

    if config.reward_relabelling:
        family.check_relabel_reward()

    def training_data(data, with_lent: bool = False):
        """The training tasks' data the phases learn from: relabelled (the same for every seed
        and both phases) with ``reward_relabelling``. With ``with_lent``: ``(data, lent [T, N]
        bool or None)``, the transitions of other tasks' episodes."""
        if not config.reward_relabelling:
            return (data["train"], None) if with_lent else data["train"]
        return relabel_episodes(data["train"], data["train_tasks"], family,
                                jax.random.PRNGKey(RELABEL_SEED), config.reward_relabelling,
                                with_lent=with_lent)

    def policy_prepare(inputs: Optional[TrainedEncoder], data) -> Embedded:
        train, lent = training_data(data, with_lent=True)
        moments = observation_moments(train) if config.normalize_obs else None
        # the best of each task's own episodes: a lent episode shows another task's behaviour
        weight = (top_episodes(train, config.policy_top_fraction,
                               among=None if lent is None else ~lent)
                  if config.policy_top_fraction < 1.0 else None)
        if enc is None:
            return Embedded(obs_moments=moments, actor_weight=weight)
        params, models = inputs.params, inputs.models
        if (models is None) != (model_data is None):
            raise ValueError("model data needs the models in the encoder phase's output, and "
                             "only then")
        z, next_z = enc.embed_stream(params, train, config.history_episodes)
        z_moments = None
        if config.normalize_z:
            flat_z = z.reshape((-1, z.shape[-1]))
            z_moments = (jnp.mean(flat_z, axis=0), jnp.std(flat_z, axis=0) + 1e-6)
        return Embedded(encoder_params=params, z=z, next_z=next_z, models=models,
                        obs_moments=moments, z_moments=z_moments,
                        train=train if config.reward_relabelling else None, actor_weight=weight)

    def policy_update(state, batch: PhaseData, key):
        aux, data = batch.aux, batch.data
        train: TaskData = data["train"] if aux.train is None else aux.train
        k_task, k_idx, k_sac = jax.random.split(key, 3)
        tasks, index = sample_meta_batch(train, k_task, k_idx, meta_batch, per_task)
        rows = train.gather(tasks, index)                                   # [M, per_task]
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        weight = None if aux.actor_weight is None else flat(take(aux.actor_weight, tasks, index))

        def step(rows, key, z=None, next_z=None):
            """SAC on the flattened rows, observations standardised."""
            batch = jax.tree_util.tree_map(flat, rows)
            batch = batch.replace(obs=standardise(aux.obs_moments, batch.obs),
                                  next_obs=standardise(aux.obs_moments, batch.next_obs))
            if z is not None:
                z = standardise(aux.z_moments, z)
                next_z = None if next_z is None else standardise(aux.z_moments, next_z)
            if z is None and weight is None:
                return sac.update(state, batch, key)
            return sac.update(state, TaskBatch(batch, z, next_z, weight), key)

        if enc is None:
            return step(rows, k_sac)
        own, own_next = (take(x, tasks, index) for x in (aux.z, aux.next_z))
        if config.policy_context == "history":
            return step(rows, k_sac, flat(own), flat(own_next))
        # "task": the embedding of a prefix of another episode of the same task, of uniform
        # length 0..H (before or after a uniformly drawn transition), fixed for obs and next_obs.
        k_ctx, k_side, k_sac = jax.random.split(k_sac, 3)
        _, ctx_index = sample_indices(train, k_ctx, per_task, tasks)
        after = jax.random.bernoulli(k_side, 0.5, ctx_index.shape)[..., None]
        z = jnp.where(after, take(aux.next_z, tasks, ctx_index), take(aux.z, tasks, ctx_index))
        if config.policy_context == "mixed":     # half the rows: their own episode's beliefs
            mine = jax.random.bernoulli(jax.random.fold_in(k_side, 1), 0.5,
                                        ctx_index.shape)[..., None]
            return step(rows, k_sac, flat(jnp.where(mine, own, z)),
                        flat(jnp.where(mine, own_next, z)))
        if model_data is not None:   # the first num_model rows of every task: model steps
            mode = sac.make_policy(state.actor_params, deterministic=True)
            act = lambda o, zz, k: mode(standardise(aux.obs_moments, o),
                                        standardise(aux.z_moments, zz), k)
            gen = model_data.generate(aux.models, act, rows.obs[:, :num_model],
                                      z[:, :num_model], tasks, jax.random.fold_in(k_sac, 1))
            rows = jax.tree_util.tree_map(
                lambda real, m: real.at[:, :num_model].set(m.astype(real.dtype)), rows,
                jax.lax.stop_gradient(gen))
        return step(rows, k_sac, flat(z))

    def policy_output(state, aux: Embedded) -> Dict[str, Any]:
        out = {"actor": state.actor_params, "encoder": aux.encoder_params}
        if config.normalize_obs:
            out["obs_moments"] = aux.obs_moments
        if config.normalize_z:
            out["z_moments"] = aux.z_moments
        return out

    policy_phase = Phase(name="policy", num_steps=config.policy_steps,
                         learner=PlainLearner(init=sac.init, update=policy_update),
                         output=policy_output, prepare=policy_prepare)
    phases = (policy_phase,)
    if enc is not None:
        phase_config = {"encoder": dataclasses.asdict(config.encoder),
                        "steps": config.encoder_steps}
        relabelled = {}
        if config.reward_relabelling:    # the phase's aux is the relabelled training data
            phase_config["reward_relabelling"] = config.reward_relabelling
            relabelled = dict(prepare=lambda inputs, data: training_data(data))
        encoder_phase = Phase(
            name="encoder", num_steps=config.encoder_steps, learner=enc,
            batch=lambda aux, data: aux if config.reward_relabelling else data["train"],
            output=lambda state, aux: TrainedEncoder(params=state.params),
            config=phase_config, seeds_in_sequence=config.encoder.kind == "gru",
            **relabelled)
        phases = (encoder_phase, policy_phase)

    def embed(outputs, key, data: TaskData, num: int) -> jax.Array:
        """``[T, num, latent]``: embeddings of ``num`` contexts per task drawn from ``data``."""
        params = outputs["encoder"]
        return enc.embed(params, *enc.sample_contexts(data, key, num))

    def policy(outputs):
        """(deterministic policy, online context) of the trained policy (``Algorithm.policy``)."""
        moments, z_moments = outputs.get("obs_moments"), outputs.get("z_moments")
        mode = sac.make_policy(outputs["actor"], deterministic=True)

        def act(obs, z, k):
            return mode(standardise(moments, obs), standardise(z_moments, z), k)
        return act, encoder_context(enc, outputs["encoder"]) if enc is not None else None

    def evaluate(outputs, key, eval_data) -> Dict[str, jax.Array]:
        """``jaxomrl.eval.protocols.evaluate_policy`` in every task set of ``eval_data``
        (``{split}_online [T, eval_episodes]``, ``{split}_offline_ctx [T, 1]``,
        ``{split}_offpolicy_ctx [T, 1]`` with ood data, ``{split}_nonprior_ctx [T, 1]``) and,
        with an encoder and ood data, ReDA's
        d(phi) per task (``{split}_dphi [T]``: training-data contexts vs held-out-checkpoint
        contexts of the same task, relative to the other tasks)."""
        act, context = policy(outputs)
        k_policy, k_embed = jax.random.split(key)
        sources = context_sources(eval_data)
        out = evaluate_protocols(family, config, act, context, k_policy, eval_data)
        if enc is not None:
            for split, ood in sorted(sources["ood"].items()):
                if ood.num_tasks < 2:
                    continue
                k_embed, k1, k2 = jax.random.split(k_embed, 3)
                out[f"{split}_dphi"] = task_representation_metric(
                    embed(outputs, k1, sources["data"][split], DPHI_CONTEXTS),
                    embed(outputs, k2, ood, DPHI_CONTEXTS))
        return out

    return Algorithm(name=name, phases=phases, evaluate=evaluate,
                     config=dataclasses.asdict(config), embed=embed if enc is not None else None,
                     policy=policy)
