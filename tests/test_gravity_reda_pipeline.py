"""ReDA on a gravity family end to end at tiny sizes, through the three command lines a user runs:
``collect.py --preset=cpu`` (Walker2d-Gravity-1's layout: one training checkpoint, the others held
out, the preset's episode length overridden) -> ``train.py`` (ReDA) -> ``evaluate.py`` (both
protocols on the unseen gravities, d(phi), t-SNE, the adversarial phase's diagnostics). Walker2d
ends episodes when it falls, so the learned models' rollouts and the evaluation both meet
terminations. evaluate.py builds its tables and figures from train.py's own evaluation
(``--from_training``): most of this test's time is compiling MJX programs, and evaluating again
would compile them again."""
import csv
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HORIZON = 20


def _run(script, *args):
    where = "research" if script in ("model_discrimination.py", "embedding_geometry.py") \
        else "experiments"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, where, script), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_walker2d_gravity_reda_collect_train_evaluate(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    _run("collect.py", "--family=walker2d_gravity", "--preset=cpu", f"--out_dir={data}",
         f"--horizon={HORIZON}", "--sac_steps=40", "--checkpoint_every_steps=20", "--num_envs=2",
         "--hidden=16,16", "--batch_size=32", "--buffer_capacity=1000", "--warmup_steps=40",
         "--updates_per_iteration=2", "--train_checkpoints=1", "--ood_checkpoints=0,2",
         f"--transitions_per_task={2 * HORIZON}", f"--ood_transitions_per_task={4 * HORIZON}",
         "--rollout_envs=2")
    config = json.loads((data / "collect_config.json").read_text())
    assert config["family_config"] == {"horizon": HORIZON}          # the flag over the preset
    assert config["online"]["conditioned"] and config["split"] == "all"
    assert config["physics"] == "c"              # --physics=auto on a CPU: MuJoCo C
    from jaxomrl.data import dataset as dataset_lib
    for split in ("train", "ood"):
        assert dataset_lib.load(str(data / f"{split}.npz")).meta["physics"] == "c"
    summary = json.loads((data / "summary.json").read_text())
    # x0.5, 1, 1.5 | validation x0.7, 1.3 | test x0.8, 1.2
    assert summary["split"] == ["train"] * 3 + ["val"] * 2 + ["test"] * 2
    assert summary["is_test"] == [False] * 5 + [True] * 2
    assert np.asarray(summary["evaluated_returns"]).shape == (7, 3)  # every task x checkpoint
    falls = summary["datasets"]["ood"]["terminated_fraction"]        # {checkpoint: [task]}
    assert set(falls) == {"0", "2"} and all(len(v) == 7 for v in falls.values())
    assert all(v is None or 0.0 <= v <= 1.0 for col in falls.values() for v in col)

    _run("train.py", "--family=walker2d_gravity", f"--data={data}", f"--workdir={runs}",
         "--algo=reda", "--seeds=2", "--hidden=16,16", "--latent_dim=3",
         "--encoder_hidden=16", "--window=5", "--contexts_per_task=4", "--encoder_steps=4",
         "--policy_steps=4", "--batch_size=32", "--meta_batch=3", "--encoder_meta_batch=3",
         "--num_models=2", "--model_hidden=16,16", "--model_rounds=2", "--model_eval_every=5",
         "--starts_per_task=4", "--chunk_steps=2", "--eval_episodes=2", "--eval_contexts=2")
    with open(runs / "reda" / "metrics_adversarial.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2                                            # one row per chunk
    for name in ("adv_return", "adv_reward", "model_uncertainty", "adv_outside_data",
                 "infonce", "adv_infonce", "adversary_critic_loss"):
        values = [float(r[f"{name}/seed{s}"]) for r in rows for s in (0, 1)]
        assert np.all(np.isfinite(values)), name
    outside = [float(r["adv_outside_data"]) for r in rows]
    assert all(0.0 <= v <= 1.0 for v in outside)

    _run("evaluate.py", f"--workdir={runs}", "--from_training", "--tsne_contexts=2")
    out = runs / "evaluation"
    saved = json.loads((out / "results.json").read_text())
    per = saved["algorithms"]["reda"]["per_seed_task_episode"]
    trained = json.loads((runs / "reda" / "results.json").read_text())["per_task"]
    assert per == trained and saved["setup"]["from_training"]        # train.py's numbers
    assert (saved["setup"]["episodes"], saved["setup"]["contexts"]) == (2, 2)
    # train.py evaluates on the training and validation tasks only (the test tasks: at the end)
    assert not any(k.startswith("test_") for k in per)
    online = np.asarray(per["val_online"])                      # [seeds, validation, episodes]
    assert online.shape == (2, 2, 2) and np.all(np.isfinite(online))
    assert np.asarray(per["val_offpolicy_ctx"]).shape[:2] == (2, 2)
    dphi = np.asarray(per["val_dphi"])
    assert np.all(np.isfinite(dphi)) and np.all(dphi > 0)
    for figure in ("tsne.png", "adversarial.png", "protocols.png"):
        assert (out / figure).stat().st_size > 0, figure
    assert "off-policy" in (out / "tables.md").read_text()

    # The diagnostics read the same run: its models' errors on every seen task's real data,
    # and where its wall-clock went.
    _run("model_discrimination.py", f"--workdir={runs}", "--spec=reda",
         "--shared_model_rounds=2", f"--out={tmp_path / 'md.json'}")
    md = json.loads((tmp_path / "md.json").read_text())
    for split in ("train", "ood"):
        m = np.asarray(md["tasks"][split])
        assert m.shape == (3, 3) and np.all(np.isfinite(m)) and np.all(m > 0)
        frac = md["summary"][split]["mean_matrix"]["diagonal_is_row_minimum"]
        assert frac == np.mean(np.argmin(m, axis=1) == np.arange(3))
        # the physics scale: the own task's true physics gives the recorded next states (the
        # data are MuJoCo C's), another gravity changes them; per-task and shared models
        for kind in ("per_task", "task_conditioned"):
            scale = md["physics"][f"{kind}/{split}"]
            assert scale["transitions_per_task"] > 0
            assert scale["reconstruction"]["median"] < 1e-8, scale
            assert scale["true_task_effect"]["median"] > 0
            assert -1 <= scale["direction_cosine"]["mean"] <= 1
            assert np.isfinite(scale["model_own_error"]["mean"])
        # the same on the transitions inside both tasks' models' support (the run's models)
        joint = md["physics"][f"per_task/{split}"]["joint_support"]
        assert 0 <= joint["fraction"] <= 1
        if joint["fraction"] > 0:
            assert -1 <= joint["direction_cosine"]["mean"] <= 1
            assert joint["true_task_effect"]["median"] > 0
        assert "joint_support" not in md["physics"][f"task_conditioned/{split}"]
    _run("embedding_geometry.py", f"--workdir={runs}", "--split=test", "--contexts=3",
         f"--out={tmp_path / 'geometry.json'}")
    geometry = json.loads((tmp_path / "geometry.json").read_text())["algorithms"]["reda"]
    for name in ("dphi", "centroid_dphi", "spread_train", "spread_test", "accuracy"):
        values = np.asarray([p[name] for p in geometry["per_seed_task"]])
        assert values.shape == (2, 2) and np.all(np.isfinite(values)), name  # [seeds, unseen]
    assert np.all((0 <= values) & (values <= 1))                             # the accuracy
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "pipeline_phases.py"),
                           f"--workdir={runs}"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    phases = json.loads(proc.stdout.strip().splitlines()[-1])["training"]["reda"]
    assert [p[0] for p in phases] == ["models", "adversarial", "policy", "eval"]
    assert all(p[1] > 0 for p in phases)
