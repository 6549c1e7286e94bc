"""benchmarks/compile_clock.py: the compile time of a script, measured around it."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compile_clock_counts_a_scripts_compilations_and_keeps_its_flags_and_status(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "import jax, jax.numpy as jnp\n"
        "n = int(sys.argv[1])\n"
        "for k in range(n):   # n distinct programs\n"
        "    jax.jit(lambda x, k=k: jnp.sin(x) * k)(jnp.ones(3)).block_until_ready()\n"
        "sys.exit(3)\n")
    out = tmp_path / "clock.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compile_clock.py"),
                           str(out), str(script), "4"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]      # the script's own exit status
    clock = json.loads(out.read_text())
    assert clock["counts"]["backend_compile"] >= 4         # one XLA compilation per program
    assert 0 < clock["seconds"]["backend_compile"] < clock["wall_seconds"]
    assert clock["counts"]["trace"] >= 4


def test_compile_clock_adds_the_compilations_of_the_python_processes_the_script_starts(tmp_path):
    """train.py --workers trains in child processes: their compilations count too."""
    child = ("import jax, jax.numpy as jnp\n"
             "for k in range(3):\n"
             "    jax.jit(lambda x, k=k: jnp.cos(x) + k)(jnp.ones(2)).block_until_ready()\n")
    script = tmp_path / "script.py"
    script.write_text(
        "import subprocess, sys\n"
        "import jax, jax.numpy as jnp\n"
        "jax.jit(lambda x: x * 2)(jnp.ones(3)).block_until_ready()\n"
        f"subprocess.run([sys.executable, '-c', {child!r}], check=True)\n")
    out = tmp_path / "clock.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compile_clock.py"),
                           str(out), str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    clock = json.loads(out.read_text())
    assert clock["processes"] == 2
    assert clock["own"]["counts"]["backend_compile"] >= 1
    assert clock["counts"]["backend_compile"] >= clock["own"]["counts"]["backend_compile"] + 3
    assert clock["seconds"]["backend_compile"] > clock["own"]["seconds"]["backend_compile"]
