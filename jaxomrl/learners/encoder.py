"""Task-encoder learner: any encoder, any weighted combination of representation losses.

``make_encoder_learner(config, obs_dim, action_dim)`` returns ``EncoderLearner`` with pure

    state = init(key)
    state, metrics = update(state, data, key)          # one gradient step from a TaskData
    total, metrics = loss(params, data, key)           # the loss it steps on (for composites)
    z = embed(params, contexts, mask)                  # task embeddings of context windows
    acc = evaluate(params, data_ref, data_query, key)  # nearest-centroid task accuracy

Online inference (the same code at training and test time): a *context* carry holds what the
encoder has seen of the current history (the GRU's hidden state, or the last ``window``
transitions for the window encoders):

    ctx = context_init()                                 # empty history
    z = context_embed(params, ctx, obs)                  # embedding to act on at ``obs``
    ctx = context_update(params, ctx, transition)        # after a step
    z, next_z = embed_stream(params, data)               # [T, N, D] for every dataset transition
    s_neg, r_neg = negatives(params, transitions, key)    # CORRO's negatives of transitions

Encoders: an ``EncoderConfig`` holds exactly one kind, its own config and flax module
(``MODELS``), beside what every kind shares (embedding size, contexts, optimiser, InfoNCE and
FOCAL's losses):

* ``gru`` (``GRUConfig``, ``_GRUModel``): R2PGO's recurrent VAE. Contexts are episode prefixes
  of ``window`` transitions; the embedding of a context is the posterior mean after its last
  valid transition (or, with ``belief="mean_logvar"``, BOReL's hyper-state belief: the
  posterior's mean and log variance). Its own loss: ``vae`` (R2PGO eq. 2-3).
* ``transformer`` (``TransformerConfig``, ``_TransformerModel``): ReDA's context encoder.
  Contexts are the ``window`` transitions before a query transition; the query is the query
  transition's observation and the previous action.
* ``mlp`` (``SetConfig``, ``_SetModel``): FOCAL / CORRO / CSRO transition encoder pooled (mean
  or attention) over ``window`` transitions (``transition_output="tanh"``: CSRO's tanh-bounded
  per-transition embeddings). Its own losses: ``corro`` (InfoNCE on single transitions with
  CORRO's negatives: reward noise or its conditional VAE's samples, ``corro_negatives``) and
  ``club`` (CSRO: the CLUB upper bound on the mutual information between a transition's
  embedding and its (s, a), with in-task negatives, through a variational Gaussian
  ``q(z | s, a)`` trained by NLL on detached embeddings in the same step).

Shared losses (any combination with the kind's): ``infonce`` (R2PGO eq. 4-5 with kernel width
``alpha``; ``alpha = 0`` is uniform negatives) and ``focal`` (distance metric).
Every loss reads ``contexts_per_task`` contexts of ``meta_batch`` tasks per step. Per-step metrics
are the loss terms and ``batch_task_accuracy`` (nearest-centroid task identification between the
two halves of the batch's contexts); ``evaluate`` measures it on held-out contexts or tasks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxomrl.data.sampler import (TaskData, sample_episodes, sample_task_subset,
                                  sample_transitions, sample_windows)
from jaxomrl.errors import check_finite_fields
from jaxomrl.learners.base import InitFn, UpdateFn
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.losses import contrastive, vae
from jaxomrl.nets.encoders import (GaussianPredictor, GRUEncoder, RewardDecoder, StateDecoder,
                                   TransformerContextEncoder, TransitionCVAE,
                                   TransitionSetEncoder,
                                   set_pool, transition_features)
from jaxomrl.types import Transition


WIDTH = 64          # every kind's default width: GRU state, transformer width, MLP width


def _check_kind(config) -> None:
    """What every kind's config checks: finite numbers, a positive width."""
    check_finite_fields(config)
    if config.hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {config.hidden}")


@dataclasses.dataclass(frozen=True)
class GRUConfig:
    """R2PGO's recurrent VAE (and BOReL's / VariBAD's): contexts are episode prefixes."""

    hidden: int = WIDTH                  # GRU state size
    # VariBAD's separate embeddings of s', a and r (sizes; BOReL: 32, 16, 16) instead of one
    # 32-unit embedding of [s, a, r, s'] (nets.encoders.GRUEncoder).
    input_embeddings: Tuple[int, ...] = ()
    # How many consecutive episodes (of one behaviour checkpoint) a history spans: the
    # encoder's contexts run on from an episode into the next ones (``window`` transitions in
    # all) and ``embed_stream`` resets the history every that many episodes, so the policy's
    # embeddings are beliefs over that horizon (BOReL / VariBAD's BAMDP horizon: 2 episodes).
    context_episodes: int = 1
    # What a posterior hands the policy: its mean ("mean") or BOReL's hyper-state belief
    # [mean, log variance] ("mean_logvar", 2 x latent_dim).
    belief: str = "mean"
    vae_weight: float = 0.0              # R2PGO eq. 2-3
    kl_weight: float = 0.1
    decode_state: bool = False
    # VAE reconstruction on a uniform subsample of the (posterior, transition) grid: this many
    # posteriors per context, each decoding this many transitions (None: all; VariBAD's
    # vae_subsample_elbos / vae_subsample_decodes). The full grid costs (W+1) x W decodes.
    vae_posteriors: Optional[int] = None
    vae_transitions: Optional[int] = None
    # Which posterior of a context is its contrastive embedding: "last" (after the whole
    # context) or "random" (after a uniformly drawn prefix of 1..len transitions: R2PGO §4.3,
    # "task embedding z_t at a certain time step" as anchor, the same task's embedding at
    # another time step as positive), which makes every prefix's belief, the one an online agent
    # acts on, task-discriminative.
    infonce_prefix: str = "last"

    def __post_init__(self):
        _check_kind(self)
        if self.infonce_prefix not in ("last", "random"):
            raise ValueError(f"infonce_prefix must be last or random, got {self.infonce_prefix!r}")
        if self.context_episodes < 1:
            raise ValueError(f"context_episodes must be >= 1, got {self.context_episodes}")
        if self.belief not in ("mean", "mean_logvar"):
            raise ValueError(f"belief must be mean or mean_logvar, got {self.belief!r}")
        if self.input_embeddings and (len(self.input_embeddings) != 3
                                      or min(self.input_embeddings) < 1):
            raise ValueError(f"input_embeddings are three positive sizes (state, action, "
                             f"reward), got {self.input_embeddings}")
        if (self.vae_posteriors is None) != (self.vae_transitions is None):
            raise ValueError("set both vae_posteriors and vae_transitions (a subsample of the "
                             "VAE's decoding grid), or neither")
        if self.vae_posteriors is not None and min(self.vae_posteriors,
                                                   self.vae_transitions) < 1:
            raise ValueError(f"vae_posteriors and vae_transitions must be >= 1, got "
                             f"{self.vae_posteriors}, {self.vae_transitions}")

    @property
    def loss_weight(self) -> float:
        return self.vae_weight


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """ReDA's context encoder: contexts are the ``window`` transitions before a query."""

    hidden: int = WIDTH                  # transformer width

    def __post_init__(self):
        _check_kind(self)

    loss_weight = 0.0                    # (not a field) no loss of its own


@dataclasses.dataclass(frozen=True)
class SetConfig:
    """FOCAL's / CORRO's / CSRO's transition encoder, pooled over a window of transitions."""

    hidden: int = WIDTH                  # MLP width
    pooling: str = "mean"                # mean | attention
    transition_output: str = "linear"    # per-transition output: linear | tanh (CSRO's)
    corro_weight: float = 0.0
    # CORRO's negatives (Yuan & Lu 2022, §4.2) keep a transition's (s, a) and replace (s', r):
    # "noise" adds Gaussian noise (its reward randomisation, for task sets whose tasks differ in
    # reward only; std corro_reward_std / corro_next_obs_std); "generative" decodes a prior
    # sample of its conditional VAE of (s', r) given (s, a) (nets.encoders.TransitionCVAE, sizes
    # cvae_hidden / cvae_latent, KL weight cvae_kl_weight), what another task would give at the
    # same (s, a) -- the only choice where tasks differ in dynamics. The CVAE trains on the
    # anchors' transitions in the same optimiser steps as the encoder, by its own loss (CORRO
    # trains it beforehand); the negatives are detached, so neither loss moves the other's
    # parameters.
    corro_negatives: str = "noise"
    corro_reward_std: float = 0.5
    corro_next_obs_std: float = 0.0
    cvae_hidden: int = 128
    cvae_latent: int = 64
    cvae_kl_weight: float = 0.2
    # CSRO (Gao et al. 2023): weight of the CLUB bound (losses.contrastive.club_upper_bound) the
    # encoder minimises; q(z | s, a) (nets.encoders.GaussianPredictor, the encoder's width) is
    # trained by its NLL on detached embeddings in the same optimiser step (its parameters get
    # no other gradient, so the NLL's weight is immaterial to Adam and fixed to 1).
    club_weight: float = 0.0

    def __post_init__(self):
        _check_kind(self)
        if self.pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be mean or attention, got {self.pooling!r}")
        if self.corro_negatives not in ("noise", "generative"):
            raise ValueError(f"corro_negatives must be noise or generative, got "
                             f"{self.corro_negatives!r}")
        if min(self.cvae_hidden, self.cvae_latent) < 1 or self.cvae_kl_weight < 0:
            raise ValueError("cvae_hidden and cvae_latent must be >= 1 and cvae_kl_weight >= 0")
        if self.transition_output not in ("linear", "tanh"):
            raise ValueError(f"transition_output must be linear or tanh, got "
                             f"{self.transition_output!r}")

    @property
    def loss_weight(self) -> float:
        return self.corro_weight + self.club_weight


# Each kind's config (an EncoderConfig field of the same name) and the names of its fields.
KIND_CONFIGS = {"gru": GRUConfig, "transformer": TransformerConfig, "mlp": SetConfig}
KINDS = tuple(KIND_CONFIGS)
KIND_FIELDS = {k: frozenset(f.name for f in dataclasses.fields(c))
               for k, c in KIND_CONFIGS.items()}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """A task encoder: exactly one kind (``gru``, ``transformer`` or ``mlp``: its own config,
    model and losses) and what every kind shares: the embedding size, the contexts it reads,
    the optimiser and the contrastive losses (InfoNCE with R2PGO's kernel, FOCAL's metric)."""

    gru: Optional[GRUConfig] = None
    transformer: Optional[TransformerConfig] = None
    mlp: Optional[SetConfig] = None
    latent_dim: int = 5
    window: int = 16                     # transitions per context
    contexts_per_task: int = 8
    meta_batch: Optional[int] = None     # tasks per step (None or more than there are: all)
    learning_rate: float = 3e-4
    infonce_weight: float = 0.0
    alpha: float = 0.0                   # similarity kernel width (R2PGO eq. 4)
    num_negatives: int = 16
    temperature: float = 1.0
    similarity: str = "dot"              # InfoNCE similarity: dot | cosine
    focal_weight: float = 0.0
    RENAMED_FIELDS = {"score": "similarity"}     # (not a field) names in older run.json files

    def __post_init__(self):
        check_finite_fields(self)
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"an encoder is exactly one kind of {KINDS} (its config), got "
                             f"{kinds or 'none'}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be dot or cosine, got {self.similarity!r}")
        if self.window < 1 or self.contexts_per_task < 1:
            raise ValueError("window and contexts_per_task must be >= 1 (an empty context has "
                             "no task information)")
        if self.infonce_weight and self.contexts_per_task < 2:
            raise ValueError("InfoNCE needs contexts_per_task >= 2 (anchor and positive)")
        if not (self.infonce_weight or self.focal_weight or self.model.loss_weight):
            raise ValueError("no loss selected: set a positive infonce or focal weight, or the "
                             "kind's own (gru: vae; mlp: corro, club)")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def model(self):
        """The kind's own config (``GRUConfig``, ``TransformerConfig`` or ``SetConfig``)."""
        return getattr(self, self.kind)

    @property
    def embedding_dim(self) -> int:
        """Size of the embedding the policy conditions on (``latent_dim``, doubled for the
        GRU's ``mean_logvar`` belief)."""
        return self.latent_dim * (2 if self.gru is not None and self.gru.belief == "mean_logvar"
                                  else 1)

    @classmethod
    def make(cls, kind: str, **fields) -> "EncoderConfig":
        """An encoder of ``kind`` from flat fields: each goes to the kind's config if it has the
        field, else to the shared ones; a field of another kind is refused by name."""
        if kind not in KINDS:
            raise ValueError(f"encoder kind must be one of {KINDS}, got {kind!r}")
        own = KIND_FIELDS[kind]
        shared = {f.name for f in dataclasses.fields(cls)} - set(KINDS)
        for name in fields:
            if name not in own and name not in shared:
                whose = [k for k in KINDS if name in KIND_FIELDS[k]]
                raise ValueError(f"{name} is not a setting of the {kind} encoder "
                                 + (f"(it is the {' / '.join(whose)} encoder's)" if whose
                                    else "or of every encoder"))
        return cls(**{kind: KIND_CONFIGS[kind](**{k: v for k, v in fields.items() if k in own})},
                   **{k: v for k, v in fields.items() if k not in own})

    @staticmethod
    def upgrade_json(values):
        """A config written as one flat record (``"encoder": kind`` and every kind's fields,
        before the kinds had their own configs) in today's form."""
        kind = values.get("encoder")
        if not isinstance(kind, str):
            return values
        values = dict(values)
        del values["encoder"]
        others = frozenset().union(*KIND_FIELDS.values())
        values[kind] = {k: values[k] for k in KIND_FIELDS[kind] if k in values}
        return {k: v for k, v in values.items() if k not in others or k == kind}


@struct.dataclass
class EncoderState:
    params: Any
    opt_state: Any
    step: jax.Array


class EncoderLearner(NamedTuple):
    init: InitFn
    update: UpdateFn
    loss: Callable
    embed: Callable
    sample_contexts: Callable
    evaluate: Callable
    context_init: Callable
    context_update: Callable
    context_embed: Callable
    embed_stream: Callable
    negatives: Callable
    optimizer: optax.GradientTransformation
    config: EncoderConfig


class _GRUModel(nn.Module):
    """The recurrent VAE: the GRU encoder and the decoders of its ELBO."""

    config: EncoderConfig
    obs_dim: int
    action_dim: int

    def setup(self):
        c, g = self.config, self.config.gru
        self.encoder = GRUEncoder(g.hidden, c.latent_dim,
                                  input_embeddings=tuple(g.input_embeddings),
                                  obs_dim=self.obs_dim, action_dim=self.action_dim)
        self.reward_decoder = RewardDecoder()
        if g.decode_state:
            self.state_decoder = StateDecoder(obs_dim=self.obs_dim)

    def __call__(self, ctx: Transition, mask: jax.Array, query: Optional[Transition] = None):
        """One context ``[W]`` -> (its belief ``[embedding]``, the posteriors ``(mu, logvar)
        [W+1, latent]``)."""
        mu, logvar = self.encoder(transition_features(ctx))
        last = jnp.maximum(jnp.sum(mask), 1)
        return self.belief(mu[last], logvar[last]), (mu, logvar)

    def decode(self, z, tr: Transition):
        r = self.reward_decoder(z, tr.obs, tr.action, tr.next_obs)
        s = self.state_decoder(z, tr.obs, tr.action) if self.config.gru.decode_state else None
        return r, s

    def gru_step(self, h, feats):
        return self.encoder.step(h, feats)[0]

    def gru_belief(self, h):
        return self.belief(*self.encoder.posterior(h))

    def belief(self, mu, logvar):
        """The embedding of a posterior (``GRUConfig.belief``)."""
        if self.config.gru.belief == "mean_logvar":
            return jnp.concatenate([mu, logvar], axis=-1)
        return mu

    def init_all(self, ctx: Transition, mask, query):
        """Calls every submodule (the decoders read latent samples m)."""
        z, posteriors = self(ctx, mask, query)
        m = posteriors[0][-1]
        self.decode(jnp.broadcast_to(m, ctx.reward.shape + m.shape), ctx)
        return z


class _TransformerModel(nn.Module):
    """ReDA's context encoder: the query is an observation and the previous action."""

    config: EncoderConfig
    obs_dim: int
    action_dim: int

    def setup(self):
        self.encoder = TransformerContextEncoder(self.config.transformer.hidden, 1,
                                                 self.config.latent_dim)

    def __call__(self, ctx: Transition, mask: jax.Array, query: Optional[Transition] = None):
        q = jnp.concatenate([query.obs, ctx.action[-1]], axis=-1)
        return self.encoder(q, transition_features(ctx), mask), None

    def init_all(self, ctx: Transition, mask, query):
        return self(ctx, mask, query)[0]


class _SetModel(nn.Module):
    """The transition encoder pooled over a window, with CSRO's ``q(z | s, a)`` and CORRO's
    conditional VAE when their losses are on."""

    config: EncoderConfig
    obs_dim: int
    action_dim: int

    def setup(self):
        c, m = self.config, self.config.mlp
        self.encoder = TransitionSetEncoder((m.hidden, m.hidden), c.latent_dim, m.pooling,
                                            output=m.transition_output)
        if m.club_weight:
            self.club = GaussianPredictor((m.hidden, m.hidden), c.latent_dim)
        if m.corro_weight and m.corro_negatives == "generative":
            self.cvae = TransitionCVAE(self.obs_dim, (m.cvae_hidden,), m.cvae_latent)

    def __call__(self, ctx: Transition, mask: jax.Array, query: Optional[Transition] = None):
        return self.encoder(transition_features(ctx), mask), None

    def per_transition(self, feats):
        return self.encoder.per_transition(feats)

    def scored(self, feats):
        return self.encoder.scored(feats)

    def club_terms(self, tr: Transition):
        """Per-transition embeddings ``z`` and ``q(z | s, a)``'s (mean, var), ``[..., latent]``."""
        z = self.encoder.per_transition(transition_features(tr))
        return z, self.club(jnp.concatenate([tr.obs, tr.action], axis=-1))

    def cvae_terms(self, tr: Transition, key: jax.Array):
        return self.cvae(tr, key)

    def cvae_sample(self, obs, action, key):
        return self.cvae.sample(obs, action, key)

    def init_all(self, ctx: Transition, mask, query):
        """Calls every submodule the configured losses use."""
        z, _ = self(ctx, mask, query)
        m = self.config.mlp
        if m.corro_weight:
            self.per_transition(transition_features(ctx))
        if m.club_weight:
            self.club_terms(ctx)
        if m.corro_weight and m.corro_negatives == "generative":
            self.cvae_terms(ctx, jax.random.PRNGKey(0))
        return z


# Each kind's model (the kind's config is the ``EncoderConfig`` field of the same name).
MODELS = {"gru": _GRUModel, "transformer": _TransformerModel, "mlp": _SetModel}


def make_encoder_learner(config: EncoderConfig, obs_dim: int, action_dim: int) -> EncoderLearner:
    kind, gru, mlp = config.kind, config.gru, config.mlp
    recurrent = kind == "gru"
    model = MODELS[kind](config, obs_dim, action_dim)
    # the kinds' own loss weights (0 for the other kinds)
    vae_weight = gru.vae_weight if gru is not None else 0.0
    corro_weight = mlp.corro_weight if mlp is not None else 0.0
    club_weight = mlp.club_weight if mlp is not None else 0.0
    tx = optax.adam(config.learning_rate)
    w = config.window

    def empty_window() -> Transition:
        """``window`` zero transitions (a shape template and the empty online context)."""
        return Transition(obs=jnp.zeros((w, obs_dim)), action=jnp.zeros((w, action_dim)),
                          reward=jnp.zeros((w,)), next_obs=jnp.zeros((w, obs_dim)),
                          terminated=jnp.zeros((w,), bool), truncated=jnp.zeros((w,), bool))

    def sample_contexts(data: TaskData, key: jax.Array, num: int, tasks=None):
        """``num`` contexts per task: (ctx Transition [M, num, W], mask [M, num, W], query)."""
        if kind == "gru":
            ctx, mask = sample_episodes(data, key, num, w, tasks, config.gru.context_episodes)
            return ctx, mask, None
        if kind == "transformer":
            full, mask = sample_windows(data, key, num, w + 1, tasks)
            ctx = jax.tree_util.tree_map(lambda x: x[:, :, :-1], full)
            query = jax.tree_util.tree_map(lambda x: x[:, :, -1], full)
            return ctx, mask[:, :, :-1], query
        ctx, mask = sample_windows(data, key, num, w, tasks)
        return ctx, mask, None

    def encode(params, ctx, mask, query=None):
        """(embeddings ``[..., latent]``, GRU posteriors ``[..., W+1, latent]`` or None) of
        contexts with leading batch axes ``[...]``."""
        lead = mask.shape[:-1]
        flat = lambda x: jax.tree_util.tree_map(
            lambda y: y.reshape((-1,) + y.shape[len(lead):]), x)
        out = jax.vmap(lambda c, m, q: model.apply(params, c, m, q))(flat(ctx), flat(mask),
                                                                     flat(query))
        return jax.tree_util.tree_map(lambda y: y.reshape(lead + y.shape[1:]), out)

    def embed(params, ctx, mask, query=None):
        """Embeddings ``[..., latent]`` of contexts with leading batch axes ``[...]``."""
        return encode(params, ctx, mask, query)[0]

    def init(key: jax.Array, batch: Optional[TaskData] = None) -> EncoderState:
        """Fresh parameters (``batch`` unused: shapes come from the config)."""
        del batch
        ex = empty_window()
        q = jax.tree_util.tree_map(lambda x: x[0], ex) if kind == "transformer" else None
        params = model.init(key, ex, jnp.ones((w,), bool), q, method="init_all")
        return EncoderState(params=params, opt_state=tx.init(params),
                            step=jnp.zeros((), jnp.int32))

    def loss_fn(params, data: TaskData, key):
        k_task, k_ctx, k_nce, k_vae, k_corro = jax.random.split(key, 5)
        tasks = (None if config.meta_batch is None   # at most every task, as the policy's
                 else sample_task_subset(k_task, data.num_tasks,
                                         min(config.meta_batch, data.num_tasks)))
        task_idx = jnp.arange(data.num_tasks) if tasks is None else tasks
        ctx, mask, query = sample_contexts(data, k_ctx, config.contexts_per_task, tasks)
        m_tasks, s = mask.shape[:2]
        z, posteriors = encode(params, ctx, mask, query)                   # [M, S, D]
        total, metrics = 0.0, {}
        if vae_weight:
            flat = lambda x: jax.tree_util.tree_map(lambda y: y.reshape((-1,) + y.shape[2:]), x)
            keys = jax.random.split(k_vae, m_tasks * s)
            l_vae, m_vae = jax.vmap(lambda c, m, post, k: model.apply(
                params, c, m, post, k, gru, method=_vae_terms))(
                    flat(ctx), flat(mask), flat(posteriors), keys)
            total += vae_weight * jnp.mean(l_vae)
            metrics.update({k: jnp.mean(v) for k, v in m_vae.items()})
        if config.infonce_weight:
            z_nce = z
            if recurrent and gru.infonce_prefix == "random":   # posterior after 1..len transitions
                length = jnp.maximum(jnp.sum(mask, axis=-1), 1)                  # [M, S]
                t = jax.random.randint(jax.random.fold_in(k_nce, 1), length.shape, 1, length + 1)
                z_nce = jnp.take_along_axis(posteriors[0], t[..., None, None], axis=-2)[..., 0, :]
            l_nce, m_nce = contrastive.weighted_info_nce(
                k_nce, z_nce, data.attributes[task_idx], config.alpha, config.num_negatives,
                config.temperature, config.similarity)
            total += config.infonce_weight * l_nce
            metrics.update(m_nce)
        if config.focal_weight:
            l_focal, m_focal = contrastive.focal_distance_loss(
                z.reshape(m_tasks * s, -1), jnp.repeat(jnp.arange(m_tasks), s))
            total += config.focal_weight * l_focal
            metrics.update(m_focal)
        if corro_weight:
            l_corro, m_corro = _corro_loss(params, data, k_corro, task_idx)
            total += corro_weight * l_corro + m_corro.get("cvae", 0.0)
            metrics.update(m_corro)
        if club_weight:
            l_club, m_club = _club_loss(params, ctx, mask)
            total += club_weight * l_club + m_club["club_nll"]
            metrics.update(m_club)
        metrics["loss"] = total
        if s >= 2:  # how well this batch's embeddings identify their tasks (held-in contexts)
            metrics["batch_task_accuracy"] = contrastive.centroid_accuracy(
                jax.lax.stop_gradient(z[:, : s // 2]), jax.lax.stop_gradient(z[:, s // 2:]))
        return total, metrics

    def _corro_loss(params, data, key, task_idx):
        k_a, k_p, k_n = jax.random.split(key, 3)
        n, k = config.contexts_per_task, config.num_negatives
        anchor = sample_transitions(data, k_a, n, task_idx)                # [M, n]
        positive = sample_transitions(data, k_p, n, task_idx)
        metrics = {}
        if mlp.corro_negatives == "generative":   # its model's own loss, on the anchors
            k_fit, k_n = jax.random.split(k_n)
            flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), anchor)
            mean, logvar, s_pred, r_pred = model.apply(params, flat, k_fit,
                                                       method="cvae_terms")
            _, metrics = vae.cvae_loss(mean, logvar, s_pred, flat.next_obs, r_pred,
                                       flat.reward, mlp.cvae_kl_weight)
        s_neg, r_neg = negatives(params, anchor, k_n)
        rep = lambda x: jnp.broadcast_to(x[:, :, None], x.shape[:2] + (k,) + x.shape[2:])
        neg = Transition(obs=rep(anchor.obs), action=rep(anchor.action), reward=r_neg,
                         next_obs=s_neg, terminated=rep(anchor.terminated),
                         truncated=rep(anchor.truncated))
        per = lambda tr: model.apply(params, transition_features(tr), method="per_transition")
        za, zp, zn = per(anchor), per(positive), per(neg)
        d = za.shape[-1]
        loss, m = contrastive.info_nce(za.reshape(-1, d), zp.reshape(-1, d),
                                       zn.reshape(-1, k, d), config.temperature, config.similarity)
        return loss, dict(metrics, corro=loss, corro_accuracy=m["infonce_accuracy"])

    def negatives(params, tr: Transition, key: jax.Array):
        """CORRO's ``num_negatives`` negatives of each transition ``tr [...]`` (its (s, a) kept):
        ``(next_obs [..., K, O], reward [..., K])``, detached (``SetConfig.corro_negatives``)."""
        k = config.num_negatives
        if mlp.corro_negatives == "noise":
            r, s = contrastive.corro_negatives(key, tr.reward, tr.next_obs, k,
                                               mlp.corro_reward_std, mlp.corro_next_obs_std)
            return s, r
        rep = lambda x: jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (k, x.shape[-1]))
        s, r = model.apply(params, rep(tr.obs), rep(tr.action), key, method="cvae_sample")
        return jax.lax.stop_gradient(s), jax.lax.stop_gradient(r)

    def _club_loss(params, ctx, mask):
        """CSRO's two terms on every task's context transitions ``[M, S, W]``: the CLUB bound
        (``q`` fixed; in-task negatives: all of a task's S x W transitions) and ``q``'s NLL of
        the detached embeddings (returned as the metric ``club_nll``, added by the caller)."""
        z, (mean, var) = model.apply(params, ctx, method="club_terms")     # [M, S, W, D]
        per_task = lambda x: x.reshape((x.shape[0], -1) + x.shape[3:])
        z, mean, var, valid = per_task(z), per_task(mean), per_task(var), per_task(mask)
        sg = jax.lax.stop_gradient
        club = jnp.mean(jax.vmap(contrastive.club_upper_bound)(z, sg(mean), sg(var), valid))
        nll = jnp.mean(jax.vmap(contrastive.gaussian_nll)(sg(z), mean, var, valid))
        return club, {"club": club, "club_nll": nll}

    def update(state: EncoderState, batch: TaskData, key: jax.Array):
        """One step of the encoder's losses on contexts sampled from ``batch``."""
        params, opt_state, _, metrics = gradient_step(loss_fn, tx, state.params, state.opt_state,
                                                      batch, key)
        return EncoderState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def evaluate(params, data_reference: TaskData, data_query: TaskData, key: jax.Array,
                 num_contexts: int = 32) -> jax.Array:
        """Nearest-centroid accuracy: centroids from ``data_reference`` contexts, queries from
        ``data_query`` contexts of the same tasks (e.g. another behaviour checkpoint)."""
        if data_reference.num_tasks != data_query.num_tasks:
            raise ValueError("reference and query data must hold the same tasks")
        k1, k2 = jax.random.split(key)
        z_ref = embed(params, *sample_contexts(data_reference, k1, num_contexts))
        z_q = embed(params, *sample_contexts(data_query, k2, num_contexts))
        return contrastive.centroid_accuracy(z_ref, z_q)

    def context_init():
        """The empty history: the GRU's zero state, or an all-masked window ``[W]``."""
        if recurrent:
            return jnp.zeros((gru.hidden,))
        return empty_window(), jnp.zeros((w,), bool)

    def context_update(params, ctx, tr: Transition):
        """Adds one transition (unbatched; actions in [-1, 1]) to the history."""
        if recurrent:
            return model.apply(params, ctx, transition_features(tr), method="gru_step")
        window, mask = ctx
        return jax.tree_util.tree_map(_shift_in, window, tr), _shift_in(mask, True)

    def context_embed(params, ctx, obs):
        """Embedding ``[latent]`` to act on at observation ``obs`` given the history ``ctx``
        (the GRU's belief, ``GRUConfig.belief``; the transformer queries with ``obs`` and the last
        action)."""
        if recurrent:
            return model.apply(params, ctx, method="gru_belief")
        window, mask = ctx
        query = None
        if kind == "transformer":  # the model reads obs here, the action from the window
            query = jax.tree_util.tree_map(lambda x: x[-1], window).replace(obs=obs)
        return model.apply(params, window, mask, query)[0]

    def embed_stream(params, data: TaskData, episodes: Optional[int] = None):
        """Embeddings of every dataset transition as an online agent would have them: the history
        is the transition's episode up to it (with ``k = episodes``, default
        ``context_episodes``: since the start of its group of k consecutive episodes of one
        behaviour checkpoint, groups counted from the checkpoint's first episode; an agent's
        belief over k episodes). Returns ``(z, next_z)`` ``[T, N, latent]``: ``z`` before the
        transition (to act on ``obs``), ``next_z`` after it (at ``next_obs``)."""
        first = jnp.ones((data.num_tasks, 1), bool)
        new_episode = jnp.concatenate([first, data.episode[:, 1:] != data.episode[:, :-1]], 1)
        new_behaviour = jnp.concatenate(
            [first, data.checkpoint[:, 1:] != data.checkpoint[:, :-1]], 1)
        k = (config.gru.context_episodes if recurrent else 1) if episodes is None else episodes
        if k < 1:
            raise ValueError(f"embed_stream: episodes must be >= 1, got {k}")
        if k > 1 and not recurrent:
            raise ValueError("embed_stream over several episodes needs the recurrent encoder")

        if kind == "mlp":
            # A set encoder's window embedding pools what it reads of each transition
            # (``TransitionSetEncoder.scored``) and nothing else: compute that once per
            # transition and slide a window of it, instead of re-embedding the whole window of
            # W transitions twice at every step (the same embeddings as ``context_embed`` of
            # ``context_update``'s windows, up to the MLP's floating-point rounding).
            scored = model.apply(params, transition_features(data.transitions),
                                 method="scored")
            empty = (jax.tree_util.tree_map(lambda x: jnp.zeros((w,) + x.shape[2:], x.dtype),
                                            scored), jnp.zeros((w,), bool))   # (window, mask)
            pool = lambda ctx: set_pool(ctx[0][0], ctx[0][1], ctx[1])
            add = lambda ctx, x: (jax.tree_util.tree_map(_shift_in, ctx[0], x),
                                  _shift_in(ctx[1], True))
            inputs = scored
        else:
            empty, pool, inputs = context_init(), None, data.transitions

        def one_task(items, starts, changes):
            def body(carry, inp):
                ctx, count = carry     # episodes of the current group begun so far
                item, start, change = inp
                reset = change | (start & (count == k))
                count = jnp.where(reset, 1, count + start)
                ctx = optax.tree_utils.tree_where(reset, empty, ctx)
                if pool is not None:
                    z = pool(ctx)
                    ctx = add(ctx, item)
                    return (ctx, count), (z, pool(ctx))
                z = context_embed(params, ctx, item.obs)
                ctx = context_update(params, ctx, item)
                return (ctx, count), (z, context_embed(params, ctx, item.next_obs))
            init = (empty, jnp.zeros((), jnp.int32))
            return jax.lax.scan(body, init, (items, starts, changes))[1]

        return jax.vmap(one_task)(inputs, new_episode, new_behaviour)

    return EncoderLearner(init=init, update=update, loss=loss_fn, embed=embed,
                          sample_contexts=sample_contexts, evaluate=evaluate,
                          context_init=context_init, context_update=context_update,
                          context_embed=context_embed, embed_stream=embed_stream,
                          negatives=negatives, optimizer=tx,
                          config=config)


def _shift_in(buf: jax.Array, x) -> jax.Array:
    """A window buffer ``[W, ...]`` with ``x`` appended as its newest (last) entry and its oldest
    dropped."""
    return jnp.concatenate([buf[1:], jnp.asarray(x, buf.dtype)[None]])


def _vae_terms(model: _GRUModel, ctx: Transition, mask: jax.Array, posteriors, key: jax.Array,
               config: GRUConfig):
    """R2PGO eq. (2-3) for one episode prefix ``[W]`` from its posteriors ``(mu, logvar)
    [W+1, D]``: every posterior decodes every transition, or (``config.vae_posteriors``) a
    uniform subsample of posteriors each decodes a uniform subsample of transitions."""
    mu, logvar = posteriors
    eps = jax.random.normal(key, mu.shape)
    m = mu + jnp.exp(0.5 * logvar) * eps                                  # [W+1, D]
    w = ctx.reward.shape[0]
    if config.vae_posteriors is None:   # [W+1, 1] x [1, W]: the decoders broadcast the grid
        post_index = tr_index = None
        pairs = jax.tree_util.tree_map(lambda x: x[None], ctx)
        samples = m[:, None]
    else:
        e, k = config.vae_posteriors, config.vae_transitions
        k_post, k_tr = jax.random.split(jax.random.fold_in(key, 1))
        post_index = jax.random.randint(k_post, (e,), 0, w + 1)
        tr_index = jax.random.randint(k_tr, (e, k), 0, w)
        pairs = jax.tree_util.tree_map(lambda x: x[tr_index], ctx)
        samples = m[post_index][:, None]                                  # [E, 1, D]
    r_pred, s_pred = model.decode(samples, pairs)
    return vae.vae_loss(mu, logvar, r_pred, ctx.reward, mask,
                        s_pred, ctx.next_obs if s_pred is not None else None,
                        kl_weight=config.kl_weight, posterior_index=post_index,
                        transition_index=tr_index)
