"""Prompt-DT's learner (Xu et al. 2022): a prompt decision transformer trained by action
regression on trajectory segments of every training task, each with a prompt from the same task.

``make_prompt_dt(config, obs_dim, action_dim)`` returns ``PromptDT`` with pure

    state = init(key)
    state, metrics = update(state, (data, rtg), key) # one step on segments + prompts of TaskData
    loss, metrics = loss(params, batch, key)         # the loss it steps on; batch = (seg, prompt)
    batch = sample_batch(data, rtg, key)             # segments [M, B, K] and prompts [M, B, P]
    actions = predict(params, segment, prompt)       # deterministic, one segment [K] -> [K, A]

``rtg`` is ``data.sampler.returns_to_go(data)`` (computed once per dataset); the model reads it
divided by ``config.rtg_scale``. Segments are ``context`` consecutive steps of one episode ending
at a uniform position (left-padded at episode starts); prompts the last ``prompt_length`` steps of
a uniformly drawn episode of the same task (Prompt-DT's ``get_prompt``: the trajectory's final
steps, a random trajectory per sample). Optimiser: AdamW with a linear warm-up and global-norm
clipping 0.25 (the DT's). Defaults are Prompt-DT's (mxu34/prompt-dt ``pdt_main.py``): width
128, 3 layers, 1 head, dropout 0.1, K = 20, prompt 5 steps, lr 1e-4, weight decay 1e-4, warm-up
10,000 steps, 16 segments per task and step.

Not yet: the runner spec and the evaluation (the policy needs its own last K steps as a state
beside the prompt, which ``eval.adaptation`` does not carry yet).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxomrl.data.sampler import TaskData, sample_task_subset, take, window_positions
from jaxomrl.errors import check_finite_fields
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.losses.sequence import masked_action_mse
from jaxomrl.nets.decision_transformer import PromptDecisionTransformer
from jaxomrl.types import Segment


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


class PromptDT(NamedTuple):
    init: Callable
    update: Callable
    loss: Callable
    sample_batch: Callable
    predict: Callable
    optimizer: optax.GradientTransformation
    config: PromptDTConfig


def make_prompt_dt(config: PromptDTConfig, obs_dim: int, action_dim: int) -> PromptDT:
    model = PromptDecisionTransformer(action_dim, config.max_timestep, config.width,
                                      config.num_layers, config.num_heads, config.dropout)
    schedule = optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1))
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(schedule, weight_decay=config.weight_decay))

    def segments(data: TaskData, rtg: jax.Array, key, length, tasks, episode_ends):
        tasks, pos, mask = window_positions(data, key, config.batch_size, length, tasks,
                                            episode_ends=episode_ends)
        tr = data.gather(tasks, pos)
        return Segment(rtg=take(rtg, tasks, pos) / config.rtg_scale, obs=tr.obs,
                       action=tr.action, timestep=take(data.timestep, tasks, pos), mask=mask)

    def sample_batch(data: TaskData, rtg: jax.Array, key: jax.Array) -> Tuple[Segment, Segment]:
        """Segments ``[M, B, K]`` and prompts ``[M, B, P]`` of ``M`` tasks (a uniform
        meta-batch without replacement, or all)."""
        k_task, k_seg, k_prompt = jax.random.split(key, 3)
        tasks = None
        if config.meta_batch is not None and config.meta_batch < data.num_tasks:
            tasks = sample_task_subset(k_task, data.num_tasks, config.meta_batch)
        return (segments(data, rtg, k_seg, config.context, tasks, False),
                segments(data, rtg, k_prompt, config.prompt_length, tasks, True))

    def apply(params, seg: Segment, prompt: Segment, key=None):
        """Predictions for segments with any leading batch axes."""
        lead = seg.mask.shape[:-1]
        flat = lambda x: jax.tree_util.tree_map(lambda y: y.reshape((-1,) + y.shape[len(lead):]),
                                                x)
        def one(s, p, k):
            if k is None:
                return model.apply(params, s, p)
            return model.apply(params, s, p, deterministic=False, rngs={"dropout": k})
        keys = None if key is None else jax.random.split(key, seg.mask[..., 0].size)
        out = jax.vmap(one)(flat(seg), flat(prompt), keys)
        return out.reshape(lead + out.shape[1:])

    def init(key: jax.Array) -> PromptDTState:
        def one(n):
            return Segment(rtg=jnp.zeros((n,)), obs=jnp.zeros((n, obs_dim)),
                           action=jnp.zeros((n, action_dim)), timestep=jnp.zeros((n,), jnp.int32),
                           mask=jnp.ones((n,), bool))
        params = model.init(key, one(config.context), one(config.prompt_length))
        return PromptDTState(params=params, opt_state=tx.init(params),
                             step=jnp.zeros((), jnp.int32))

    def loss_fn(params, batch: Tuple[Segment, Segment], key: jax.Array):
        seg, prompt = batch
        pred = apply(params, seg, prompt, key)
        loss = masked_action_mse(pred, seg.action, seg.mask)
        return loss, {"action_mse": loss}

    def update(state: PromptDTState, data_rtg: Tuple[TaskData, jax.Array], key: jax.Array):
        """One step on a batch sampled from ``(data, returns_to_go(data))``."""
        data, rtg = data_rtg
        k_batch, k_drop = jax.random.split(key)
        params, opt_state, _, metrics = gradient_step(loss_fn, tx, state.params, state.opt_state,
                                                      sample_batch(data, rtg, k_batch), k_drop)
        return PromptDTState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def predict(params, segment: Segment, prompt: Segment) -> jax.Array:
        """Deterministic action predictions ``[K, A]`` for one segment and its prompt."""
        return model.apply(params, segment, prompt)

    return PromptDT(init=init, update=update, loss=loss_fn, sample_batch=sample_batch,
                    predict=predict, optimizer=tx, config=config)
