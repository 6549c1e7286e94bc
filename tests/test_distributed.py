"""One run over 2 processes x 2 CPU devices (``jax.distributed`` over loopback): the same
per-seed results as one process, and a kill of both processes resumed from the sharded
checkpoint."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxomrl import algos
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data.sampler import run_data
from jaxomrl.experiment import distributed
from jaxomrl.experiment.runner import final_outputs
from scripted_data import scripted_point_robot_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
# A tiny bc run: 4 seeds (one per device of the 2 x 2), a checkpoint every chunk of 2 updates.
TINY = ["--family=point_robot_sparse", "--algo=bc", "--seeds=4", "--hidden=16,16",
        "--policy_steps=40", "--chunk_steps=2", "--batch_size=32", "--eval_episodes=2",
        "--eval_every=20", "--workers=1", "--summary=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int):
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)


def _launch(data, workdir, port):
    """Both processes of the 2 x 2 run, started."""
    return [subprocess.Popen(
        [sys.executable, TRAIN, f"--data={data}", f"--workdir={workdir}", *TINY,
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=_env(2))
        for i in range(2)]


def _finish(procs, timeout=600):
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    return outs


def _checkpoints(run_dir):
    where = os.path.join(run_dir, "checkpoints")
    return sorted(int(d) for d in os.listdir(where) if d.isdigit()) if os.path.isdir(where) \
        else []


def test_two_processes_equal_one_and_resume_after_both_are_killed(tmp_path):
    data = tmp_path / "data"
    dataset_lib.save(scripted_point_robot_dataset(), str(data / "train.npz"))
    one = subprocess.run([sys.executable, TRAIN, f"--data={data}",
                          f"--workdir={tmp_path / 'one'}", *TINY], capture_output=True,
                         text=True, cwd=ROOT, env=_env(1), timeout=600)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]

    # Both processes killed (SIGKILL) once a few sharded checkpoints are on disk, then started
    # again with the same command: the run resumes from the last one.
    workdir, run_dir = tmp_path / "two", tmp_path / "two" / "bc"
    procs = _launch(data, workdir, _free_port())
    deadline = time.time() + 300
    while len(_checkpoints(run_dir)) < 2 and time.time() < deadline \
            and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    outs = [p.communicate()[0] for p in procs]
    killed_at = _checkpoints(run_dir)
    assert killed_at and max(killed_at) < 20, (killed_at, outs[0][-3000:], outs[1][-3000:])
    assert not (run_dir / "results.json").exists()
    outs = _finish(_launch(data, workdir, _free_port()))
    assert f"resuming after chunk {max(killed_at)}/20" in outs[0], outs[0][-3000:]

    ref = json.loads((tmp_path / "one" / "bc" / "results.json").read_text())
    got = json.loads((run_dir / "results.json").read_text())
    assert got["devices"] == 4 and ref["devices"] == 1
    assert got["seeds"] == ref["seeds"] == [0, 1, 2, 3]
    assert set(got["per_task"]) == set(ref["per_task"])
    for k, v in ref["per_task"].items():      # per seed and task, every metric
        np.testing.assert_allclose(got["per_task"][k], v, rtol=1e-4, atol=1e-4, err_msg=k)
    # The trained parameters of every seed, read back in one process from both checkpoints.
    ds = dataset_lib.load(str(data / "train.npz"))
    algorithm = algos.make("bc", algos.Settings(hidden=(16, 16), policy_steps=40, batch_size=32,
                                                eval_episodes=2),
                           ds.make_family(), int(ds.is_train.sum()))
    outs = [final_outputs(algorithm, run_data(ds)[0], str(d), 4)
            for d in (tmp_path / "one" / "bc", run_dir)]
    for a, b in zip(*map(jax.tree_util.tree_leaves, outs)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    # Process 0 wrote the logs: every evaluation of the resumed run once, equal to one's.
    for name in ("metrics_eval.csv", "metrics_policy.csv"):
        a = np.genfromtxt(tmp_path / "one" / "bc" / name, delimiter=",", names=True)
        b = np.genfromtxt(run_dir / name, delimiter=",", names=True)
        assert a["step"].tolist() == b["step"].tolist()
        for col in a.dtype.names:
            if col not in ("seconds",):
                np.testing.assert_allclose(b[col], a[col], rtol=1e-4, atol=1e-4, err_msg=col)


def test_initialize_refuses_an_incomplete_set_of_flags(monkeypatch):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    with pytest.raises(ValueError, match="needs all of"):
        distributed.initialize("127.0.0.1:1", None, 0)
    with pytest.raises(ValueError, match=r"in \[0, --num_processes\)"):
        distributed.initialize("127.0.0.1:1", 2, 2)
    assert distributed.initialize() is False                     # one process: left alone
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed.under_slurm_step() is ("SLURM_STEP_ID" in os.environ)
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert distributed.under_slurm_step()
