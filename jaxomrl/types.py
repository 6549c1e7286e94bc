"""Types every layer shares (the role of Brax's ``training/types.py``).

``Transition`` is the one record of experience: environments produce it, datasets store its
fields, samplers batch it, encoders read it; a ``TaskBatch`` adds the task embeddings a
conditioned learner trains on; a ``Segment`` is a trajectory piece as a decision transformer
reads it. ``Policy`` is the one acting signature: a deterministic or
stochastic map ``(obs, z, key) -> action`` in the normalised box [-1, 1]^d, with ``z=None`` for a
policy that takes no task. The action-box maps live here because environments, collectors,
samplers and evaluators all convert between the networks' [-1, 1] box and the family's.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import jax
from flax import struct

PRNGKey = jax.Array
Metrics = Dict[str, jax.Array]
Policy = Callable[[jax.Array, Optional[jax.Array], PRNGKey], jax.Array]


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
    at ``obs`` and ``next_z [B, D]`` at ``next_obs`` (None: ``z``)."""

    transition: Transition
    z: jax.Array
    next_z: Optional[jax.Array] = None


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
