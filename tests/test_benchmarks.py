"""Every script in benchmarks/ runs as documented: its default settings, at tiny sizes, to its
last line (one JSON object with a figure for everything it measured).

dot_rates.py has its own test (test_dot_rates.py); pipeline_phases.py runs in the ReDA
pipeline's test; compile_clock.py in test_compile_clock.py.
"""
import json
import os
import subprocess
import sys

import pytest

from jaxomrl.data import dataset as dataset_lib
from scripted_data import scripted_point_robot_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COVERED_ELSEWHERE = {"dot_rates.py", "pipeline_phases.py", "compile_clock.py", "worker.py"}

# Only the sizes are made tiny: every other flag keeps its default. rollout_throughput.py
# measures one pure-JAX and one MJX family of its six (each MJX compilation costs about half a
# minute here; every family's MJX step is compiled and checked against MuJoCo C in test_envs).
TINY = {
    "rollout_throughput.py": ["--num_envs=4", "--steps=3", "--repeats=1", "--c_steps=200",
                              "--families=point_robot_sparse,cheetah_vel"],
    "collection_cost.py": ["--num_envs=4", "--networks=8x8:16"],
    "encoder_throughput.py": ["--seeds=1", "--num_tasks=4", "--transitions_per_task=400",
                              "--steps=2", "--repeats=1"],
    "learner_throughput.py": ["--seeds=1", "--updates=2", "--repeats=1", "--hidden=8,8",
                              "--batch=16"],
    "model_rollout_throughput.py": ["--starts=8", "--hidden=8", "--length=2", "--repeats=1"],
    "phase_throughput.py": ["--family=point_robot_sparse", "--seeds=1", "--steps=2",
                            "--repeats=1", "--hidden=8,8"],
    "cost_model.py": ["--recipe=point_robot_comparison", "--scale=tiny", "--steps=2",
                      "--repeats=1"],
}


def test_every_benchmark_script_is_run_by_this_suite():
    scripts = {f for f in os.listdir(os.path.join(ROOT, "benchmarks")) if f.endswith(".py")}
    assert scripts - COVERED_ELSEWHERE == set(TINY)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    dataset_lib.save(scripted_point_robot_dataset(), str(d / "train.npz"))
    return d


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_with_its_defaults_at_tiny_sizes(script, tiny_data):
    args = TINY[script] + ([f"--data={tiny_data}"] if script in ("phase_throughput.py",
                                                                 "cost_model.py") else [])
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if script == "rollout_throughput.py":
        # Every family asked for measured; the MuJoCo comparisons only where there is physics.
        families = [r["family"] for r in result["results"]]
        assert sorted(set(families)) == ["cheetah_vel", "point_robot_sparse"]
        for r in result["results"]:
            assert r["framework_env_steps_per_s"] > 0
            assert ("mujoco_c_physics_steps_per_s" in r) == (r["family"] != "point_robot_sparse")
    elif script == "cost_model.py":
        # r2pgo's encoder and policy, bc's policy; one device runs them one after another
        assert len(result["units"]) == 3 and result["device_hours"] > 0
        spread = result["wall_clock_hours"]
        assert spread["1"]["one_run_per_device"] == pytest.approx(result["device_hours"])
        assert spread["64"]["seeds_split"] <= spread["8"]["one_run_per_device"] \
            <= spread["1"]["one_run_per_device"]
    else:
        assert result
