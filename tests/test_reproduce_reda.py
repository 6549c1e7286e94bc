"""ReDA's gravity recipe end to end at tiny scale through experiments/reproduce.py: its table,
its claims, and ``--render`` giving the same table from the kept scores."""
import json
import os
import subprocess
import sys

from jaxomrl.experiment import recipes
from tiny_reproduce import REPRODUCE, ROOT, _check_table, _reproduce


def test_reproduce_reda_recipe_tiny(tmp_path):
    recipe = recipes.get("reda_halfcheetah_gravity_1")
    proc = _reproduce(recipe.name, tmp_path)
    out, _ = proc.communicate(timeout=2400)
    assert proc.returncode == 0, out[-4000:]
    directory = tmp_path / recipe.name / "tiny"
    result = _check_table(directory, recipe)
    # --render: the same table and results from the scores results.json keeps
    table, kept = (directory / "table.md").read_text(), (directory / "results.json").read_text()
    render = subprocess.run([sys.executable, REPRODUCE, f"--render={directory}"], cwd=ROOT,
                            capture_output=True, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert render.returncode == 0, render.stderr[-2000:]
    assert (directory / "table.md").read_text() == table
    assert json.loads((directory / "results.json").read_text()) == json.loads(kept)
    assert {c["claim"] for c in result["claims"]} == {
        "ReDA above OM-SAC in on-policy (table 1)", "ReDA above OM-SAC in off-policy (table 2)"}
