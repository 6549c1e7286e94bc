"""Multi-layer perceptron."""
from __future__ import annotations

from typing import Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

Parts = Union[jax.Array, Sequence[jax.Array]]


class DenseOfParts(nn.Module):
    """``nn.Dense`` on the concatenation of ``parts`` along their last axis, without building
    it: each part is multiplied by its rows of the one kernel and the products are added, their
    leading axes broadcast against each other. Parts ``[P, 1, a]`` and ``[1, T, b]`` give every
    pair's pre-activation ``[P, T, width]`` at the cost of ``P + T`` rows instead of ``P x T``
    (the VAE's every-posterior-by-every-transition decoding). Parameters are ``nn.Dense``'s
    (``kernel [sum of sizes, width]``, ``bias``), initialised alike."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, parts: Parts) -> jax.Array:
        parts = [parts] if isinstance(parts, jax.Array) else list(parts)
        sizes = [p.shape[-1] for p in parts]
        kernel = self.param("kernel", self.kernel_init, (sum(sizes), self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        out, start = bias, 0
        for p, n in zip(parts, sizes):
            out = out + jnp.dot(p, kernel[start:start + n])
            start += n
        return out


class MLP(nn.Module):
    """Dense layers ``hidden`` with ``activation`` between them, then an optional linear output.

    ``output_dim=None`` returns the last hidden layer's activations (a feature extractor). The
    input is an array or a sequence of parts whose concatenation (leading axes broadcast) is
    the input (:class:`DenseOfParts`).
    """

    hidden: Sequence[int]
    output_dim: int | None = None
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    kernel_init: Callable = nn.initializers.lecun_normal()
    output_scale: float = 1.0  # variance-scaling factor of the output layer's initial kernel

    @nn.compact
    def __call__(self, x: Parts) -> jax.Array:
        # layers named as nn.Dense's auto-names (Dense_0, ...): parameters as before parts
        for i, width in enumerate(self.hidden):
            layer = (DenseOfParts(width, self.kernel_init, name="Dense_0") if i == 0
                     else nn.Dense(width, kernel_init=self.kernel_init, name=f"Dense_{i}"))
            x = self.activation(layer(x))
        if self.output_dim is not None:
            init = nn.initializers.variance_scaling(self.output_scale, "fan_in", "truncated_normal")
            layer = (DenseOfParts if not self.hidden else nn.Dense)(
                self.output_dim, kernel_init=init, name=f"Dense_{len(self.hidden)}")
            x = layer(x)
        return x
