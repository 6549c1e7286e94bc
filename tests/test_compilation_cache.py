"""The command lines' persistent compilation cache (``--compilation_cache``)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process: turns the cache on as the command lines do, compiles one program, prints the
# directory in use and how many compilations the cache served.
SCRIPT = """
import sys
import jax, jax.monitoring
from jaxomrl.experiment import compilation
hits = []
jax.monitoring.register_event_listener(
    lambda e, **_: hits.append(e) if e == "/jax/compilation_cache/cache_hits" else None)
where = compilation.use_compilation_cache(sys.argv[1])
jax.block_until_ready(jax.jit(lambda x: jax.numpy.sin(x) * 3 + 1)(jax.numpy.ones(7)))
print(where, len(hits))
"""


def _run(path, **env):
    base = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, path], capture_output=True, text=True,
                          cwd=ROOT, timeout=120,
                          env=dict(base, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
                                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **env))
    assert proc.returncode == 0, proc.stderr
    where, hits = proc.stdout.split()
    return where, int(hits), proc.stderr


def test_a_second_process_reads_the_programs_the_first_compiled(tmp_path):
    from jaxomrl.experiment.compilation import host_fingerprint
    where, hits, _ = _run(str(tmp_path / "cache"))
    assert where == str(tmp_path / "cache" / host_fingerprint())      # one directory per CPU
    assert hits == 0 and os.listdir(where)
    again, hits, err = _run(str(tmp_path / "cache"))
    assert again == where and hits >= 1                                 # served from the disk
    assert "cpu_aot_loader" not in err        # jaxlib's false feature-mismatch lines: off
    # an empty path: no cache; a cache the environment names: that one, untouched
    assert _run("")[:2] == ("None", 0)
    env_dir = str(tmp_path / "from_env")
    assert _run(str(tmp_path / "other"), JAX_COMPILATION_CACHE_DIR=env_dir)[0] == env_dir
    again, hits, err = _run(str(tmp_path / "other"), JAX_COMPILATION_CACHE_DIR=env_dir)
    assert hits >= 1 and "cpu_aot_loader" not in err                   # quiet there too
    assert not os.path.exists(tmp_path / "other")


def test_a_cache_directory_that_cannot_be_made_leaves_the_cache_off_with_a_warning(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    where, hits, err = _run(str(blocker / "cache"))
    assert (where, hits) == ("None", 0)
    assert "warning: no compilation cache" in err
