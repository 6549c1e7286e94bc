"""ReDA's relative representation metric d(phi): how well task embeddings of held-out contexts
identify their tasks. (Nearest-centroid accuracy, also a training metric, is
``jaxomrl.losses.contrastive.centroid_accuracy``.)"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxomrl.losses.contrastive import nearest_centroid_hits


def relative_representation_metric(z_train_1: jax.Array, z_train_2: jax.Array,
                                   z_test_1: jax.Array) -> jax.Array:
    """ReDA eq. (8): ``d(phi) = mean ||z1 - z||^2 / mean ||z2 - z||^2`` over all pairs, where
    ``z1 [N1, D]`` / ``z2 [N2, D]`` embed training contexts of tasks 1 / 2 and ``z [M, D]`` embeds
    task 1's out-of-distribution test contexts. Near 0: the test contexts are recognised as task
    1; near or above 1: they are not told apart from task 2.
    """
    for name, z in (("z_train_1", z_train_1), ("z_train_2", z_train_2), ("z_test_1", z_test_1)):
        if z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty [N, D] array, got {z.shape}")

    def mean_sq(a, b):
        return jnp.mean(jnp.sum((a[:, None] - b[None]) ** 2, axis=-1))

    return mean_sq(z_train_1, z_test_1) / mean_sq(z_train_2, z_test_1)


def task_representation_metric(z_train: jax.Array, z_test: jax.Array) -> jax.Array:
    """ReDA eq. (8) for every task of a task set: ``d_i = m(i, i) / mean_{j != i} m(j, i)`` with
    ``m(j, i)`` the mean squared distance between task j's training-context embeddings
    ``z_train [T, S, D]`` and task i's test-context embeddings ``z_test [T, S', D]`` (e.g. from
    held-out behaviour checkpoints). Returns ``[T]``. With two tasks, ``d_1`` is eq. (8) exactly;
    with more, the other task of eq. (8) is replaced by the average over all other tasks.
    """
    if z_train.ndim != 3 or z_test.ndim != 3 or z_train.shape[0] != z_test.shape[0]:
        raise ValueError(f"expected [T, S, D] and [T, S', D], got {z_train.shape}, {z_test.shape}")
    t = z_train.shape[0]
    if t < 2:
        raise ValueError("d(phi) compares a task with the others: it needs at least 2 tasks")
    # m[i, j] = mean over pairs of ||z_train[j] - z_test[i]||^2, from means and second moments.
    sq_train = jnp.mean(jnp.sum(z_train ** 2, -1), 1)                      # [T]
    sq_test = jnp.mean(jnp.sum(z_test ** 2, -1), 1)                        # [T]
    cross = jnp.mean(z_test, 1) @ jnp.mean(z_train, 1).T                   # [T(test), T(train)]
    return _own_over_others(sq_test[:, None] + sq_train[None, :] - 2.0 * cross)


def _own_over_others(m: jax.Array) -> jax.Array:
    """``[T]``: ``m[i, i] / mean_{j != i} m[i, j]`` of a ``[T, T]`` matrix."""
    own = jnp.diagonal(m)
    return own / ((jnp.sum(m, axis=1) - own) / (m.shape[0] - 1))


def representation_metric_parts(z_train: jax.Array, z_test: jax.Array) -> dict:
    """What :func:`task_representation_metric`'s ``d_i`` is made of. With ``mu`` a task's mean
    embedding and ``s`` its spread (mean squared distance of its embeddings to ``mu``), the mean
    squared distance between task j's training and task i's test embeddings is
    ``m(j, i) = ||mu_test_i - mu_train_j||^2 + s_test_i + s_train_j``: where the held-out contexts
    sit (the centroid term) and how scattered both sources are (the spreads, which pull ``d``
    towards 1 however well the centroids are placed). Returns ``[T]`` arrays: ``dphi`` (as
    :func:`task_representation_metric`), ``centroid_dphi`` (the centroid terms alone:
    ``||mu_test_i - mu_train_i||^2 / mean_{j != i} ||mu_test_i - mu_train_j||^2``),
    ``spread_train`` / ``spread_test`` (``s``, relative to the mean squared distance between
    different tasks' training centroids, so an encoder's scale cancels) and ``accuracy`` (the
    fraction of task i's test embeddings nearest to task i's training centroid).
    """
    dphi = task_representation_metric(z_train, z_test)
    t = z_train.shape[0]
    mu_train, mu_test = jnp.mean(z_train, 1), jnp.mean(z_test, 1)                  # [T, D]
    centroid = _own_over_others(jnp.sum((mu_test[:, None] - mu_train[None]) ** 2, -1))
    between = jnp.sum((mu_train[:, None] - mu_train[None]) ** 2, -1)
    scale = jnp.sum(between) / (t * (t - 1))
    spread = lambda z, mu: jnp.mean(jnp.sum((z - mu[:, None]) ** 2, -1), 1) / scale
    accuracy = jnp.mean(nearest_centroid_hits(z_train, z_test), 1)
    return {"dphi": dphi, "centroid_dphi": centroid, "spread_train": spread(z_train, mu_train),
            "spread_test": spread(z_test, mu_test), "accuracy": accuracy}
