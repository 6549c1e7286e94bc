"""Recipes (jaxomrl.experiment.recipes) and the one command per table (experiments/reproduce.py):
every recipe valid at every scale, settings declared once, validation tasks apart from the test
tasks. The tiny reproductions end to end have files of their own (test_reproduce_*.py), so
that the suite's two workers share them."""
import dataclasses
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxomrl import algos, envs
from jaxomrl.algos import registry
from jaxomrl.experiment import collect as C
from jaxomrl.experiment import recipes
from jaxomrl.learners.encoder import EncoderConfig, GRUConfig
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
    # a scale's settings for one method: Prompt-DT's own schedule at paper scale only
    walker = recipes.get("reda_walker2d_gravity_1")
    assert walker.settings("paper", "prompt_dt").policy_steps == 50_000
    assert walker.settings("paper", "reda").policy_steps == 600_000
    assert walker.settings("cpu", "prompt_dt").policy_steps == walker.settings(
        "cpu", "reda").policy_steps
    assert walker.method_options("paper", "prompt_dt") == {"policy_steps": 50_000}


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
    stray = dataclasses.replace(hc, cpu_scale=dataclasses.replace(
        hc.cpu_scale, method_settings={"prompt_dt": {"policy_steps": 1}}))
    with pytest.raises(ValueError, match="prompt_dt"):
        stray.validate()                     # a method this table does not have


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
           "encoder_hidden": GRUConfig.hidden, "encoder_lr": EncoderConfig.learning_rate,
           "kl_weight": GRUConfig.kl_weight, "batch_size": SACConfig.batch_size,
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
            s = recipe.scale(scale)
            for where in ([s.settings, *s.method_settings.values()]
                          + [m.settings for m in recipe.methods]):
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
