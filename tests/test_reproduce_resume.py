"""A reproduction killed with SIGKILL resumes with the same command (experiments/reproduce.py,
R2PGO's Half-Cheetah-Vel recipe at tiny scale), and another request in its directory is
refused."""
import os
import signal
import subprocess
import sys
import time

from jaxomrl.experiment import recipes
from tiny_reproduce import REPRODUCE, ROOT, _check_table, _reproduce


def test_reproduce_r2pgo_recipe_tiny_resumes_after_kill(tmp_path):
    """Killed (SIGKILL to the command and its workers) once a first run has finished, the same
    command resumes: the collection and the finished runs are reused, not redone, and the
    table comes out."""
    recipe = recipes.get("r2pgo_cheetah_vel")
    directory = tmp_path / recipe.name / "tiny"
    proc = _reproduce(recipe.name, tmp_path, start_new_session=True)
    deadline = time.time() + 2400
    finished = []
    while time.time() < deadline and proc.poll() is None and not finished:
        finished = [p for p in directory.glob("runs/*/*/results.json")]
        time.sleep(0.5)
    assert finished and proc.poll() is None, proc.communicate()[0][-4000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in finished}
    summary = (directory / "data" / "summary.json").stat().st_mtime_ns
    again = _reproduce(recipe.name, tmp_path)
    out, _ = again.communicate(timeout=2400)
    assert again.returncode == 0, out[-4000:]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert (directory / "data" / "summary.json").stat().st_mtime_ns == summary
    _check_table(directory, recipe)
    # another request in the same directory is refused, naming what differs
    other = subprocess.run([sys.executable, REPRODUCE, f"--recipe={recipe.name}", "--scale=tiny",
                            f"--workdir={tmp_path}", "--seeds=3"], cwd=ROOT,
                           capture_output=True, text=True, env=dict(os.environ,
                                                                    JAX_PLATFORMS="cpu"))
    assert other.returncode != 0 and "seeds" in other.stderr, other.stderr[-2000:]
