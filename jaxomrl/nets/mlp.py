"""Multi-layer perceptron."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Dense layers ``hidden`` with ``activation`` between them, then an optional linear output.

    ``output_dim=None`` returns the last hidden layer's activations (a feature extractor).
    """

    hidden: Sequence[int]
    output_dim: int | None = None
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    kernel_init: Callable = nn.initializers.lecun_normal()
    output_scale: float = 1.0  # variance-scaling factor of the output layer's initial kernel

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = self.activation(nn.Dense(width, kernel_init=self.kernel_init)(x))
        if self.output_dim is not None:
            init = nn.initializers.variance_scaling(self.output_scale, "fan_in", "truncated_normal")
            x = nn.Dense(self.output_dim, kernel_init=init)(x)
        return x
