import atexit
import os
import shutil
import tempfile

# Tests run on the CPU with float32, as in CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Many tests build the same programs again (every experiment-runner call jits its own closures):
# a compilation cache private to this test session serves the repeats from disk. It lives and
# dies with the session, so executables never move between machines.
_CACHE = tempfile.mkdtemp(prefix="jaxomrl-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
