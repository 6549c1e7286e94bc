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

Encoders (``config.encoder``):

* ``gru``: R2PGO's recurrent VAE. Contexts are episode prefixes of ``window`` transitions; the
  embedding of a context is the posterior mean after its last valid transition (or, with
  ``belief="mean_logvar"``, BOReL's hyper-state belief: the posterior's mean and log variance).
* ``transformer``: ReDA's context encoder. Contexts are the ``window`` transitions before a
  query transition; the query is the query transition's observation and the previous action.
* ``mlp``: FOCAL / CORRO / CSRO transition encoder pooled (mean or attention) over ``window``
  transitions (``transition_output="tanh"``: CSRO's tanh-bounded per-transition embeddings).

Losses (weights in the config; any combination): ``vae`` (R2PGO eq. 2-3; gru only), ``infonce``
(R2PGO eq. 4-5 with kernel width ``alpha``; ``alpha = 0`` is uniform negatives), ``focal``
(distance metric), ``corro`` (InfoNCE on single transitions with CORRO's negatives: reward noise
or its conditional VAE's samples, ``corro_negatives``; mlp only),
``club`` (CSRO: the CLUB upper bound on the mutual information between a transition's embedding
and its (s, a), with in-task negatives, through a variational Gaussian ``q(z | s, a)`` trained by
NLL on detached embeddings in the same step; mlp only).
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


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    encoder: str = "gru"                 # gru | transformer | mlp
    latent_dim: int = 5
    hidden: int = 64                     # GRU state / transformer width / MLP width
    pooling: str = "mean"                # mlp encoder: mean | attention
    window: int = 16                     # transitions per context
    contexts_per_task: int = 8
    meta_batch: Optional[int] = None     # tasks per step (None or more than there are: all)
    learning_rate: float = 3e-4
    vae_weight: float = 0.0
    kl_weight: float = 0.1
    decode_state: bool = False
    # VAE reconstruction on a uniform subsample of the (posterior, transition) grid: this many
    # posteriors per context, each decoding this many transitions (None: all; VariBAD's
    # vae_subsample_elbos / vae_subsample_decodes). The full grid costs (W+1) x W decodes.
    vae_posteriors: Optional[int] = None
    vae_transitions: Optional[int] = None
    # GRU: VariBAD's separate embeddings of s', a and r (sizes; BOReL: 32, 16, 16) instead of
    # one 32-unit embedding of [s, a, r, s'] (nets.encoders.GRUEncoder).
    input_embeddings: Tuple[int, ...] = ()
    # GRU: how many consecutive episodes (of one behaviour checkpoint) a history spans: the
    # encoder's contexts run on from an episode into the next ones (``window`` transitions in
    # all) and ``embed_stream`` resets the history every that many episodes, so the policy's
    # embeddings are beliefs over that horizon (BOReL / VariBAD's BAMDP horizon: 2 episodes).
    context_episodes: int = 1
    # What a GRU posterior hands the policy: its mean ("mean") or BOReL's hyper-state belief
    # [mean, log variance] ("mean_logvar", 2 x latent_dim).
    belief: str = "mean"
    infonce_weight: float = 0.0
    alpha: float = 0.0                   # similarity kernel width (R2PGO eq. 4)
    num_negatives: int = 16
    temperature: float = 1.0
    similarity: str = "dot"              # InfoNCE similarity: dot | cosine
    RENAMED_FIELDS = {"score": "similarity"}     # (not a field) names in older run.json files
    # GRU + InfoNCE: which posterior of a context is its contrastive embedding: "last" (after the
    # whole context) or "random" (after a uniformly drawn prefix of 1..len transitions: R2PGO
    # §4.3, "task embedding z_t at a certain time step" as anchor, the same task's embedding at
    # another time step as positive), which makes every prefix's belief, the one an online agent
    # acts on, task-discriminative.
    infonce_prefix: str = "last"
    focal_weight: float = 0.0
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
    transition_output: str = "linear"    # mlp encoder's per-transition output: linear | tanh

    def __post_init__(self):
        check_finite_fields(self)
        if self.encoder not in ("gru", "transformer", "mlp"):
            raise ValueError(f"encoder must be gru, transformer or mlp, got {self.encoder!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be dot or cosine, got {self.similarity!r}")
        if self.window < 1 or self.contexts_per_task < 1:
            raise ValueError("window and contexts_per_task must be >= 1 (an empty context has "
                             "no task information)")
        if self.vae_weight and self.encoder != "gru":
            raise ValueError("the VAE loss needs the recurrent encoder (encoder='gru')")
        if self.corro_weight and self.encoder != "mlp":
            raise ValueError("the CORRO loss needs the transition encoder (encoder='mlp')")
        if self.corro_negatives not in ("noise", "generative"):
            raise ValueError(f"corro_negatives must be noise or generative, got "
                             f"{self.corro_negatives!r}")
        if min(self.cvae_hidden, self.cvae_latent) < 1 or self.cvae_kl_weight < 0:
            raise ValueError("cvae_hidden and cvae_latent must be >= 1 and cvae_kl_weight >= 0")
        if self.club_weight and self.encoder != "mlp":
            raise ValueError("the CLUB loss needs the transition encoder (encoder='mlp')")
        if self.transition_output not in ("linear", "tanh"):
            raise ValueError(f"transition_output must be linear or tanh, got "
                             f"{self.transition_output!r}")
        if self.transition_output != "linear" and self.encoder != "mlp":
            raise ValueError("transition_output applies to the transition encoder "
                             "(encoder='mlp')")
        if self.infonce_weight and self.contexts_per_task < 2:
            raise ValueError("InfoNCE needs contexts_per_task >= 2 (anchor and positive)")
        if not any((self.vae_weight, self.infonce_weight, self.focal_weight, self.corro_weight,
                    self.club_weight)):
            raise ValueError("no loss selected: set a positive vae/infonce/focal/corro/club "
                             "weight")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.infonce_prefix not in ("last", "random"):
            raise ValueError(f"infonce_prefix must be last or random, got {self.infonce_prefix!r}")
        if self.infonce_prefix == "random" and self.encoder != "gru":
            raise ValueError("infonce_prefix='random' needs the recurrent encoder (encoder='gru')")
        if self.context_episodes < 1:
            raise ValueError(f"context_episodes must be >= 1, got {self.context_episodes}")
        if self.context_episodes > 1 and self.encoder != "gru":
            raise ValueError("context_episodes > 1 needs the recurrent encoder (encoder='gru')")
        if self.belief not in ("mean", "mean_logvar"):
            raise ValueError(f"belief must be mean or mean_logvar, got {self.belief!r}")
        if (self.belief != "mean" or self.input_embeddings) and self.encoder != "gru":
            raise ValueError("belief='mean_logvar' and input_embeddings need the recurrent "
                             "encoder (encoder='gru')")
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
    def embedding_dim(self) -> int:
        """Size of the embedding the policy conditions on (``latent_dim``, doubled for the
        ``mean_logvar`` belief)."""
        return self.latent_dim * (2 if self.belief == "mean_logvar" else 1)


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


class _Model(nn.Module):
    """Encoder plus the decoders its losses need."""

    config: EncoderConfig
    obs_dim: int
    action_dim: int

    def setup(self):
        c = self.config
        if c.encoder == "gru":
            self.encoder = GRUEncoder(c.hidden, c.latent_dim,
                                      input_embeddings=tuple(c.input_embeddings),
                                      obs_dim=self.obs_dim, action_dim=self.action_dim)
            self.reward_decoder = RewardDecoder()
            if c.decode_state:
                self.state_decoder = StateDecoder(obs_dim=self.obs_dim)
        elif c.encoder == "transformer":
            self.encoder = TransformerContextEncoder(c.hidden, 1, c.latent_dim)
        else:
            self.encoder = TransitionSetEncoder((c.hidden, c.hidden), c.latent_dim, c.pooling,
                                                output=c.transition_output)
            if c.club_weight:
                self.club = GaussianPredictor((c.hidden, c.hidden), c.latent_dim)
            if c.corro_weight and c.corro_negatives == "generative":
                self.cvae = TransitionCVAE(self.obs_dim, (c.cvae_hidden,), c.cvae_latent)

    def __call__(self, ctx: Transition, mask: jax.Array, query: Optional[Transition] = None):
        """One context ``[W]`` -> embedding ``[latent]`` (and the GRU's posteriors)."""
        feats = transition_features(ctx)
        if self.config.encoder == "gru":
            mu, logvar = self.encoder(feats)
            last = jnp.maximum(jnp.sum(mask), 1)
            return self.belief(mu[last], logvar[last]), (mu, logvar)
        if self.config.encoder == "transformer":
            q = jnp.concatenate([query.obs, ctx.action[-1]], axis=-1)
            return self.encoder(q, feats, mask), None
        return self.encoder(feats, mask), None

    def decode(self, z, tr: Transition):
        r = self.reward_decoder(z, tr.obs, tr.action, tr.next_obs)
        s = self.state_decoder(z, tr.obs, tr.action) if self.config.decode_state else None
        return r, s

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

    def gru_step(self, h, feats):
        return self.encoder.step(h, feats)[0]

    def gru_belief(self, h):
        return self.belief(*self.encoder.posterior(h))

    def belief(self, mu, logvar):
        """The embedding of a GRU posterior (``config.belief``)."""
        if self.config.belief == "mean_logvar":
            return jnp.concatenate([mu, logvar], axis=-1)
        return mu


def make_encoder_learner(config: EncoderConfig, obs_dim: int, action_dim: int) -> EncoderLearner:
    model = _Model(config, obs_dim, action_dim)
    tx = optax.adam(config.learning_rate)
    w = config.window

    def empty_window() -> Transition:
        """``window`` zero transitions (a shape template and the empty online context)."""
        return Transition(obs=jnp.zeros((w, obs_dim)), action=jnp.zeros((w, action_dim)),
                          reward=jnp.zeros((w,)), next_obs=jnp.zeros((w, obs_dim)),
                          terminated=jnp.zeros((w,), bool), truncated=jnp.zeros((w,), bool))

    def sample_contexts(data: TaskData, key: jax.Array, num: int, tasks=None):
        """``num`` contexts per task: (ctx Transition [M, num, W], mask [M, num, W], query)."""
        if config.encoder == "gru":
            ctx, mask = sample_episodes(data, key, num, w, tasks, config.context_episodes)
            return ctx, mask, None
        if config.encoder == "transformer":
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
        q = jax.tree_util.tree_map(lambda x: x[0], ex) if config.encoder == "transformer" else None
        params = model.init(key, ex, jnp.ones((w,), bool), q, method=_init_all)
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
        if config.vae_weight:
            flat = lambda x: jax.tree_util.tree_map(lambda y: y.reshape((-1,) + y.shape[2:]), x)
            keys = jax.random.split(k_vae, m_tasks * s)
            l_vae, m_vae = jax.vmap(lambda c, m, post, k: model.apply(
                params, c, m, post, k, config, method=_vae_terms))(
                    flat(ctx), flat(mask), flat(posteriors), keys)
            total += config.vae_weight * jnp.mean(l_vae)
            metrics.update({k: jnp.mean(v) for k, v in m_vae.items()})
        if config.infonce_weight:
            z_nce = z
            if config.infonce_prefix == "random":   # posterior after 1..len transitions
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
        if config.corro_weight:
            l_corro, m_corro = _corro_loss(params, data, k_corro, task_idx)
            total += config.corro_weight * l_corro + m_corro.get("cvae", 0.0)
            metrics.update(m_corro)
        if config.club_weight:
            l_club, m_club = _club_loss(params, ctx, mask)
            total += config.club_weight * l_club + m_club["club_nll"]
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
        if config.corro_negatives == "generative":   # its model's own loss, on the anchors
            k_fit, k_n = jax.random.split(k_n)
            flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), anchor)
            mean, logvar, s_pred, r_pred = model.apply(params, flat, k_fit,
                                                       method=_Model.cvae_terms)
            _, metrics = vae.cvae_loss(mean, logvar, s_pred, flat.next_obs, r_pred,
                                       flat.reward, config.cvae_kl_weight)
        s_neg, r_neg = negatives(params, anchor, k_n)
        rep = lambda x: jnp.broadcast_to(x[:, :, None], x.shape[:2] + (k,) + x.shape[2:])
        neg = Transition(obs=rep(anchor.obs), action=rep(anchor.action), reward=r_neg,
                         next_obs=s_neg, terminated=rep(anchor.terminated),
                         truncated=rep(anchor.truncated))
        per = lambda tr: model.apply(params, transition_features(tr), method=_Model.per_transition)
        za, zp, zn = per(anchor), per(positive), per(neg)
        d = za.shape[-1]
        loss, m = contrastive.info_nce(za.reshape(-1, d), zp.reshape(-1, d),
                                       zn.reshape(-1, k, d), config.temperature, config.similarity)
        return loss, dict(metrics, corro=loss, corro_accuracy=m["infonce_accuracy"])

    def negatives(params, tr: Transition, key: jax.Array):
        """CORRO's ``num_negatives`` negatives of each transition ``tr [...]`` (its (s, a) kept):
        ``(next_obs [..., K, O], reward [..., K])``, detached (``config.corro_negatives``)."""
        k = config.num_negatives
        if config.corro_negatives == "noise":
            r, s = contrastive.corro_negatives(key, tr.reward, tr.next_obs, k,
                                               config.corro_reward_std, config.corro_next_obs_std)
            return s, r
        rep = lambda x: jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (k, x.shape[-1]))
        s, r = model.apply(params, rep(tr.obs), rep(tr.action), key, method=_Model.cvae_sample)
        return jax.lax.stop_gradient(s), jax.lax.stop_gradient(r)

    def _club_loss(params, ctx, mask):
        """CSRO's two terms on every task's context transitions ``[M, S, W]``: the CLUB bound
        (``q`` fixed; in-task negatives: all of a task's S x W transitions) and ``q``'s NLL of
        the detached embeddings (returned as the metric ``club_nll``, added by the caller)."""
        z, (mean, var) = model.apply(params, ctx, method=_Model.club_terms)     # [M, S, W, D]
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

    recurrent = config.encoder == "gru"

    def context_init():
        """The empty history: the GRU's zero state, or an all-masked window ``[W]``."""
        if recurrent:
            return jnp.zeros((config.hidden,))
        return empty_window(), jnp.zeros((w,), bool)

    def context_update(params, ctx, tr: Transition):
        """Adds one transition (unbatched; actions in [-1, 1]) to the history."""
        if recurrent:
            return model.apply(params, ctx, transition_features(tr), method=_Model.gru_step)
        window, mask = ctx
        return jax.tree_util.tree_map(_shift_in, window, tr), _shift_in(mask, True)

    def context_embed(params, ctx, obs):
        """Embedding ``[latent]`` to act on at observation ``obs`` given the history ``ctx``
        (the GRU's belief, ``config.belief``; the transformer queries with ``obs`` and the last
        action)."""
        if recurrent:
            return model.apply(params, ctx, method=_Model.gru_belief)
        window, mask = ctx
        query = None
        if config.encoder == "transformer":  # the model reads obs here, the action from the window
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
        k = config.context_episodes if episodes is None else episodes
        if k < 1:
            raise ValueError(f"embed_stream: episodes must be >= 1, got {k}")
        if k > 1 and config.encoder != "gru":
            raise ValueError("embed_stream over several episodes needs the recurrent encoder")

        if config.encoder not in ("gru", "transformer"):
            # A set encoder's window embedding pools what it reads of each transition
            # (``TransitionSetEncoder.scored``) and nothing else: compute that once per
            # transition and slide a window of it, instead of re-embedding the whole window of
            # W transitions twice at every step (the same embeddings as ``context_embed`` of
            # ``context_update``'s windows, up to the MLP's floating-point rounding).
            scored = model.apply(params, transition_features(data.transitions),
                                 method=_Model.scored)
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


def _init_all(model: _Model, ctx: Transition, mask, query):
    """Init entry point that calls every submodule the configured losses use."""
    z, posteriors = model(ctx, mask, query)
    if model.config.encoder == "gru":           # the decoders read latent samples m
        m = posteriors[0][-1]
        model.decode(jnp.broadcast_to(m, ctx.reward.shape + m.shape), ctx)
    if model.config.corro_weight:
        model.per_transition(transition_features(ctx))
    if model.config.club_weight:
        model.club_terms(ctx)
    if model.config.corro_weight and model.config.corro_negatives == "generative":
        model.cvae_terms(ctx, jax.random.PRNGKey(0))
    return z


def _vae_terms(model: _Model, ctx: Transition, mask: jax.Array, posteriors, key: jax.Array,
               config: EncoderConfig):
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
