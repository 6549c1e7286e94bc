"""The Rand-Params recipes (R2PGO's table 1) end to end at tiny scale through
experiments/reproduce.py, and the schedule of runs that share a phase."""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxomrl.experiment import recipes
from tiny_reproduce import ROOT, _check_table, _reproduce


@pytest.mark.parametrize("name", ["r2pgo_hopper_rand_params", "r2pgo_walker_rand_params"])
def test_reproduce_rand_params_recipe_tiny(tmp_path, name):
    """The Rand-Params recipes end to end: a table, and CORRO trained with its generative
    negatives (a conditional VAE that learnt) and without reward relabelling."""
    recipe = recipes.get(name)
    proc = _reproduce(recipe.name, tmp_path)
    out, _ = proc.communicate(timeout=2400)
    assert proc.returncode == 0, out[-4000:]
    directory = tmp_path / recipe.name / "tiny"
    result = _check_table(directory, recipe)
    run = directory / "runs" / result["rows"]["CORRO"]["candidate"] / "corro"
    config = json.dumps(json.loads((run / "run.json").read_text()))
    assert '"corro_negatives": "generative"' in config
    assert re.findall(r'"reward_relabelling": ([^,}]*)', config) == ["0.0"], config
    with open(run / "metrics_encoder.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(np.isfinite(float(r["cvae"])) for r in rows)   # its model's loss
    if name != "r2pgo_hopper_rand_params":
        return
    # the schedule of the runs on these data, R2PGO's hypernetwork ablation added, in a
    # directory where no phase is published yet: runs that train the same encoder wait for the
    # first of them (sharing.share_schedule)
    fresh = tmp_path / "schedule"
    (fresh / name / "tiny").mkdir(parents=True)
    (fresh / name / "tiny" / "data").symlink_to(directory / "data")
    snippet = (
        "import dataclasses, json, sys; sys.path.insert(0, 'experiments'); import reproduce; "
        "from absl import flags; flags.FLAGS(['x']); from jaxomrl.experiment import recipes; "
        f"r = recipes.get({name!r}); r = dataclasses.replace(r, tiny_scale=dataclasses.replace("
        "r.tiny_scale, methods=('r2pgo', 'r2pgo/no_hypernetwork', 'corro'))); "
        f"p = reproduce.Reproduction(r, 'tiny', {str(fresh)!r}); "
        "print(json.dumps([[s, c, a] for s, c, _, a in p.jobs()]))")
    out = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        ["r2pgo", "task", None], ["r2pgo/no_hypernetwork", "task", 0], ["r2pgo", "history", 0],
        ["r2pgo/no_hypernetwork", "history", 0], ["corro", "task", None],
        ["corro", "history", 4]]
