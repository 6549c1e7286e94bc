"""Sweeps on Ray (experiments/sweep.py): a local Ray instance of 2 CPUs runs two specs × two
override values, one spec taking the other's encoder through a task dependency; a job whose
process is killed mid-training is retried by Ray and resumes from its checkpoint; the gathered
table equals the same runs made one by one. And the grid, schedule and table on their own."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxomrl.experiment import sweep as sweep_lib
from jaxomrl.experiment.sharing import schedule_by_shares
from test_failures import ROOT, data_dir  # noqa: F401 -- data_dir: fixture

SPECS = ("r2pgo", "r2pgo/no_hypernetwork")        # the same encoder: the second takes it
FIXED = dict(family="point_robot_sparse", hidden="8,8", latent_dim="2", encoder_hidden="8",
             window="5", contexts_per_task="2", encoder_meta_batch="4", meta_batch="4",
             batch_size="16", encoder_steps="20", policy_steps="1200", chunk_steps="20",
             checkpoint_every_chunks="5", eval_episodes="1", eval_contexts="1")
GRID = ("bc_weight=1", "bc_weight=2.5")


def _train_processes(workdir):
    """PIDs of the train.py processes training into ``workdir`` (their command lines)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.endswith("train.py") for a in args) and f"--workdir={workdir}" in args:
            out.append(int(pid))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds processes through /proc")
def test_ray_sweep_retries_a_killed_job_and_equals_the_runs_made_one_by_one(data_dir, tmp_path):
    root = tmp_path / "sweep"
    args = [sys.executable, os.path.join(ROOT, "experiments", "sweep.py"), f"--workdir={root}",
            f"--algo={','.join(SPECS)}", "--seeds=2", "--workers=2", "--engine=ray",
            f"--set=data={data_dir}", *[f"--set={k}={v}" for k, v in FIXED.items()],
            *[f"--grid={g}" for g in GRID]]
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    # Kill the job of the second combination's R2PGO once it has checkpointed its policy.
    victim = root / "bc_weight=2.5"
    checkpoints = victim / "r2pgo" / "checkpoints"
    deadline, killed = time.time() + 900, []
    while time.time() < deadline and proc.poll() is None and not killed:
        if checkpoints.is_dir() and any(n.isdigit() for n in os.listdir(checkpoints)):
            for pid in _train_processes(victim):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"--algo=r2pgo\0" in f.read():
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=900)
    assert killed, out[-4000:]
    assert proc.returncode == 0, out[-6000:]
    assert not (victim / "r2pgo" / "results.json").exists() or "resuming after chunk" in out
    assert "ended by signal SIGKILL" in out, out[-6000:]          # Ray saw it lost, retried it
    assert "[r2pgo] resuming after chunk" in out, out[-6000:]     # and the retry resumed
    # The encoder trained once: the first job published it, the three others took it (the
    # killed one before it was killed; its retry resumed past it).
    assert out.count("phases ['encoder'] shared from") == 3, out[-6000:]
    assert len(os.listdir(root / "shared_phases")) == 1
    swept = json.loads((root / "sweep.json").read_text())
    assert [(r["spec"], r["combination"]) for r in swept["rows"]] == [
        (s, c) for c in ("bc_weight=1", "bc_weight=2.5") for s in SPECS]
    assert "| r2pgo | bc_weight=2.5 |" in (root / "sweep.md").read_text()

    # The same runs one by one: a train.py per combination, both specs in its process.
    one = tmp_path / "one"
    jobs = []
    for g in GRID:
        name, value = g.split("=")
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "experiments", "train.py"),
             f"--algo={','.join(SPECS)}", f"--workdir={one / g}", "--seeds=2", "--workers=1",
             f"--data={data_dir}", *[f"--{k}={v}" for k, v in FIXED.items()], f"--{g}"],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        jobs += [sweep_lib.Job(s, {name: value}, 0, str(one / g)) for s in SPECS]
    alone = sweep_lib.gather(jobs, swept["columns"])
    # (these data have no validation tasks: the training tasks' columns)
    assert swept["columns"] and all(c.startswith("train_") for c in swept["columns"])
    assert alone == swept
    # ... and so are their training curves, the killed and resumed job's included
    for g in GRID:
        for spec in SPECS:
            for phase in ("encoder", "policy"):
                a, b = (_curve(d / g / spec.replace("/", "-") / f"metrics_{phase}.csv")
                        for d in (root, one))
                assert a == b and a, (g, spec, phase)


def _curve(path):
    """A metrics CSV's rows without its wall-clock column."""
    import csv
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_grid_schedule_and_refusals(tmp_path):
    grid = sweep_lib.parse_assignments(["a=1", "b=x,y", "a=2"], "grid")
    assert grid == {"a": ["1", "2"], "b": ["x,y"]}
    assert sweep_lib.combinations(grid) == [{"a": "1", "b": "x,y"}, {"a": "2", "b": "x,y"}]
    assert sweep_lib.combination_name({"a": "1", "spec": "r2pgo/x"}) == "a=1+spec=r2pgo_x"
    for bad in (["a"], ["=1"], ["a="], ["a=1", "a=1"]):
        with pytest.raises(sweep_lib.SweepError):
            sweep_lib.parse_assignments(bad, "grid")
    base = dict(root=str(tmp_path), train_script="train.py", specs=("bc",), fixed={"x": "1"})
    with pytest.raises(sweep_lib.SweepError, match="both fixed and swept"):
        sweep_lib.Sweep(**base, grid={"x": ["2"]})
    with pytest.raises(sweep_lib.SweepError, match="itself"):
        sweep_lib.Sweep(**base, grid={"seeds": ["2"]})
    s = sweep_lib.Sweep(**base, grid={"a": ["1", "2"]}, seeds=2, seed_groups=2, seed_offset=1)
    assert s.groups() == [({"a": "1"}, 1), ({"a": "1"}, 3), ({"a": "2"}, 1), ({"a": "2"}, 3)]
    assert s.workdir({"a": "2"}, 3) == os.path.join(str(tmp_path), "a=2", "seeds3-4")
    # jobs sharing a pending phase: the first trains it, the others wait for it (and for a
    # further shared phase, the first of them)
    shares = {"A": [("d", "enc")], "B": [("d", "enc"), ("d", "models")], "C": [],
              "D": [("d", "enc"), ("d", "models")]}
    assert schedule_by_shares(shares) == [("A", None), ("B", 0), ("D", 1), ("C", None)]


def test_gather_pools_seed_groups_and_render(tmp_path):
    rng = np.random.default_rng(0)
    jobs, per_seed = [], []
    for offset in (0, 2):
        job = sweep_lib.Job("bc", {"a": "1"}, offset, str(tmp_path / f"g{offset}"))
        os.makedirs(job.run_dir)
        online = rng.normal(size=(2, 3, 2))           # [seeds, tasks, episodes]
        per_seed.append(online[:, :, 0].mean(axis=1))
        (tmp_path / f"g{offset}" / "bc" / "results.json").write_text(json.dumps(
            {"seeds": [offset, offset + 1], "per_task": {"val_online": online.tolist(),
                                                        "train_online": online.tolist()}}))
        jobs.append(job)
    table = sweep_lib.gather(jobs)
    assert table["columns"] == ["val_online/ep1", "val_online/ep2"]
    (row,) = table["rows"]
    assert row["seeds"] == [0, 1, 2, 3]
    values = np.concatenate(per_seed)
    cell = row["columns"]["val_online/ep1"]
    assert cell["n"] == 4 and np.isclose(cell["mean"], values.mean())
    assert np.isclose(cell["std"], values.std(ddof=1))
    text = sweep_lib.write(str(tmp_path), table)
    assert text.startswith("| spec | combination | val_online/ep1 | val_online/ep2 |")
    assert "| bc | a=1 | " in text and (tmp_path / "sweep.json").exists()
    with pytest.raises(sweep_lib.SweepError, match="not finished"):
        sweep_lib.gather([sweep_lib.Job("bc", {}, 0, str(tmp_path / "none"))])
