"""Recipes (jaxomrl.experiment.recipes) and the one command per table (experiments/reproduce.py):
every recipe valid at every scale, settings declared once, validation tasks apart from the test
tasks, one recipe of each paper end to end at tiny scale, and a reproduction resumed after
``kill -9``."""
import csv
import dataclasses
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxomrl import algos, envs
from jaxomrl.algos import registry
from jaxomrl.experiment import collect as C
from jaxomrl.experiment import recipes
from jaxomrl.learners.encoder import EncoderConfig
from jaxomrl.learners.sac import SACConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPRODUCE = os.path.join(ROOT, "experiments", "reproduce.py")


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_validates_at_every_scale(name):
    recipe = recipes.get(name)
    recipe.validate()
    assert recipes.from_json(json.loads(json.dumps(dataclasses.asdict(recipe)))) == recipe
    for scale in recipes.SCALES:
        config = recipe.collect_config(scale)
        assert config.family == recipe.family and config.task_seed == recipe.task_seed
        for m in recipe.methods_at(scale):
            for c in m.candidate_names():
                cfg = registry.config_of(m.spec, registry.with_family(
                    recipe.settings(scale, m.spec, c), config.make_family()))
                assert cfg is not None


def test_the_tables_have_their_recipes():
    r2pgo = {r.task_set for r in recipes.RECIPES.values() if r.paper == "R2PGO"}
    assert {"Half-Cheetah-Vel", "Walker-Rand-Params", "Hopper-Rand-Params",
            "Point-Robot-Sparse"} <= r2pgo
    reda = {r.task_set for r in recipes.RECIPES.values() if r.table == "tables 1-2"}
    assert reda == set(recipes.REDA_TABLE_1) and len(reda) == 21
    assert any(r.family == "inverted_pendulum_gravity" for r in recipes.RECIPES.values())
    for family in ("cheetah_vel", "walker_rand_params", "hopper_rand_params"):
        r = recipes.get(f"r2pgo_{family}")       # table 1's methods and R2PGO's two ablations
        assert {m.spec for m in r.methods_at("cpu")} == {
            "r2pgo", "r2pgo/no_hypernetwork", "r2pgo/no_weighted_negatives", "borel", "focal",
            "corro", "csro"}
        assert r.settings("cpu", "r2pgo").eval_episodes == 5
        negatives = r.settings("cpu", "corro").corro_negatives
        assert negatives == ("noise" if family == "cheetah_vel" else "generative")
    hc = recipes.get("r2pgo_cheetah_vel")
    assert next(n for n in hc.paper_numbers if n.method == "R2PGO"
                and n.column == "Episode 1").mean == -32.3


def test_recipes_refuse_bad_settings_and_unknown_methods():
    hc = recipes.get("r2pgo_cheetah_vel")
    with pytest.raises(ValueError, match="rl_weight"):
        hc.settings("cpu", "r2pgo", overrides={"rl_weight": -1.0})
    with pytest.raises(ValueError, match="policy_context"):
        hc.settings("cpu", "r2pgo", overrides={"policy_context": "nope"})
    with pytest.raises(ValueError, match="unknown settings"):
        hc.settings("cpu", "r2pgo", overrides={"no_such_setting": 1})
    with pytest.raises(ValueError, match="no candidate"):
        hc.settings("cpu", "r2pgo", candidate="other")
    with pytest.raises(ValueError, match="validation or training tasks"):
        dataclasses.replace(hc, selection="test_online/ep1").validate()
    bad = dataclasses.replace(hc, methods=hc.methods + (recipes.Method("X", "nope"),))
    with pytest.raises(ValueError, match="unknown algorithm"):
        bad.validate()


def test_settings_defaults_are_the_declared_learner_configs():
    """Built from Settings' defaults, every spec's encoder and policy are its declaration's
    configs: each default is written once, in the learner configs and the declarations."""
    s = dataclasses.replace(algos.Settings(), window=16)
    for name, d in registry.DECLARED.items():
        if d.kind == "prompt_dt":
            continue
        cfg = registry.make_config(name, s)
        if d.encoder is not None:
            expected = dataclasses.replace(d.encoder, window=16 * d.window_episodes,
                                           meta_batch=s.meta_batch)
            assert cfg.encoder == expected, name
        policy = dataclasses.replace(SACConfig(), **d.head, **{
            k: getattr(registry.SAC_BC, k) for k in d.head_settings})
        assert cfg.policy == policy, name
    # Settings' fields that are a learner config's own default take it from there
    own = {"hidden": SACConfig.hidden, "latent_dim": EncoderConfig.latent_dim,
           "encoder_hidden": EncoderConfig.hidden, "encoder_lr": EncoderConfig.learning_rate,
           "kl_weight": EncoderConfig.kl_weight, "batch_size": SACConfig.batch_size,
           "lr": SACConfig.actor_lr, "contexts_per_task": EncoderConfig.contexts_per_task}
    for field, value in own.items():
        assert getattr(algos.Settings(), field) == value, field


def test_no_algorithm_name_branches_build_configs():
    source = inspect.getsource(registry.make_config) + inspect.getsource(
        registry.make_reda_config)
    for pattern in ('name ==', 'name in (', 'name !=', '" in ablations'):
        assert pattern not in source


def test_recipes_do_not_restate_defaults():
    defaults = dataclasses.asdict(algos.Settings())
    for recipe in recipes.RECIPES.values():
        for scale in recipes.SCALES:
            for where in [recipe.scale(scale).settings] + [m.settings for m in recipe.methods]:
                same = {k for k, v in where.items() if k in defaults and defaults[k] == v}
                assert not same, (recipe.name, scale, same)


def test_validation_tasks_are_apart_from_training_and_test():
    for name in ("cheetah_vel", "point_robot_sparse", "walker2d_gravity"):
        family = envs.make(name)
        split = family.split(3)
        train, test = family.train_test_split(3)
        assert np.array_equal(split["train"].attributes, train.attributes)
        assert np.array_equal(split["test"].attributes, test.attributes)
        val = np.asarray(split["val"].attributes)
        assert val.shape[0] == family.num_val > 0
        for other in (train, test):
            gaps = np.abs(val[:, None, :] - np.asarray(other.attributes)[None]).max(-1)
            assert gaps.min() > 1e-6, name


def test_collection_marks_validation_tasks():
    config = recipes.get("r2pgo_cheetah_vel").collect_config("tiny")
    tasks, roles = C.select_tasks(config)
    assert roles.tolist() == ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    assert C.config_from_settings(config.family, C.flat_settings(config),
                                  split=config.split, task_seed=config.task_seed) == config


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
    # first of them (runner.share_schedule)
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


def test_reproduce_r2pgo_recipe_tiny_resumes_after_kill(tmp_path):
    """Killed (SIGKILL to the command and its workers) once a first run has finished, the same
    command resumes: the collection and the finished runs are reused, not redone, and the
    table comes out."""
    recipe = recipes.get("r2pgo_cheetah_vel")
    directory = tmp_path / recipe.name / "tiny"
    proc = _reproduce(recipe.name, tmp_path, start_new_session=True)
    deadline = time.time() + 2400
    finished = []
    while time.time() < deadline and proc.poll() is None and not finished:
        finished = [p for p in directory.glob("runs/*/*/results.json")]
        time.sleep(0.5)
    assert finished and proc.poll() is None, proc.communicate()[0][-4000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in finished}
    summary = (directory / "data" / "summary.json").stat().st_mtime_ns
    again = _reproduce(recipe.name, tmp_path)
    out, _ = again.communicate(timeout=2400)
    assert again.returncode == 0, out[-4000:]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert (directory / "data" / "summary.json").stat().st_mtime_ns == summary
    _check_table(directory, recipe)
    # another request in the same directory is refused, naming what differs
    other = subprocess.run([sys.executable, REPRODUCE, f"--recipe={recipe.name}", "--scale=tiny",
                            f"--workdir={tmp_path}", "--seeds=3"], cwd=ROOT,
                           capture_output=True, text=True, env=dict(os.environ,
                                                                    JAX_PLATFORMS="cpu"))
    assert other.returncode != 0 and "seeds" in other.stderr, other.stderr[-2000:]


def test_list_shows_every_recipe_and_scale():
    out = subprocess.run([sys.executable, REPRODUCE, "--list"], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    for name in recipes.RECIPES:
        assert name in out.stdout
    assert out.stdout.count("last committed result") == 3 * len(recipes.RECIPES)


def test_a_rendered_table_replaces_only_its_own_section_of_the_results_page(tmp_path):
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- reproduce a/cpu -->\nold a\n<!-- /reproduce a/cpu -->\nmiddle\n"
                    "<!-- reproduce b/cpu -->\nold b\n<!-- /reproduce b/cpu -->\nend\n")
    table = "# Title\n\nThis run.\n\n## The paper's orderings\n\n| claim |\n"

    def update(recipe):     # in a process of its own: reproduce.py defines absl flags
        code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('r', "
                f"{REPRODUCE!r}); m = importlib.util.module_from_spec(s); s.loader.exec_module(m);"
                f" sys.exit(0 if m.update_results_page({recipe!r}, 'cpu', {table!r}, "
                f"{str(page)!r}) else 3)")
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, env=dict(os.environ, JAX_PLATFORMS="cpu")).returncode

    assert update("a") == 0
    assert page.read_text() == (
        "intro\n<!-- reproduce a/cpu -->\nThis run.\n\n#### The paper's orderings\n\n| claim |\n"
        "<!-- /reproduce a/cpu -->\nmiddle\n<!-- reproduce b/cpu -->\nold b\n"
        "<!-- /reproduce b/cpu -->\nend\n")
    assert update("c") == 3
    # the committed pages' markers: every recipe section of experiments/README.md has both
    text = open(os.path.join(ROOT, "experiments", "README.md")).read()
    for name in ("r2pgo_cheetah_vel", "point_robot_comparison"):
        assert text.count(f"<!-- reproduce {name}/cpu -->") == 1
        assert text.count(f"<!-- /reproduce {name}/cpu -->") == 1
