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


# The suite runs on two workers (README: pytest -n 2 --dist loadfile --no-loadscope-reorder),
# each taking the next file when it is free. Files are handed out in collection order, so the
# longest go first: otherwise one worker may start a long file when the other is nearly done.
LONGEST_FIRST = ("test_cheetah_vel_pipeline.py", "test_gravity_reda_pipeline.py", "test_envs.py",
                 "test_reda.py", "test_failures.py", "test_runner.py", "test_evaluation.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))
