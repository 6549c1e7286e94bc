"""How this process compiles: JAX's persistent compilation cache (``--compilation_cache``,
one directory per kind of host CPU and jax version) and the matrix products' precision
(``--matmul_precision``). ``cli.run`` applies both before a command's ``main``."""
from __future__ import annotations

import hashlib
import os
import platform
import sys
from typing import Optional

from absl import flags


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxomrl", "xla")


flags.DEFINE_string(
    "compilation_cache", _default_cache_dir(),
    "Directory of the persistent XLA compilation cache: programs compiled once are read back "
    "by later commands and by other runs of the same command (one subdirectory per host CPU "
    "and jax version, at most 2 GiB, least recently used entries dropped). Empty: no cache. "
    "Ignored where JAX_COMPILATION_CACHE_DIR is set.")

CACHE_MAX_BYTES = 2 * 1024 ** 3

# JAX's default computes float32 matrix products in TF32 on recent NVIDIA GPUs (JAX docs, "Matmul
# precision"), which has broken MJX training elsewhere: here they are full float32 unless asked.
# CPUs compute float32 products at full precision either way.
flags.DEFINE_enum(
    "matmul_precision", "highest", ["highest", "high", "default"],
    "jax_default_matmul_precision of every program: highest (float32 products in float32), "
    "high (bf16_3x / TF32-like on GPUs), default (the backend's: TF32 on recent GPUs). Recorded "
    "in run.json.")


def host_fingerprint() -> str:
    """12 hex digits naming this host's CPU (architecture, model, instruction-set flags) and
    jax version: compiled CPU executables use the host's instructions, so a cache shared by
    machines (a home directory on a cluster) keeps one subdirectory per kind of CPU."""
    import jax
    parts = [platform.machine(), platform.processor(), jax.__version__]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":")[0].strip()
                if key in ("model name", "flags", "Features", "CPU part") and line not in parts:
                    parts.append(line)
    except OSError:
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def use_compilation_cache(path: str) -> Optional[str]:
    """Turns on JAX's persistent compilation cache in ``<path>/<host_fingerprint()>`` (unless
    a cache directory is already configured, e.g. by ``JAX_COMPILATION_CACHE_DIR``, or ``path``
    is empty); returns the directory in use. A directory that cannot be created leaves the
    cache off with a warning: the cache only saves time."""
    import jax
    where = jax.config.jax_compilation_cache_dir
    if not where:
        if not path:
            return None
        where = os.path.join(os.path.expanduser(path), host_fingerprint())
        try:
            os.makedirs(where, exist_ok=True)
        except OSError as e:
            print(f"warning: no compilation cache ({where}: {e.strerror or e})",
                  file=sys.stderr)
            return None
        try:
            import filelock  # noqa: F401 -- JAX's size-bounded cache needs it
            jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
        except ImportError:
            pass
        jax.config.update("jax_compilation_cache_dir", where)
    if jax.default_backend() == "cpu":
        _quiet_cpu_loader_log()
    return where


def set_matmul_precision(name: str) -> None:
    """``jax_default_matmul_precision`` for every later program (``--matmul_precision``)."""
    import jax
    jax.config.update("jax_default_matmul_precision", None if name == "default" else name)


def _quiet_cpu_loader_log() -> None:
    """jaxlib 0.9 logs two ~3 kB C++ ERROR lines for every program read back from the cache on
    a CPU ("Target machine feature +prefer-no-gather is not supported on the host machine"):
    its loader takes the LLVM tuning attributes ``+prefer-no-gather`` / ``+prefer-no-scatter``
    recorded at compilation for CPU features the host lacks (jax-ml/jax#38445,
    openxla/xla#44565), although the same host compiled the program and it loads and runs
    (``tests/test_compilation_cache.py``), with a WARNING line each ("Assume version
    compatibility"). In a process that uses the cache on a CPU, XLA's C++ logging below FATAL
    is turned off; Python warnings and errors are unchanged."""
    try:
        from jax._src.lib import utils as jaxlib_utils
        jaxlib_utils.absl_set_min_log_level(3)
    except (ImportError, AttributeError):     # another jaxlib: the lines stay, nothing else
        pass
