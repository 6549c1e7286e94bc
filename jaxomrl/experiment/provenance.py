"""Where and how a run was made: the software and the device, recorded beside its identity.

``made_with()`` goes into ``run.json`` (the call that started the run) and ``results.json`` (the
call that finished it). It is not part of the run's identity: a run may resume on another
machine or JAX version, and both records then say so.
"""
from __future__ import annotations

import platform
import socket
import sys
from typing import Any, Dict

MADE_WITH = "made_with"      # the key in run.json / results.json


def made_with() -> Dict[str, Any]:
    """JAX, jaxlib, MuJoCo and Python versions, the backend, device kind and count, the default
    matmul precision, and the host."""
    import jax
    import jaxlib
    import mujoco
    devices = jax.devices()
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "mujoco": mujoco.__version__,
            "python": sys.version.split()[0], "backend": jax.default_backend(),
            "device_kind": devices[0].device_kind, "device_count": len(devices),
            "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
            "host": socket.gethostname(), "machine": platform.machine()}
