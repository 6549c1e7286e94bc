"""The training loop's programs: every phase's ``prepare``, ``init``, chunk of ``lax.scan``-ned
updates and ``output``, and the evaluation, ``jit``-ed and ``vmap``-ped over seeds (or sharded
over devices); the schedule of chunks and the shapes of what a checkpoint holds. The loop that
runs them, checkpoints and logs is ``jaxomrl.experiment.runner``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxomrl.algos.base import FIRST_INPUTS, Algorithm
from jaxomrl.errors import steps_finite, tree_all_finite
from jaxomrl.experiment import distributed
from jaxomrl.experiment.run_config import RunConfig

EVAL_KEY = 10_000  # fold-in constant of the evaluation key (the same key at every evaluation)


def chunk_schedule(algorithm: Algorithm, chunk_steps: int) -> List[Tuple[int, int, int, int]]:
    """Every chunk of the run: (phase index, chunk index in phase, first step, num steps)."""
    out = []
    for p, phase in enumerate(algorithm.phases):
        for c, start in enumerate(range(0, phase.num_steps, chunk_steps)):
            out.append((p, c, start, min(chunk_steps, phase.num_steps - start)))
    return out


def templates(algorithm: Algorithm, data: Any, num_seeds: int, phase: int) -> Tuple[Any, Any]:
    """Shapes and dtypes of the checkpointed ``(inputs, state)`` of ``phase`` for ``num_seeds``
    seeds, derived abstractly (``jax.eval_shape``) through the earlier phases."""
    keys = jax.eval_shape(lambda: jax.vmap(jax.random.PRNGKey)(jnp.zeros((num_seeds,),
                                                                         jnp.uint32)))
    inputs = jax.ShapeDtypeStruct((num_seeds,) + FIRST_INPUTS.shape, FIRST_INPUTS.dtype)
    for p, ph in enumerate(algorithm.phases[:phase + 1]):
        aux = jax.eval_shape(jax.vmap(ph.prepare, in_axes=(0, None)), inputs, data)
        state = jax.eval_shape(jax.vmap(ph.init_state, in_axes=(0, 0, None)), keys, aux,
                               data)
        if p < phase:
            inputs = jax.eval_shape(jax.vmap(ph.output), state, aux)
    return inputs, state


class Programs:
    """The jitted, seed-``vmap``ped programs of one algorithm: every phase's ``prepare``,
    ``init``, ``output``, its chunk of ``n`` updates (built once per ``(phase, n)``), and the
    evaluation. ``sequential_seeds``: the chunks of phases with ``seeds_in_sequence`` run the
    seeds one after another (``lax.map``) instead (the runner's choice on a CPU backend without
    ``shard_seeds``; :func:`sequential_seeds`)."""

    def __init__(self, algorithm: Algorithm, sequential_seeds: bool = False):
        phases = algorithm.phases
        self.phases = phases
        self.sequential_seeds = sequential_seeds
        self.prepare = [jax.jit(jax.vmap(ph.prepare, in_axes=(0, None))) for ph in phases]
        self.init = [jax.jit(jax.vmap(ph.init_state, in_axes=(0, 0, None))) for ph in phases]
        self.output = [jax.jit(jax.vmap(ph.output)) for ph in phases]
        self.evaluate = jax.jit(jax.vmap(algorithm.evaluate, in_axes=(0, 0, None)))
        self.done = [None if ph.done is None else jax.jit(jax.vmap(ph.done)) for ph in phases]
        self._chunks: Dict[Tuple[int, int], Callable] = {}

    def chunk(self, p: int, n: int) -> Callable:
        """``(state, key, aux, data) -> (state, chunk-mean metrics, (per-step metric
        finiteness, state finiteness), updates run)`` of ``n`` updates of phase ``p``, every
        seed. A phase with ``done`` stops a seed's updates once it is done (a ``while_loop``
        with the same per-update keys; the metrics are the mean over the updates run), and
        the chunk ends when every seed is done."""
        if (p, n) not in self._chunks:
            phase = self.phases[p]

            def one_seed(state, key, aux, data):
                keys = jax.random.split(key, n)
                batch = phase.batch(aux, data)
                if phase.done is None:
                    state, metrics = jax.lax.scan(lambda s, k: phase.learner.update(s, batch, k),
                                                  state, keys)
                    finite = (steps_finite(metrics, n), tree_all_finite(state))
                    return state, jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0),
                                                         metrics), finite, jnp.asarray(n)
                like = jax.eval_shape(lambda s, k: phase.learner.update(s, batch, k)[1],
                                      state, keys[0])
                rows = jax.tree_util.tree_map(lambda m: jnp.zeros((n,) + m.shape, m.dtype),
                                              like)

                def body(carry):
                    i, s, rows = carry
                    s, m = phase.learner.update(s, batch, keys[i])
                    return i + 1, s, jax.tree_util.tree_map(lambda r, v: r.at[i].set(v),
                                                            rows, m)

                ran, state, rows = jax.lax.while_loop(
                    lambda carry: (carry[0] < n) & ~phase.done(carry[1]), body,
                    (jnp.asarray(0), state, rows))
                run_rows = jnp.arange(n) < ran          # rows not run stay zero: finite

                def mean(r):
                    mask = run_rows.reshape((n,) + (1,) * (r.ndim - 1))
                    return jnp.sum(jnp.where(mask, r, 0), axis=0) / jnp.maximum(ran, 1)
                finite = (steps_finite(rows, n), tree_all_finite(state))
                return state, jax.tree_util.tree_map(mean, rows), finite, ran

            if self.sequential_seeds and phase.seeds_in_sequence:
                def every_seed(state, key, aux, data):
                    return jax.lax.map(lambda a: one_seed(*a, data), (state, key, aux))
            else:
                every_seed = jax.vmap(one_seed, in_axes=(0, 0, 0, None))
            self._chunks[(p, n)] = jax.jit(every_seed)
        return self._chunks[(p, n)]


def sequential_seeds(config: RunConfig) -> bool:
    """Whether phases hinting ``seeds_in_sequence`` run their seeds one after another: on a CPU
    backend, unless the seeds are sharded over devices."""
    return jax.default_backend() == "cpu" and not config.shard_seeds


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run's arrays live. ``put_seeds``: an array with seeds on its leading axis, placed
    (split over the devices with ``shard_seeds``); ``data`` / ``eval_data``: the data, placed
    (replicated on every device with ``shard_seeds``: every seed reads all of it);
    ``seed_sharding``: the seeds' sharding, or None without ``shard_seeds``."""
    put_seeds: Callable[[Any], Any]
    data: Any
    eval_data: Any
    seed_sharding: Optional[NamedSharding] = None


def placement(config: RunConfig, data: Any, eval_data: Any) -> Placement:
    """The run's :class:`Placement`. With ``shard_seeds`` the mesh spans ``jax.devices()``:
    after ``jax.distributed.initialize`` the devices of every process, each process holding
    its own seeds' rows (``distributed.put``). A run over several processes must shard."""
    if not config.shard_seeds:
        if jax.process_count() > 1:
            raise ValueError(f"a run over {jax.process_count()} processes splits its seeds over "
                             "their devices: set shard_seeds (train.py --shard_seeds)")
        return Placement(lambda t: t, data, eval_data)
    devices = jax.devices()
    if len(config.seeds) % len(devices):
        raise ValueError(f"shard_seeds: {len(config.seeds)} seeds do not split evenly over "
                         f"{len(devices)} devices")
    mesh = Mesh(np.array(devices), ("seeds",))
    seed_sharding, shared = NamedSharding(mesh, P("seeds")), NamedSharding(mesh, P())
    data, eval_data = distributed.put((data, eval_data), shared)
    return Placement(lambda t: distributed.put(t, seed_sharding), data, eval_data,
                     seed_sharding)


def evaluation_keys(seeds) -> jax.Array:
    """``[len(seeds)]`` keys of the evaluations of seeds ``seeds`` (the same at every evaluation
    of a run, and for ``experiments/evaluate.py``)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(list(seeds), jnp.uint32))
    return jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY))(keys)
