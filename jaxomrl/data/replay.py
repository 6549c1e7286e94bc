"""A fixed-capacity FIFO replay buffer as a pytree (jittable, ``vmap``-able over tasks)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
    """``data`` is any pytree whose leaves have a leading ``[capacity]`` axis."""

    data: Any
    ptr: jax.Array   # [] next write position
    size: jax.Array  # [] number of valid entries

    @property
    def capacity(self) -> int:
        return int(jax.tree_util.tree_leaves(self.data)[0].shape[0])


def replay_init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example`` (one item, no batch axis)."""
    if capacity < 1:
        raise ValueError(f"replay capacity must be >= 1, got {capacity}")
    data = jax.tree_util.tree_map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data=data, ptr=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def replay_add(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Appends a batch ``[n, ...]`` of items (``n <= capacity``), overwriting the oldest."""
    n = jax.tree_util.tree_leaves(items)[0].shape[0]
    cap = buffer.capacity
    if n > cap:
        raise ValueError(f"cannot add {n} items to a replay buffer of capacity {cap}")
    idx = (buffer.ptr + jnp.arange(n)) % cap
    data = jax.tree_util.tree_map(lambda d, x: d.at[idx].set(x), buffer.data, items)
    return ReplayBuffer(data=data, ptr=(buffer.ptr + n) % cap,
                        size=jnp.minimum(buffer.size + n, cap))


def replay_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` items drawn uniformly with replacement from the valid entries."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree_util.tree_map(lambda d: d[idx], buffer.data)
