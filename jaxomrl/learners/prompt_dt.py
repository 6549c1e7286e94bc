"""Prompt-DT's learner (Xu et al. 2022): a prompt decision transformer trained by action
regression on trajectory segments of every training task, each with a prompt from the same task.

``make_prompt_dt(config, obs_dim, action_dim)`` returns ``PromptDT`` with pure

    source = make_source(data)                       # TaskData + returns-to-go + obs moments
    state = init(key)
    state, metrics = update(state, source, key)      # one step on segments + prompts of it
    loss, metrics = loss(params, batch, key)         # the loss it steps on; batch = (seg, prompt)
    batch = sample_batch(source, key)                # segments [M, B, K] and prompts [M, B, P]
    actions = predict(params, segment, prompt)       # deterministic, one segment [K] -> [K, A]

and its inference on ``Inference(params, obs_moments, target_return)``:

    policy = make_policy(inference)                  # a jaxomrl.types.RecurrentPolicy
    ctx = context_init(); ctx = context_update(inference, ctx, transition)
    prompt = context_embed(inference, ctx, obs)      # the task context: a Segment [P]

Returns-to-go (``data.sampler.returns_to_go``) are read divided by ``config.rtg_scale``;
observations standardised by the training data's moments (Prompt-DT's state normalisation).
Segments are ``context`` consecutive steps of one episode ending at a uniform position
(left-padded at episode starts); prompts the last ``prompt_length`` steps of a uniformly drawn
episode of the same task (Prompt-DT's ``get_prompt``: the trajectory's final steps, a random
trajectory per sample). Optimiser: AdamW with a linear warm-up and global-norm clipping 0.25
(the DT's). Defaults are Prompt-DT's (mxu34/prompt-dt ``pdt_main.py``): width 128, 3 layers, 1
head, dropout 0.1, K = 20, prompt 5 steps, lr 1e-4, weight decay 1e-4, warm-up 10,000 steps, 16
segments per task and step.

Acting (Prompt-DT's evaluation, the DT's ``get_action``): the policy's memory is its own
episode's last ``context - 1`` steps (scaled return-to-go, observation, action, timestep), its
return-to-go starting at ``target_return`` and decreased by every reward; the action is the
prediction at the current state token. The prompt is the task context: its carry is the last
``prompt_length`` transitions of the episode being read (a ring) and the prompt of the last
episode read to its end -- those steps with their returns-to-go to that episode's end, exactly
as training prompts are made. Before any episode has ended the prompt is empty (all padding), so
in an online protocol the prompt of episode k is the end of the agent's own episode k - 1.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from optax.tree_utils import tree_where
from flax import struct

from jaxomrl.data.sampler import (TaskData, observation_moments, returns_to_go,
                                  sample_task_subset, standardise, take, window_positions)
from jaxomrl.errors import check_finite_fields
from jaxomrl.learners.base import InitFn, UpdateFn
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.losses.sequence import masked_action_mse
from jaxomrl.nets.decision_transformer import PromptDecisionTransformer
from jaxomrl.types import RecurrentPolicy, Segment, Transition


@dataclasses.dataclass(frozen=True)
class PromptDTConfig:
    width: int = 128
    num_layers: int = 3
    num_heads: int = 1
    dropout: float = 0.1
    context: int = 20                 # K: segment steps
    prompt_length: int = 5
    max_timestep: int = 1000          # timestep-embedding table size (>= the horizon)
    rtg_scale: float = 1.0            # returns-to-go are divided by it (Prompt-DT: 500 cheetah)
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 10_000
    grad_clip: float = 0.25
    batch_size: int = 16              # segments per task and step
    meta_batch: int | None = None     # tasks per step (None: all)

    def __post_init__(self):
        check_finite_fields(self)
        for name in ("width", "num_layers", "num_heads", "context", "prompt_length",
                     "max_timestep", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rtg_scale <= 0:
            raise ValueError(f"rtg_scale must be > 0, got {self.rtg_scale}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@struct.dataclass
class PromptDTState:
    params: Any
    opt_state: Any
    step: jax.Array


@struct.dataclass
class Source:
    """What the learner samples from: the training ``data``, its returns-to-go ``rtg [T, N]``
    (unscaled) and the observation moments ``(mean, std)`` the model reads observations by."""

    data: TaskData
    rtg: jax.Array
    obs_moments: Tuple[jax.Array, jax.Array]


@struct.dataclass
class Inference:
    """A trained model as it acts: its ``params``, the ``obs_moments`` it was trained with and
    the (unscaled) return-to-go ``target_return`` every episode starts from."""

    params: Any
    obs_moments: Tuple[jax.Array, jax.Array]
    target_return: jax.Array


class PromptDT(NamedTuple):
    init: InitFn
    update: UpdateFn
    loss: Callable
    make_source: Callable
    sample_batch: Callable
    predict: Callable
    make_policy: Callable
    context_init: Callable
    context_update: Callable
    context_embed: Callable
    optimizer: optax.GradientTransformation
    config: PromptDTConfig


def best_return(data: TaskData, rtg: jax.Array) -> jax.Array:
    """The largest return of a whole episode in ``data`` (its return-to-go at an episode's first
    step; ``rtg = returns_to_go(data)``): the target return-to-go of the policy (the issue's
    "training data's best returns"; Prompt-DT fixes one per environment)."""
    return jnp.max(jnp.where(data.timestep == 0, rtg, -jnp.inf))


def make_prompt_dt(config: PromptDTConfig, obs_dim: int, action_dim: int) -> PromptDT:
    model = PromptDecisionTransformer(action_dim, config.max_timestep, config.width,
                                      config.num_layers, config.num_heads, config.dropout)
    schedule = optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1))
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(schedule, weight_decay=config.weight_decay))

    def make_source(data: TaskData) -> Source:
        return Source(data=data, rtg=returns_to_go(data), obs_moments=observation_moments(data))

    def segments(source: Source, key, length, tasks, episode_ends):
        data = source.data
        tasks, pos, mask = window_positions(data, key, config.batch_size, length, tasks,
                                            episode_ends=episode_ends)
        tr = data.gather(tasks, pos)
        return Segment(rtg=take(source.rtg, tasks, pos) / config.rtg_scale,
                       obs=standardise(source.obs_moments, tr.obs), action=tr.action,
                       timestep=take(data.timestep, tasks, pos), mask=mask)

    def sample_batch(source: Source, key: jax.Array) -> Tuple[Segment, Segment]:
        """Segments ``[M, B, K]`` and prompts ``[M, B, P]`` of ``M`` tasks (a uniform
        meta-batch without replacement, or all)."""
        k_task, k_seg, k_prompt = jax.random.split(key, 3)
        tasks, num_tasks = None, source.data.num_tasks
        if config.meta_batch is not None and config.meta_batch < num_tasks:
            tasks = sample_task_subset(k_task, num_tasks, config.meta_batch)
        return (segments(source, k_seg, config.context, tasks, False),
                segments(source, k_prompt, config.prompt_length, tasks, True))

    def apply(params, seg: Segment, prompt: Segment, key=None):
        """Predictions for segments with any leading batch axes."""
        lead = seg.mask.shape[:-1]
        flat = lambda x: jax.tree_util.tree_map(lambda y: y.reshape((-1,) + y.shape[len(lead):]),
                                                x)
        def one(s, p, k):
            if k is None:
                return model.apply(params, s, p)
            return model.apply(params, s, p, deterministic=False, rngs={"dropout": k})
        # Dropout draws a Bernoulli variate for every attention weight and activation: JAX's
        # classic threefry layout draws them faster than its default (partitionable: one hash
        # per element) on a CPU (benchmarks/README.md, "Prompt-DT's dropout"). Only which
        # random numbers a key gives changes.
        with jax.threefry_partitionable(False):
            keys = None if key is None else jax.random.split(key, seg.mask[..., 0].size)
            out = jax.vmap(one)(flat(seg), flat(prompt), keys)
        return out.reshape(lead + out.shape[1:])

    def empty(n: int) -> Segment:
        return Segment(rtg=jnp.zeros((n,)), obs=jnp.zeros((n, obs_dim)),
                       action=jnp.zeros((n, action_dim)), timestep=jnp.zeros((n,), jnp.int32),
                       mask=jnp.zeros((n,), bool))

    def init(key: jax.Array, batch: Optional[Source] = None) -> PromptDTState:
        del batch                     # shapes come from the config
        params = model.init(key, empty(config.context), empty(config.prompt_length))
        return PromptDTState(params=params, opt_state=tx.init(params),
                             step=jnp.zeros((), jnp.int32))

    def loss_fn(params, batch: Tuple[Segment, Segment], key: jax.Array):
        seg, prompt = batch
        pred = apply(params, seg, prompt, key)
        loss = masked_action_mse(pred, seg.action, seg.mask)
        return loss, {"action_mse": loss}

    def update(state: PromptDTState, batch: Source, key: jax.Array):
        """One step on segments sampled from ``batch`` (a source: ``make_source(data)``)."""
        k_batch, k_drop = jax.random.split(key)
        params, opt_state, _, metrics = gradient_step(loss_fn, tx, state.params, state.opt_state,
                                                      sample_batch(batch, k_batch), k_drop)
        return PromptDTState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def predict(params, segment: Segment, prompt: Segment) -> jax.Array:
        """Deterministic action predictions ``[K, A]`` for one segment and its prompt."""
        return model.apply(params, segment, prompt)

    def push(seg: Segment, step: Segment) -> Segment:
        """``seg`` shifted left by one step, ``step`` (leaves without the step axis) last."""
        return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x[1:], y[None]]), seg, step)

    def make_policy(inference: Inference) -> RecurrentPolicy:
        """The DT acting on its own episode's last ``context - 1`` steps and the prompt ``z``."""
        history = config.context - 1

        def init():
            return {"past": empty(history), "rtg": inference.target_return / config.rtg_scale,
                    "t": jnp.zeros((), jnp.int32)}

        def current(memory, obs, action):
            return Segment(rtg=memory["rtg"], obs=standardise(inference.obs_moments, obs),
                           action=action, timestep=memory["t"], mask=jnp.ones((), bool))

        def act(memory, obs, prompt, key):
            del key    # deterministic
            now = current(memory, obs, jnp.zeros((action_dim,)))
            seg = jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y[None]]),
                                         memory["past"], now)
            return predict(inference.params, seg, prompt)[-1]

        def update_memory(memory, obs, action, reward):
            past = memory["past"]
            if history:
                past = push(past, current(memory, obs, action))
            return {"past": past, "rtg": memory["rtg"] - reward / config.rtg_scale,
                    "t": memory["t"] + 1}

        return RecurrentPolicy(init=init, act=act, update=update_memory)

    prompt_length = config.prompt_length

    def context_init():
        return {"ring": empty(prompt_length), "t": jnp.zeros((), jnp.int32),
                "prompt": empty(prompt_length)}

    def context_update(inference: Inference, ctx, tr: Transition):
        """Reads one transition (unbatched, action in [-1, 1]); at its episode's end the ring
        becomes the prompt, with returns-to-go to that end."""
        # the ring's rtg holds the rewards until the episode ends (padding: reward 0)
        ring = push(ctx["ring"], Segment(rtg=tr.reward, obs=standardise(inference.obs_moments,
                                                                        tr.obs),
                                         action=tr.action, timestep=ctx["t"],
                                         mask=jnp.ones((), bool)))
        ended = ring.replace(rtg=jnp.cumsum(ring.rtg[::-1])[::-1] / config.rtg_scale)
        done = tr.terminated | tr.truncated
        fresh = context_init()
        return {"ring": tree_where(done, fresh["ring"], ring),
                "t": jnp.where(done, fresh["t"], ctx["t"] + 1),
                "prompt": tree_where(done, ended, ctx["prompt"])}

    def context_embed(inference: Inference, ctx, obs):
        del inference, obs
        return ctx["prompt"]

    return PromptDT(init=init, update=update, loss=loss_fn, make_source=make_source,
                    sample_batch=sample_batch, predict=predict, make_policy=make_policy,
                    context_init=context_init, context_update=context_update,
                    context_embed=context_embed, optimizer=tx, config=config)
