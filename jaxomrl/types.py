"""Types every layer shares (the role of Brax's ``training/types.py``).

``Transition`` is the one record of experience: environments produce it, datasets store its
fields, samplers batch it, encoders read it; a ``TaskBatch`` adds the task embeddings a
conditioned learner trains on; a ``Segment`` is a trajectory piece as a decision transformer
reads it. ``Policy`` is the one acting signature: a deterministic or stochastic map ``(obs, z,
key) -> action`` in the normalised box [-1, 1]^d, with ``z=None`` for a policy that takes no
task; a ``RecurrentPolicy`` adds a memory of its own episode (a decision transformer's last
steps), and ``as_recurrent`` makes any ``Policy`` one with an empty memory. The action-box maps
live here because environments, collectors, samplers and evaluators all convert between the
networks' [-1, 1] box and the family's.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
from flax import struct

PRNGKey = jax.Array
Metrics = Dict[str, jax.Array]
Policy = Callable[[jax.Array, Optional[jax.Array], PRNGKey], jax.Array]


class RecurrentPolicy(NamedTuple):
    """A policy that remembers its own episode: ``init() -> memory`` at every episode's start,
    ``act(memory, obs, z, key) -> action`` (as ``Policy``), ``update(memory, obs, action,
    reward) -> memory`` after every step (``action`` in [-1, 1]^d). The memory is the policy's
    own, apart from the task context ``z``: a protocol that holds the context fixed still
    updates it."""

    init: Callable[[], Any]
    act: Callable[[Any, jax.Array, Optional[jax.Array], PRNGKey], jax.Array]
    update: Callable[[Any, jax.Array, jax.Array, jax.Array], Any]


def as_recurrent(policy) -> RecurrentPolicy:
    """``policy`` itself if it is a ``RecurrentPolicy``, else a ``Policy`` with an empty memory."""
    if isinstance(policy, RecurrentPolicy):
        return policy
    return RecurrentPolicy(init=lambda: (), act=lambda memory, obs, z, key: policy(obs, z, key),
                           update=lambda memory, obs, action, reward: memory)


@struct.dataclass
class Transition:
    """A batch of transitions; every leaf has the same leading axes."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@struct.dataclass
class TaskBatch:
    """Transitions ``[B]`` with the task embeddings a conditioned learner trains on: ``z [B, D]``
    at ``obs`` and ``next_z [B, D]`` at ``next_obs`` (None: ``z``; ``z`` None for an
    unconditioned learner), and optionally the actor loss's per-transition weights
    ``actor_weight [B]`` (None: every transition alike; the critics learn from every one)."""

    transition: Transition
    z: Optional[jax.Array]
    next_z: Optional[jax.Array] = None
    actor_weight: Optional[jax.Array] = None


@struct.dataclass
class Segment:
    """A trajectory segment as a decision transformer reads it, leaves ``[..., L]``: the scaled
    return-to-go ``rtg``, ``obs [..., L, O]``, ``action [..., L, A]`` (in [-1, 1]), the
    within-episode ``timestep`` (int) and ``mask`` (False: padding)."""

    rtg: jax.Array
    obs: jax.Array
    action: jax.Array
    timestep: jax.Array
    mask: jax.Array


def scale_action(action: jax.Array, low: float, high: float) -> jax.Array:
    """[-1, 1] -> [low, high]."""
    return low + 0.5 * (action + 1.0) * (high - low)


def unscale_action(action: jax.Array, low: float, high: float) -> jax.Array:
    """[low, high] -> [-1, 1]."""
    return 2.0 * (action - low) / (high - low) - 1.0
