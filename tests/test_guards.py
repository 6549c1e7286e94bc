"""Ctrl-C and shared directories: SIGINT stops training at a chunk boundary, checkpointed, with a
non-zero exit, and the rerun ends where an uninterrupted run ends; a second command into a
directory in use is refused naming the first, and a `kill -9`-ed one leaves no lock behind."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxomrl.errors import DirectoryInUse
from jaxomrl.experiment import guards
from test_failures import ROOT, TRAIN, _cli, data_dir  # noqa: F401 -- data_dir: fixture

LONG = (*[a for a in TRAIN if not a.startswith(("--policy_steps", "--chunk_steps"))],
        "--workers=1")


def _start(*args, ignore_sigint=False):
    """train.py in a process group of its own; with ``ignore_sigint``, SIGINT ignored at start
    (as a non-interactive shell starts background jobs; exec keeps the disposition)."""
    command = [sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args]
    if ignore_sigint:
        command = [sys.executable, "-c", "import os, signal, sys; "
                   "signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   f"os.execv(sys.executable, {command!r})"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))


def _wait_for_progress(proc, spec="bc"):
    """Reads stdout until the first progress line of ``spec``'s training."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"[{spec}] policy"):
            return
    pytest.fail("no progress line: " + "".join(seen) + proc.stderr.read())


def _per_task(workdir):
    return json.loads((workdir / "bc" / "results.json").read_text())["per_task"]


def test_sigint_stops_at_a_chunk_boundary_and_the_rerun_equals_an_uninterrupted_run(
        data_dir, tmp_path):
    # Started with SIGINT ignored, as a shell starts a background job: the harder case (a
    # foreground command's default handler is replaced by the same one).
    w = tmp_path / "w"
    args = (*LONG, "--policy_steps=600", "--chunk_steps=10", f"--data={data_dir}",
            f"--workdir={w}", "--seeds=1")
    proc = _start(*args, ignore_sigint=True)
    _wait_for_progress(proc)
    os.killpg(proc.pid, signal.SIGINT)         # Ctrl-C: the whole foreground group
    t0 = time.time()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert time.time() - t0 < 60
    assert "Traceback" not in err, err
    assert "interrupted (SIGINT) after chunk" in err and "rerun the same command" in err, err
    assert not (w / "bc" / "results.json").exists()
    assert any(n.isdigit() for n in os.listdir(w / "bc" / "checkpoints"))
    # run.json says where and how the run was made; that record is not part of its identity
    made = json.loads((w / "bc" / "run.json").read_text())["made_with"]
    assert (made["jax"], made["backend"]) == (jax.__version__, "cpu")
    assert made["matmul_precision"] == "highest" and made["device_kind"] == "cpu"
    proc, out = _cli("train.py", *args)
    assert proc.returncode == 0, out
    assert "resuming after chunk" in out, out
    assert json.loads((w / "bc" / "results.json").read_text())["made_with"] == made
    proc, out = _cli("train.py", *[a.replace(str(w), str(tmp_path / "u")) for a in args])
    assert proc.returncode == 0, out
    resumed, uninterrupted = _per_task(w), _per_task(tmp_path / "u")
    assert resumed.keys() == uninterrupted.keys()
    for k in resumed:
        np.testing.assert_array_equal(np.asarray(resumed[k]), np.asarray(uninterrupted[k]))


def test_a_workdir_in_use_is_refused_naming_the_process_and_a_killed_one_leaves_no_lock(
        data_dir, tmp_path):
    w = tmp_path / "w"
    args = (*LONG, "--policy_steps=200000", "--chunk_steps=10", f"--data={data_dir}",
            f"--workdir={w}", "--seeds=1")
    first = _start(*args)
    try:
        _wait_for_progress(first)
        proc, out = _cli("train.py", *args)
        assert proc.returncode == 1, out
        assert "Traceback" not in out, out
        assert f"in use by process {first.pid}" in proc.stderr, proc.stderr
        assert first.poll() is None                     # the first one goes on
    finally:
        os.killpg(first.pid, signal.SIGKILL)            # kill -9: no clean-up at all
        first.communicate()
    assert (w / "bc" / guards.LOCK_FILE).exists()       # the file stays; the lock does not
    again = _start(*args)
    try:
        _wait_for_progress(again)                       # resumed and training: not refused
    finally:
        os.killpg(again.pid, signal.SIGKILL)
        again.communicate()


def test_directory_lock_is_one_holder_at_a_time_within_a_process_too(tmp_path):
    with guards.directory_lock(str(tmp_path), "first"):
        with pytest.raises(DirectoryInUse, match=f"process {os.getpid()}"):
            with guards.directory_lock(str(tmp_path), "second"):
                pass
        with pytest.raises(DirectoryInUse):
            guards.check_unlocked(str(tmp_path))
    guards.check_unlocked(str(tmp_path))
    with guards.directory_lock(str(tmp_path), "again"):
        pass
