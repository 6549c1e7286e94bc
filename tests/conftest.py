import atexit
import os
import shutil
import tempfile

# Tests run on the CPU with float32, as in CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Most of the suite's time is XLA compiling programs that then run a few tiny steps, and most of
# a CPU compilation is LLVM optimising the generated code. The tests compile with LLVM's
# optimisation off: the same HLO programs after XLA's own passes, so the same computations; the
# float results may differ in the last bits, as between machines (test_relabel's random-action
# trajectories moved). Measured on the 2-core machine, one file at a time, A then B, 2026-12-03:
# the gravity and Half-Cheetah-Vel pipelines 108 -> 63 s and 120 -> 72 s, the evaluation test's
# tiny runs 149 -> 91 s, the MJX-vs-C agreement tests (run-time bound) 30 -> 27 s. Set here,
# before jax is imported, so the command lines the tests start as subprocesses (with
# ``env=dict(os.environ, ...)``) compile the same way; flags a user set in XLA_FLAGS are kept
# before them. JAXOMRL_TEST_DEFAULT_CODEGEN=1 runs the suite with XLA's default code generation.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if not os.environ.get("JAXOMRL_TEST_DEFAULT_CODEGEN"):
    os.environ["XLA_FLAGS"] = " ".join(
        f for f in (os.environ.get("XLA_FLAGS", ""), FAST_COMPILE) if f)

import jax  # noqa: E402

# Many tests build the same programs again (every experiment-runner call jits its own closures):
# a compilation cache private to this test session serves the repeats from disk (the command
# lines the tests start, which would use the user's cache, included). It lives and
# dies with the session, so executables never move between machines.
_CACHE = tempfile.mkdtemp(prefix="jaxomrl-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE   # the command lines tests start use it too
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# The suite runs on two workers (README: pytest -n 2 --dist loadfile --no-loadscope-reorder),
# each taking the next file when it is free. Files are handed out in collection order, so the
# longest go first (longest processing time first: the last files to start are short ones, and
# neither worker idles long at the end). The order is by each file's measured total; the tiny
# reproductions are three files so that they spread over both workers.
LONGEST_FIRST = ("test_reproduce_rand_params.py", "test_reda.py", "test_benchmarks.py",
                 "test_envs.py", "test_reproduce_reda.py", "test_runner.py", "test_evaluation.py",
                 "test_reproduce_resume.py", "test_workers.py", "test_sweep.py",
                 "test_distributed.py", "test_failures.py",
                 "test_gravity_reda_pipeline.py", "test_encoders.py",
                 "test_cheetah_vel_pipeline.py", "test_learner_contract.py",
                 "test_meta_policy.py", "test_prompt_dt.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))
