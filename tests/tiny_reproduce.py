"""Helpers of the tiny reproductions (tests/test_reproduce_*.py): ``reproduce.py --scale=tiny``
as a process, and the checks every table it writes passes."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPRODUCE = os.path.join(ROOT, "experiments", "reproduce.py")


def _reproduce(recipe, workdir, **kwargs):
    return subprocess.Popen(
        [sys.executable, REPRODUCE, f"--recipe={recipe}", "--scale=tiny", f"--workdir={workdir}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"), **kwargs)


def _check_table(directory, recipe):
    with open(os.path.join(directory, "results.json")) as f:
        result = json.load(f)
    with open(os.path.join(directory, "selection.json")) as f:
        selection = json.load(f)
    with open(os.path.join(directory, "table.md")) as f:
        table = f.read()
    for m in recipe.methods_at("tiny"):
        row = result["rows"][m.label]
        scores = selection["scores"][m.spec]
        assert row["candidate"] == max(scores, key=scores.get)
        assert np.isfinite(row["columns"][next(iter(recipe.columns))]["mean"])
        assert m.label in table
        # training-time evaluation read training and validation tasks only
        run = os.path.join(directory, "runs", row["candidate"], m.spec.replace("/", "-"))
        with open(os.path.join(run, "results.json")) as f:
            metrics = json.load(f)["metrics"]
        assert any(k.startswith("val_") for k in metrics)
        assert not any(k.startswith("test_") for k in metrics)
    assert "## The paper's orderings" in table
    first = next(iter(result["rows"].values()))["columns"][next(iter(recipe.columns))]
    assert np.asarray(first["per_task"]).shape[0] == len(first["values"])   # [seeds, tasks]
    assert first["iqm_interval"] and "Interquartile mean" in table
    return result
