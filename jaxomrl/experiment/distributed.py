"""One run over the devices of several processes (hosts): ``jax.distributed`` and what the
runner needs from it.

Every process runs the same command; ``initialize`` joins them (JAX's multi-controller model:
https://jax.readthedocs.io/en/latest/multi_process.html). Launch:

- by hand: ``--coordinator_address=host0:1234 --num_processes=N --process_id=i`` on each host;
- under SLURM: ``srun`` with one task per host (or per GPU); JAX reads the coordinator, the
  process count and id from SLURM's environment (``SLURM_JOB_NODELIST``, ``SLURM_NTASKS``,
  ``SLURM_PROCID``).

After it, ``jax.devices()`` lists every process's devices and the runner's seed mesh
(``programs.placement``) spans them all; each process holds its own seeds' rows. Process 0
(:func:`is_writer`) writes the run's files; orbax writes each process's shards of a checkpoint
itself. On CPU backends the cross-process collectives are gloo's.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
from absl import flags
from jax.experimental import multihost_utils

from jaxomrl.experiment import cli


def under_slurm_step() -> bool:
    """Whether this process is one of several tasks of a SLURM job step (``srun``)."""
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in os.environ


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> bool:
    """Joins this process to a multi-process run, before any JAX computation: with a
    coordinator address, as process ``process_id`` of ``num_processes``; without one, from
    SLURM's environment under ``srun`` with several tasks. Returns whether it joined one (a
    single process is left alone). Raises ``ValueError`` on an incomplete set of flags."""
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("a multi-process run needs all of --coordinator_address, "
                         "--num_processes and --process_id (or none of them, under srun)")
    if all(given):
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id must be in [0, --num_processes), got {process_id} "
                             f"of {num_processes}")
        if num_processes == 1:
            return False
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                      process_id=process_id)
    elif under_slurm_step():
        kwargs = {}
    else:
        return False
    # the CPU backend's collectives across processes (the default has none); GPUs use NCCL
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def define_flags() -> None:
    """The flags of a multi-process run (``--coordinator_address``, ``--num_processes``,
    ``--process_id``; :func:`initialize_from_flags`)."""
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for a run over "
                        "several processes launched by hand (jax.distributed); under srun with "
                        "several tasks the run joins its processes without these flags.")
    flags.DEFINE_integer("num_processes", None, "Processes of a multi-process run (with "
                         "--coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's index in [0, --num_processes).")


def initialize_from_flags() -> int:
    """:func:`initialize` from :func:`define_flags`'s flags; returns the number of processes
    (1 for a run in one process). A bad set of flags is a ``cli.UsageError``."""
    f = flags.FLAGS
    try:
        initialize(f.coordinator_address, f.num_processes, f.process_id)
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    return jax.process_count()


def is_writer() -> bool:
    """Whether this process writes the run's files (logs, run.json, results): process 0."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (every process gets the same answer)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]))))


def fetch(tree: Any) -> Any:
    """``jax.device_get`` of ``tree``, whose arrays may span every process's devices: each such
    array is gathered from all processes first, so every process gets the whole value."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)
    return jax.tree_util.tree_map(get, tree)


def put(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Every leaf of ``tree`` (the same host value on every process) as a global array with
    ``sharding``: each process places only the rows its devices hold. An array already global
    is returned as it is if it has that sharding."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding == sharding:
                return x
            x = fetch(x)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree_util.tree_map(one, tree)
