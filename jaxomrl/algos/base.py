"""What an algorithm is to the experiment runner: a sequence of training phases and an evaluation.

Each phase is a pure learner over one seed; the runner ``vmap``s it over seeds, ``jit``s chunks of
its ``lax.scan``-ned updates, checkpoints between chunks and hands the phase's ``output`` to the
next phase. Every function below is for ONE seed and must be jittable.

    aux = phase.prepare(inputs, data)            # derived once from the previous phase's output
    batch = phase.batch(aux, data)               # what its learner learns from
    state = phase.learner.init(key, batch)
    state, metrics = phase.learner.update(state, batch, key)
    outputs = phase.output(state, aux)           # the next phase's ``inputs``
    metrics = algorithm.evaluate(outputs, key, eval_data)   # after the last phase

``inputs`` (and so ``aux``) are deterministic functions of what earlier phases trained, so a
resumed run recomputes ``aux`` instead of storing it; checkpoints hold ``inputs`` and ``state``.
``data`` and ``eval_data`` are pytrees of device arrays shared by all seeds (not ``vmap``-ped).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.learners.base import Learner

# The first phase's input (it has no predecessor): a scalar zero per seed, so that every phase's
# prepare / init is called the same way. Later phases get the previous phase's output. A NumPy
# value: importing a module must not start JAX's backend (``jax.distributed.initialize`` comes
# first in a multi-process run).
FIRST_INPUTS = np.zeros((), np.float32)


def _no_prepare(inputs: Any, data: Any) -> Any:
    del data
    return inputs


class PhaseData(NamedTuple):
    """A phase's ``aux`` and the run's ``data``: the batch of a learner that reads both."""

    aux: Any
    data: Any


class Phase(NamedTuple):
    """A ``learner`` (``jaxomrl.learners.base``: ``init(key, batch)``, ``update(state, batch,
    key)``) trained for ``num_steps`` updates on ``batch(aux, data)`` (default: ``PhaseData(aux,
    data)``), where ``aux = prepare(inputs, data)`` comes from the previous phase's output; its
    ``output(state, aux)`` is the next phase's ``inputs``.
    ``config`` (JSON-serialisable, optional): everything besides its inputs, the data and the
    seeds that determines what the phase computes. Runs whose phases up to this one have equal
    configs compute equal outputs, which the runner can then share (``RunConfig.share_dir``).
    ``done(state) -> bool []`` (optional, one seed): True only when no further update can change
    ``output(state, aux)`` (e.g. every model early-stopped); the runner then skips the phase's
    remaining updates once every seed is done, with the same outputs as running them.
    ``seeds_in_sequence``: a hint for CPUs, where the runner then runs the seeds one after
    another inside the phase's chunk program (``lax.map``) instead of vmapped: faster there for
    phases whose one-seed working set is already large (the GRU-VAE's posterior-by-transition
    grid, the transformer's attention maps), slower for small MLP updates
    (benchmarks/README.md, "Seeds vmapped or in sequence"). On accelerators, and
    with ``shard_seeds``, the seeds are always vmapped; the outputs are the same up to
    floating-point summation order."""

    name: str
    num_steps: int
    learner: Learner
    output: Callable[[Any, Any], Any]
    prepare: Callable[[Any, Any], Any] = _no_prepare
    batch: Callable[[Any, Any], Any] = PhaseData
    config: Optional[Dict[str, Any]] = None
    done: Optional[Callable[[Any], jax.Array]] = None
    seeds_in_sequence: bool = False

    def init_state(self, key: jax.Array, aux: Any, data: Any) -> Any:
        """The learner's first state on this phase's batch."""
        return self.learner.init(key, self.batch(aux, data))


class Algorithm(NamedTuple):
    """``phases`` run in order; ``evaluate(outputs, key, eval_data) -> {name: array}`` (one seed)
    scores the last phase's output. ``config`` is a JSON-serialisable description of the run.
    ``embed(outputs, key, data, num) -> [T, num, latent]`` (None for task-agnostic algorithms):
    task embeddings of ``num`` contexts per task of a ``TaskData`` (for d(phi) and t-SNE).
    ``policy(outputs) -> (policy, context)``: the trained policy as ``evaluate``'s rollouts run it
    (its deterministic ``jaxomrl.types.Policy`` or ``RecurrentPolicy`` and the
    ``jaxomrl.eval.adaptation.Context`` that infers ``z`` online, None for task-agnostic
    algorithms), for rollouts of one's own (``eval.adaptation.online_rollout``: traces).
    ``read_config(config) -> config``: the ``config`` of a ``run.json`` written by an older
    version in today's form (renamed fields, defaults of fields added since), so identity checks
    compare like with like (None: compared as written)."""

    name: str
    phases: Tuple[Phase, ...]
    evaluate: Callable[[Any, jax.Array, Any], Dict[str, jax.Array]]
    config: Dict[str, Any]
    embed: Optional[Callable[[Any, jax.Array, Any, int], jax.Array]] = None
    policy: Optional[Callable[[Any], Tuple[Callable, Any]]] = None
    read_config: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None


def make_train(algorithm: Algorithm, chunk_steps: int) -> Callable[[jax.Array, Any], Any]:
    """The whole algorithm as one pure function, PureJaxRL-style, beside the experiment runner:

        train = jax.jit(make_train(algorithm, chunk_steps=500))
        outputs = train(jax.random.PRNGKey(seed), data)            # the last phase's output
        outputs = jax.jit(jax.vmap(make_train(algorithm, 500), in_axes=(0, None)))(keys, data)

    Every phase runs in one program (no I/O, no checkpoints, no logs), with the runner's
    randomness -- phase ``p``'s key ``fold_in(key, p)``, its init ``fold_in(., 0)``, its chunk
    ``c`` ``fold_in(., 1 + c)`` split into one key per update -- so ``train`` gives the
    parameters ``jaxomrl.experiment.runner.run`` trains with the same ``chunk_steps`` and seed
    ``PRNGKey(seed)`` (up to the float rounding of a differently fused program)."""
    if chunk_steps < 1:
        raise ValueError(f"chunk_steps must be >= 1, got {chunk_steps}")

    def run_phase(phase: Phase, key, inputs, data):
        aux = phase.prepare(inputs, data)
        batch = phase.batch(aux, data)
        state = phase.learner.init(jax.random.fold_in(key, 0), batch)

        def chunk(state, c, n):
            keys = jax.random.split(jax.random.fold_in(key, 1 + c), n)
            return jax.lax.scan(lambda s, k: (phase.learner.update(s, batch, k)[0], None),
                                state, keys)[0]

        full, rest = divmod(phase.num_steps, chunk_steps)
        state = jax.lax.scan(lambda s, c: (chunk(s, c, chunk_steps), None), state,
                             jnp.arange(full))[0]
        if rest:
            state = chunk(state, full, rest)
        return phase.output(state, aux)

    def train(key: jax.Array, data: Any) -> Any:
        inputs = FIRST_INPUTS
        for p, phase in enumerate(algorithm.phases):
            inputs = run_phase(phase, jax.random.fold_in(key, p), inputs, data)
        return inputs

    return train
