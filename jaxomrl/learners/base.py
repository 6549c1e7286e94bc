"""The learner contract: what every learner in this package is (optax's ``GradientTransformation``
for learning rules; Brax's ``training/types.py``).

A learner is a pair of pure functions with one argument order::

    state = learner.init(key, batch)                 # batch: an example of what update takes
    state, metrics = learner.update(state, batch, key)

``batch`` is whatever the learner learns from in one step (a ``Transition``, a ``TaskBatch``, a
``TaskData`` to sample from, a task to interact with); ``init`` receives one for shapes and
statistics and may ignore it (``None`` is accepted where it does), and a learner that draws no
random numbers takes ``key`` and ignores it. ``metrics`` is a flat ``{name: array}``. Both are
jittable and ``vmap``-able over seeds and tasks, so loops over updates are ``lax.scan`` and a
learner plugs into ``jaxomrl.algos.base.Phase`` unchanged. Each learner's ``NamedTuple`` adds its
losses and its inference functions (``make_policy``, ``embed``, ...) as further fields.
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Protocol, Tuple, runtime_checkable

import jax

from jaxomrl.types import Metrics

State = Any
Batch = Any


class InitFn(Protocol):
    def __call__(self, key: jax.Array, batch: Batch = None) -> State:
        """A fresh state, from ``key`` and an example ``batch`` of what ``update`` takes."""


class UpdateFn(Protocol):
    def __call__(self, state: State, batch: Batch, key: jax.Array) -> Tuple[State, Metrics]:
        """One learning step on ``batch`` with the randomness ``key``."""


@runtime_checkable
class Learner(Protocol):
    """Anything with ``init: InitFn`` and ``update: UpdateFn`` (every learner's ``NamedTuple``)."""

    @property
    def init(self) -> InitFn: ...

    @property
    def update(self) -> UpdateFn: ...


INIT_PARAMETERS = ("key", "batch")
UPDATE_PARAMETERS = ("state", "batch", "key")


def check_signature(learner: Any) -> None:
    """Raises ``TypeError`` unless ``learner`` has ``init(key, batch)`` and ``update(state, batch,
    key)``, named in that order (a Protocol fixes what is passed, not what it is called; the
    names are this package's way of saying the order is the contract's)."""
    if not isinstance(learner, Learner):
        raise TypeError(f"{type(learner).__name__} has no init and update")
    for fn, expected in ((learner.init, INIT_PARAMETERS), (learner.update, UPDATE_PARAMETERS)):
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = tuple(p.name for p in params)
        if names[:len(expected)] != expected or any(
                p.default is p.empty for p in params[len(expected):]):
            raise TypeError(f"{type(learner).__name__}.{fn.__name__}{names}: the contract is "
                            f"{fn.__name__}{expected}")


class PlainLearner(NamedTuple):
    """A learner that is only its two functions (a phase's own rule, a test's toy learner)."""

    init: InitFn
    update: UpdateFn
