"""train.py --workers: groups of specs that share no phase train in separate processes side by
side, with the same numbers as one process, shared phases trained once, failures reported."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxomrl.experiment import processes
from jaxomrl.experiment.run_config import RunConfig
from jaxomrl.experiment.run_dir import run_identity
from jaxomrl.experiment.sharing import phase_digests, share_groups, share_schedule
from test_failures import TRAIN, _cli, _refused, data_dir  # noqa: F401 -- data_dir: fixture
from test_runner import ROOT, _setup


def test_runs_that_can_share_a_phase_are_grouped_in_order(tmp_path):
    specs = ["r2pgo", "bc", "om_bc", "r2pgo/no_weighted_negatives", "r2pgo/no_hypernetwork",
             "om_sac"]
    shared = str(tmp_path / "shared")
    runs = {s: (_setup(s)[0], RunConfig(workdir=f"w/{s}", seeds=(0,), share_dir=shared))
            for s in specs}
    assert share_groups(runs, {"test": True}) == [
        ["r2pgo", "r2pgo/no_hypernetwork"], ["bc"], ["om_bc", "om_sac"],
        ["r2pgo/no_weighted_negatives"]]
    # R2PGO's encoder already published (an earlier command trained it): its runs are apart.
    algorithm, config = runs["r2pgo"]
    digest = phase_digests(algorithm, run_identity(algorithm, config, {"test": True}))[0]
    os.makedirs(os.path.join(shared, digest))
    open(os.path.join(shared, digest, "phase.json"), "w").close()
    assert share_groups(runs, {"test": True}) == [
        ["r2pgo"], ["bc"], ["om_bc", "om_sac"], ["r2pgo/no_weighted_negatives"],
        ["r2pgo/no_hypernetwork"]]
    os.remove(os.path.join(shared, digest, "phase.json"))
    # The schedule: each group's first run, then the others after it.
    assert share_schedule(runs, {"test": True}) == [
        ("r2pgo", None), ("r2pgo/no_hypernetwork", 0), ("bc", None), ("om_bc", None),
        ("om_sac", 3), ("r2pgo/no_weighted_negatives", None)]
    # Other seeds or no shared directory: nothing to share, every run alone.
    runs["r2pgo/no_hypernetwork"] = (runs["r2pgo/no_hypernetwork"][0],
                                     RunConfig(workdir="w/h", seeds=(1,), share_dir="w/shared"))
    runs["om_sac"] = (runs["om_sac"][0], RunConfig(workdir="w/s", seeds=(0,)))
    assert share_groups(runs, {"test": True}) == [[s] for s in specs]


def test_run_commands_runs_side_by_side_and_starts_nothing_after_a_failure(tmp_path):
    py = sys.executable
    touch = [py, "-c", f"open({str(tmp_path / 'ran')!r}, 'w').close()"]
    assert processes.run_commands([[py, "-c", "import sys; sys.exit(3)"], touch], 1) == [3, None]
    assert not (tmp_path / "ran").exists()
    # Two at a time: the second starts while the first (waiting for it) runs.
    wait = [py, "-c", "import os, time\nwhile not os.path.exists("
            f"{str(tmp_path / 'ran')!r}): time.sleep(0.05)"]
    assert processes.run_commands([wait, touch], 2, poll_seconds=0.05) == [0, 0]
    # A command after another waits for it (or never starts when it fails).
    order = tmp_path / "order"
    log = [[py, "-c", f"open({str(order)!r}, 'a').write('{c}')"] for c in "abc"]
    assert processes.run_commands(log, 3, after=[1, None, None], poll_seconds=0.05) == [0, 0, 0]
    assert order.read_text().index("b") < order.read_text().index("a")
    fail = [py, "-c", "import sys; sys.exit(5)"]
    assert processes.run_commands([fail, log[0]], 2, after=[None, 0]) == [5, None]


def test_terminating_the_parent_terminates_the_commands_it_runs(tmp_path):
    pid_file = tmp_path / "pid"
    child = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
             "time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from jaxomrl.experiment "
                               f"import processes; processes.run_commands([[sys.executable, '-c', {child!r}]],"
                               " 1)"], env=dict(os.environ, PYTHONPATH=ROOT))
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    parent.terminate()
    assert parent.wait(timeout=30) != 0
    with pytest.raises(ProcessLookupError):     # the child was terminated and reaped
        os.kill(pid, 0)


def _metrics(workdir, spec):
    with open(os.path.join(workdir, spec.replace("/", "-"), "results.json")) as f:
        return json.load(f)["metrics"]


def test_specs_in_processes_equal_one_process_and_share_their_encoder_once(data_dir, tmp_path):
    args = (*TRAIN, f"--data={data_dir}", "--seeds=1", "--encoder_steps=2",
            "--algo=r2pgo,bc,r2pgo/no_hypernetwork")
    proc, out = _cli("train.py", *args, f"--workdir={tmp_path / 'two'}", "--workers=2")
    assert proc.returncode == 0, out
    assert ("3 specs in 2 processes side by side: r2pgo, r2pgo/no_hypernetwork (after r2pgo), "
            "bc") in out, out
    assert out.count("shared from") == 1 and out.count("| r2pgo/no_hypernetwork |") == 1, out
    proc, out = _cli("train.py", *args, f"--workdir={tmp_path / 'one'}", "--workers=1")
    assert proc.returncode == 0 and "side by side" not in out, out
    for spec in ("r2pgo", "bc", "r2pgo/no_hypernetwork"):
        two, one = _metrics(tmp_path / "two", spec), _metrics(tmp_path / "one", spec)
        assert two.keys() == one.keys()
        for k in one:
            np.testing.assert_allclose(two[k]["per_seed"], one[k]["per_seed"], rtol=1e-5,
                                       atol=1e-6, err_msg=f"{spec} {k}")
    # The same command again trains nothing: every run is reused.
    proc, out = _cli("train.py", *args, f"--workdir={tmp_path / 'two'}", "--workers=2")
    assert proc.returncode == 0 and "side by side" not in out, out
    assert out.count("reusing its results.json") == 3, out


def test_a_failing_group_is_named_and_the_others_are_kept(data_dir, tmp_path):
    w = tmp_path / "w"
    proc, out = _cli("train.py", *TRAIN, f"--data={data_dir}", f"--workdir={w}", "--seeds=1",
                     "--algo=om_sac,bc", "--encoder_steps=2", "--rl_weight=1e38", "--workers=2")
    _refused(proc, out, "non-finite", "phase 'policy' of om_sac", "training failed for om_sac",
             "rerun the same command to resume")
    assert (w / "bc" / "results.json").exists()
    assert not (w / "om_sac" / "results.json").exists()
