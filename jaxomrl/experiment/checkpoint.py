"""Orbax checkpointing of whole training-state pytrees, for resumable runs.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save resumes from the previous complete step. Saves are synchronous: a failed write (a full
disk, a permission) raises from ``save`` in the caller's thread, before the run goes on, and
``latest_step`` is always a complete, readable checkpoint.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxomrl.experiment import distributed
from jaxomrl.io import require_free_space


def _nonempty(tree: Any) -> Dict[str, Any]:
    """Leaves by flat index, without zero-size arrays (which orbax cannot store; simulator
    states such as ``mjx.Data`` have some). ``restore`` recreates them from the template."""
    leaves = jax.tree_util.tree_leaves(tree)
    return {str(i): x for i, x in enumerate(leaves) if math.prod(x.shape) > 0}


class Checkpointer:
    """Saves / restores a pytree by integer step in ``directory`` (keeps the newest ``max_to_keep``)."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
                enable_async_checkpointing=False))

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Saves ``state`` as ``step`` (returns when it is complete on disk). Refuses with
        ``OSError(ENOSPC)`` first if the disk lacks room for it (``require_free_space``)."""
        leaves = _nonempty(state)
        require_free_space(self.directory, sum(x.nbytes for x in leaves.values()))
        self._manager.save(step, args=ocp.args.StandardSave(leaves))

    def restore(self, step: int, like: Any,
                sharding: Optional[jax.sharding.Sharding] = None) -> Any:
        """The state saved at ``step``, with the structure, shapes and dtypes of ``like``
        (arrays or ``jax.ShapeDtypeStruct`` leaves, e.g. from ``jax.eval_shape``), every array
        placed with ``sharding`` (default: this process's first device). A checkpoint saved
        from other devices (a sharded run, several processes) restores onto these: each process
        reads the parts its devices hold."""
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        leaves, treedef = jax.tree_util.tree_flatten(like)
        target = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
            _nonempty(like))
        saved = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        out = [saved[str(i)] if str(i) in saved else
               distributed.put(np.zeros(x.shape, x.dtype), sharding)
               for i, x in enumerate(leaves)]
        return jax.tree_util.tree_unflatten(treedef, out)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
