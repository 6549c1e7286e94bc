"""When things go wrong: refusals a user can read, diverged training, full and read-only disks,
usage errors -- each a non-zero exit with a one- or two-line message and no traceback."""
import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxomrl import algos
from jaxomrl.experiment import collect as collect_lib
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.errors import NonFiniteError
from jaxomrl.experiment import cli
from jaxomrl.experiment.run_config import RunConfig, RunConfigError
from jaxomrl.experiment.runner import final_outputs, run
from jaxomrl.learners.online_sac import OnlineSACConfig
from jaxomrl.learners.sac import SACConfig
from scripted_data import scripted_point_robot_dataset
from test_runner import TINY, _setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ("--family=point_robot_sparse", "--algo=bc", "--hidden=8,8", "--policy_steps=4",
         "--chunk_steps=2", "--eval_episodes=1", "--eval_contexts=1", "--meta_batch=4")


def _cli(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    return proc, proc.stdout + proc.stderr


def _refused(proc, out, *needles, max_lines=2):
    """A non-zero exit whose message (the last lines of stderr) holds ``needles``."""
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "warp" not in ln]
    assert 1 <= len(lines) <= max_lines, proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    dataset_lib.save(scripted_point_robot_dataset(), str(d / "train.npz"))
    return d


def test_changed_command_on_a_finished_workdir_is_refused_and_the_same_one_reused(data_dir,
                                                                                 tmp_path):
    w = tmp_path / "w"
    base = (*TRAIN, f"--data={data_dir}", f"--workdir={w}")
    proc, out = _cli("train.py", *base, "--seeds=1")
    assert proc.returncode == 0, out
    first = (w / "bc" / "results.json").read_text()
    proc, out = _cli("train.py", *base, "--seeds=1")
    assert proc.returncode == 0 and "reusing its results.json" in out, out
    # Other seeds, steps and sizes: refused before any work, naming every differing field.
    proc, out = _cli("train.py", *base, "--seeds=2", "--policy_steps=6", "--hidden=16,16")
    _refused(proc, out, "holds a finished run", "seeds: [0] -> [0, 1]",
             "config.policy_steps: 4 -> 6", "config.policy.hidden: [8, 8] -> [16, 16]",
             "--overwrite")
    # Another dataset: refused too (it used to print the old table, then crash).
    other = tmp_path / "other"
    dataset_lib.save(scripted_point_robot_dataset(num_train=10), str(other / "train.npz"))
    proc, out = _cli("train.py", *TRAIN, f"--data={other}", f"--workdir={w}", "--seeds=1")
    _refused(proc, out, "description.dataset_sha256", "description.num_train_tasks: 12 -> 10")
    assert (w / "bc" / "results.json").read_text() == first
    # --overwrite moves the old run aside (outside the workdir's run list) and trains anew.
    proc, out = _cli("train.py", *TRAIN, f"--data={other}", f"--workdir={w}", "--seeds=1",
                     "--overwrite")
    assert proc.returncode == 0, out
    (archived,) = os.listdir(w / "replaced")
    assert (w / "replaced" / archived / "results.json").read_text() == first
    new = json.loads((w / "bc" / "results.json").read_text())
    assert new["run"]["description"]["num_train_tasks"] == 10


def test_a_run_written_before_a_field_was_renamed_is_still_the_same_run(tmp_path):
    """run.json files keep the names of their time: the identity check reads the saved config
    through the algorithm's config class (EncoderConfig.score is now .similarity), so an old
    finished run is reused, and a real difference is still refused."""
    from jaxomrl.experiment.run_dir import check_workdir, run_identity
    algorithm, _, _ = _setup("focal")
    config = RunConfig(workdir=str(tmp_path), seeds=(0,), verbose=False)
    identity = run_identity(algorithm, config, {"test": True})
    old = json.loads(json.dumps(identity))
    old["config"]["encoder"]["score"] = old["config"]["encoder"].pop("similarity")
    (tmp_path / "run.json").write_text(json.dumps(old))
    (tmp_path / "results.json").write_text("{}")
    assert check_workdir(str(tmp_path), identity, algorithm.read_config) == "finished"
    with pytest.raises(RunConfigError, match="config.encoder.similarity"):
        check_workdir(str(tmp_path), identity)              # compared as written
    other = json.loads(json.dumps(identity))
    other["config"]["encoder"]["similarity"] = "cosine"
    with pytest.raises(RunConfigError, match="config.encoder.similarity: dot -> cosine"):
        check_workdir(str(tmp_path), other, algorithm.read_config)


def test_unfinished_and_finished_runs_check_the_same_identity(tmp_path):
    algorithm, data, eval_data = _setup("bc")
    cfg = RunConfig(workdir=str(tmp_path), seeds=(0,), chunk_steps=2, verbose=False)
    res = run(algorithm, data, eval_data, cfg, {"test": 1})
    again = run(algorithm, data, eval_data, cfg, {"test": 1})
    assert again == json.loads(json.dumps(res))
    with pytest.raises(RunConfigError, match=r"finished run .*description.test: 1 -> 2"):
        run(algorithm, data, eval_data, cfg, {"test": 2})
    with pytest.raises(RunConfigError, match=r"seeds: \[0\] -> \[0, 1\]"):
        run(algorithm, data, eval_data, dataclasses.replace(cfg, seeds=(0, 1)), {"test": 1})


def test_divergence_stops_with_phase_step_and_seeds_and_resumes_with_sane_settings(tmp_path):
    # raw observations: with lambda = 1e38 the very first policy step overflows (standardised
    # ones keep step 1's loss finite and overflow at step 2)
    sane = dataclasses.replace(TINY, policy_steps=4, normalize_obs=False)
    wild = dataclasses.replace(sane, rl_weight=1e38)
    cfg = RunConfig(workdir=str(tmp_path / "run"), seeds=(0, 1), chunk_steps=2, verbose=False)
    algorithm, data, eval_data = _setup("om_sac", wild)
    with pytest.raises(NonFiniteError) as info:
        run(algorithm, data, eval_data, cfg, {"test": True})
    message = str(info.value)
    assert "phase 'policy' of om_sac, step 1 " in message, message
    assert "first non-finite metric" in message and "seeds affected: [0, 1]" in message
    assert "encoder step 6" in message                         # the last finite checkpoint
    assert not os.path.exists(tmp_path / "run" / "results.json")
    assert json.loads((tmp_path / "run" / "diverged.json").read_text())["resume_point"] == \
        ["encoder", 6]
    json.loads((tmp_path / "run" / "run.json").read_text(), parse_constant=pytest.fail)
    # A different algorithm in the same workdir is still refused.
    with pytest.raises(RunConfigError, match="different|other settings"):
        run(_setup("om_bc", sane)[0], data, eval_data, cfg, {"test": True})
    # Sane settings resume from the encoder's checkpoint: the same as a sane run from scratch
    # (the policy phase starts afresh from the same keys).
    algorithm, data, eval_data = _setup("om_sac", sane)
    resumed = run(algorithm, data, eval_data, cfg, {"test": True})
    assert resumed["settings_changes"][0]["changed"] == [
        "config.policy.rl_weight: 1e+38 -> 2.5"]
    assert not os.path.exists(tmp_path / "run" / "diverged.json")
    ref_cfg = dataclasses.replace(cfg, workdir=str(tmp_path / "ref"))
    ref = run(algorithm, data, eval_data, ref_cfg, {"test": True})
    assert resumed["metrics"] == ref["metrics"]
    for a, b in zip(*(jax.tree_util.tree_leaves(final_outputs(algorithm, data, c.workdir, 2))
                      for c in (cfg, ref_cfg))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_cli_divergence_exits_non_zero_without_results(data_dir, tmp_path):
    w = tmp_path / "w"
    proc, out = _cli("train.py", *TRAIN, f"--data={data_dir}", f"--workdir={w}", "--seeds=1",
                     "--algo=om_sac", "--encoder_steps=2", "--rl_weight=1e38")
    _refused(proc, out, "non-finite", "phase 'policy' of om_sac", "seeds affected: [0]")
    assert not os.path.exists(w / "om_sac" / "results.json")


def test_collection_divergence_names_task_and_env_steps(tmp_path):
    config = collect_lib.CollectConfig(
        family="point_robot_sparse", num_tasks=2,
        online=OnlineSACConfig(sac=SACConfig(hidden=(8, 8), batch_size=16, critic_lr=1e12,
                                             actor_lr=1e12),
                               num_envs=4, buffer_capacity=400, warmup_steps=40,
                               updates_per_iteration=2, train_reward="dense_reward"),
        num_checkpoints=2, checkpoint_interval=10, train_checkpoints=(2,),
        transitions_per_task=40, rollout_envs=4)
    with pytest.raises(NonFiniteError) as info:
        collect_lib.collect(config, str(tmp_path), log=lambda m: None)
    message = str(info.value)
    assert "between env steps 41 and 80 per task (checkpoint 1 of 2)" in message, message
    assert "in task 0 (attributes" in message and "the SAC agent diverged" in message
    assert not os.path.exists(tmp_path / "train.npz")
    assert os.listdir(tmp_path / "sac_checkpoints") == ["0"]    # the warm-up, finite


def test_nan_and_inf_settings_are_refused():
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bc_weight=.* must be finite"):
            algos.Settings(bc_weight=bad)
        with pytest.raises(ValueError, match="rl_weight=.* must be finite"):
            SACConfig(rl_weight=bad)
        with pytest.raises(ValueError, match="train_returns"):
            collect_lib.CollectConfig(family="point_robot_sparse", train_returns=(bad,),
                                      transitions_per_task=10, rollout_envs=10)


@pytest.mark.parametrize("args,needles", [
    (("--seeds=0",), ("--seeds", ">= 1")),
    (("--hidden=abc",), ("--hidden", "list of integers")),
    (("--chunk_steps=0",), ("--chunk_steps", ">= 1")),
    (("--eval_every=3",), ("--eval_every must be a multiple of --chunk_steps",)),
    (("--bc_weight=nan",), ("--bc_weight", "finite")),
    (("--rl_weight=inf",), ("--rl_weight", "finite")),
    (("--workdir=FILE",), ("is a file, not a directory",)),
    (("stray",), ("unexpected arguments",)),
])
def test_train_usage_errors_are_one_or_two_lines(data_dir, tmp_path, args, needles):
    (tmp_path / "file").write_text("")
    args = [a.replace("FILE", str(tmp_path / "file")) for a in args]
    proc, out = _cli("train.py", *TRAIN, f"--data={data_dir}", f"--workdir={tmp_path / 'w'}",
                     *args)
    _refused(proc, out, *needles)
    assert not os.path.exists(tmp_path / "w")


COLLECT = ("--family=point_robot_sparse", "--num_tasks=2", "--sac_steps=16",
           "--checkpoint_every_steps=8", "--num_envs=4", "--warmup_steps=8", "--hidden=8,8",
           "--batch_size=8", "--buffer_capacity=64", "--transitions_per_task=8",
           "--ood_transitions_per_task=0", "--rollout_envs=4", "--train_checkpoints=2")


@pytest.mark.parametrize("args,needles", [
    (("--checkpoint_every_steps=0",), ("--checkpoint_every_steps", ">= 1")),
    (("--num_envs=0",), ("--num_envs", ">= 1")),
    (("--transitions_per_task=9",), ("transitions_per_task (9) must be a positive multiple",)),
    (("--train_returns=nan",), ("--train_returns", "finite")),
])
def test_collect_usage_errors_come_without_the_flag_listing(tmp_path, args, needles):
    proc, out = _cli("collect.py", *COLLECT, f"--out_dir={tmp_path / 'c'}", *args)
    _refused(proc, out, *needles)


def test_collect_refuses_another_seed_in_an_existing_directory(tmp_path):
    proc, out = _cli("collect.py", *COLLECT, f"--out_dir={tmp_path}")
    assert proc.returncode == 0, out
    proc, out = _cli("collect.py", *COLLECT, f"--out_dir={tmp_path}", "--seed=1")
    _refused(proc, out, "different configuration", "seed: 0 -> 1")


def test_io_failures_are_found_in_an_exception_chain():
    def chained():
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/w/checkpoints/3")
        except OSError as e:
            raise RuntimeError("background save failed") from e
    with pytest.raises(RuntimeError) as info:
        chained()
    assert cli.io_failure(info.value) == "no space left on device (/w/checkpoints/3)"
    # tensorstore reports OS errors in its messages only
    assert cli.io_failure(ValueError("WRITE failed: No space left on device [OS error 28]")) \
        == "no space left on device"
    assert cli.io_failure(ValueError("shapes differ")) is None


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts tmpfs file systems under ``tmp_path`` (skips where mounting is not allowed)."""
    mounted = []

    def mount(name, options):
        path = tmp_path / name
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(path)
        return path
    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_workdir_is_one_line(data_dir, tmpfs):
    ro = tmpfs("ro", "ro,size=1m")
    proc, out = _cli("train.py", *TRAIN, f"--data={data_dir}", f"--workdir={ro / 'w'}")
    _refused(proc, out, "--workdir", "Read-only file system")


def test_full_disk_is_one_line_and_the_same_command_resumes_once_space_is_free(data_dir,
                                                                                tmpfs):
    disk = tmpfs("disk", "size=4m")
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (4 * 2 ** 20 - 64 * 2 ** 10))    # leaves 64 KiB
    args = (*TRAIN, f"--data={data_dir}", f"--workdir={disk / 'w'}", "--seeds=1",
            "--hidden=16,16", "--policy_steps=200", "--chunk_steps=50")
    proc, out = _cli("train.py", *args)
    _refused(proc, out, "no space left on device", str(disk / "w"), "rerun the same command")
    assert not os.path.exists(disk / "w" / "bc" / "results.json")
    filler.unlink()
    proc, out = _cli("train.py", *args)
    assert proc.returncode == 0, out
    with open(disk / "w" / "bc" / "metrics_policy.csv") as f:
        assert [int(r.split(",")[0]) for r in f.read().splitlines()[1:]] == [50, 100, 150, 200]
    shutil.rmtree(disk / "w")


def test_info_key_flags_are_refused_naming_the_flag_and_the_keys_there_are():
    family = scripted_point_robot_dataset().make_family()
    key = family.info_keys[0]
    cli.require_info_keys(family, [key], "trace")            # a recorded key passes
    with pytest.raises(cli.UsageError, match=rf"--record: \['speed_of_light'\].*{key}"):
        cli.require_info_keys(family, [key, "speed_of_light"], "record")

    class Other(cli.UsageError):
        pass
    with pytest.raises(Other, match="--own"):
        cli.require_info_keys(family, ["nope"], "own", Other)
