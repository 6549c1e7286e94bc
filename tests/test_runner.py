"""The experiment runner (vmapped seeds, resume, sharding, logs), online-adaptation rollouts of
known policies, the policy's context embeddings, and the train.py command line's input checks."""
import csv
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl import algos, envs
from jaxomrl.algos.base import Algorithm, Phase, PhaseData, make_train
from jaxomrl.learners.base import PlainLearner
from jaxomrl.data.sampler import run_data
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.eval.adaptation import Context, online_returns
from jaxomrl.experiment.programs import Programs, sequential_seeds
from jaxomrl.experiment.run_config import RunConfig, RunConfigError
from jaxomrl.experiment.runner import final_outputs, run
from scripted_data import scripted_point_robot_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = algos.Settings(hidden=(16, 16), hyper_hidden=(8,), latent_dim=3, encoder_hidden=16,
                      window=10, contexts_per_task=4, encoder_meta_batch=4, encoder_steps=6,
                      policy_steps=6, batch_size=32, meta_batch=4, eval_episodes=2,
                      dt_width=16, dt_layers=1, dt_context=5, dt_prompt_length=3,
                      dt_batch_size=2, dt_warmup=2)
SEEDS = (0, 1)


def _setup(spec="r2pgo", settings=TINY):
    ds = scripted_point_robot_dataset()
    family = ds.make_family()
    data, eval_data = run_data(ds)
    return algos.make(spec, settings, family, int((~ds.is_test).sum())), data, eval_data


def _run(workdir, seeds=SEEDS, stop=None, spec="r2pgo", settings=TINY, share_dir=None):
    algorithm, data, eval_data = _setup(spec, settings)
    cfg = RunConfig(workdir=str(workdir), seeds=seeds, chunk_steps=2, verbose=False,
                    share_dir=share_dir)
    res = run(algorithm, data, eval_data, cfg, {"test": True}, stop_after_chunks=stop)
    return res, algorithm, data


def _csv_steps(path):
    with open(path, newline="") as f:
        return [int(r[0]) for r in list(csv.reader(f))[1:]]


def test_resume_equals_uninterrupted_and_seeds_vmapped_equal_separate(tmp_path):
    full, algorithm, data = _run(tmp_path / "full")
    ref = final_outputs(algorithm, data, str(tmp_path / "full"), len(SEEDS))
    # The pure entry point (every phase in one program, no I/O) trains the same parameters.
    train = jax.jit(jax.vmap(algos.make_train(algorithm, chunk_steps=2), in_axes=(0, None)))
    pure = train(jax.vmap(jax.random.PRNGKey)(jnp.asarray(SEEDS, jnp.uint32)), data)
    assert jax.tree_util.tree_structure(pure) == jax.tree_util.tree_structure(ref)
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(pure)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # Killed mid-encoder, then across the encoder -> policy boundary, then finished.
    assert _run(tmp_path / "resumed", stop=2)[0] is None
    assert _run(tmp_path / "resumed", stop=2)[0] is None
    resumed, _, _ = _run(tmp_path / "resumed")
    out = final_outputs(algorithm, data, str(tmp_path / "resumed"), len(SEEDS))
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(out)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed["metrics"] == full["metrics"]
    for name in ("encoder", "policy"):
        assert _csv_steps(tmp_path / "resumed" / f"metrics_{name}.csv") == [2, 4, 6]
    res = json.loads((tmp_path / "full" / "results.json").read_text())
    for name in ("test_online/ep1", "test_online/ep2", "test_offline_ctx/ep1"):
        assert len(res["metrics"][name]["per_seed"]) == len(SEEDS)
    assert np.asarray(res["per_task"]["test_online"]).shape == (2, 4, 2)
    assert os.listdir(tmp_path / "full" / "tensorboard" / "seed1")

    # Seed 1 alone (its own program, batch of one) = seed 1 of the vmapped pair.
    _run(tmp_path / "alone", seeds=(1,))
    alone = final_outputs(algorithm, data, str(tmp_path / "alone"), 1)
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(alone)):
        np.testing.assert_allclose(np.asarray(a)[1], np.asarray(b)[0], rtol=1e-4, atol=1e-5)


def _early_stopping_algorithm(with_done=True):
    """A "fit" phase whose output stops changing after seed-dependent updates (x counts up to
    a cap of 2 + seed; its step counter keeps counting), declared ``done`` then, and a "use"
    phase that reads it."""
    def fit_update(state, batch, key):
        x = jnp.where(state["x"] < state["cap"], state["x"] + 1.0, state["x"])
        return {**state, "x": x, "t": state["t"] + 1}, {"x": x}

    fit = Phase(name="fit", num_steps=10,
                learner=PlainLearner(
                    init=lambda key, batch: {"x": jnp.zeros(()), "t": jnp.zeros((), jnp.int32),
                                             "cap": 2.0 + jax.random.randint(key, (), 0, 2)},
                    update=fit_update), output=lambda state, aux: state["x"],
                done=(lambda state: state["x"] >= state["cap"]) if with_done else None)
    use = Phase(name="use", num_steps=2,
                learner=PlainLearner(init=lambda key, batch: jnp.zeros(()),
                                     update=lambda y, batch, key: (y + batch.aux,
                                                                   {"y": y + batch.aux})),
                output=lambda y, aux: y, prepare=lambda inputs, data: inputs)
    return Algorithm(name="toy", phases=(fit, use), config={"toy": with_done},
                     evaluate=lambda y, key, eval_data: {"test_y": y[None, None]})


def test_a_phase_done_for_every_seed_skips_its_remaining_updates_with_the_same_outputs(tmp_path):
    seeds = (3, 4, 5, 6)
    caps = [2.0 + float(jax.random.randint(jax.random.fold_in(jax.random.fold_in(
        jax.random.PRNGKey(s), 0), 0), (), 0, 2)) for s in seeds]
    assert set(caps) == {2.0, 3.0}                            # seeds finish at steps 2 and 3
    expected = 2 * np.asarray(caps)                           # "use": y = 2 x
    full = jax.vmap(make_train(_early_stopping_algorithm(), 2), in_axes=(0, None))(
        jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32)), None)
    np.testing.assert_array_equal(full, expected)            # every update run: the reference
    for case, chunk, stop, rows in (("uninterrupted", 2, None, [2, 4]), ("resumed", 2, 1, [2, 4]),
                                    ("one_chunk", 10, None, [10])):
        algorithm = _early_stopping_algorithm()
        cfg = RunConfig(workdir=str(tmp_path / case), seeds=seeds, chunk_steps=chunk,
                        verbose=False)
        if stop:                           # killed after the first chunk, then run again
            assert run(algorithm, None, None, cfg, stop_after_chunks=stop) is None
        res = run(algorithm, None, None, cfg)
        # done for every seed after step 3: the chunk holding step 3 ends there, the chunks
        # after it are skipped
        assert res["phases_ended_early_in_this_call"] == {"fit": 3}
        assert _csv_steps(tmp_path / case / "metrics_fit.csv") == rows
        np.testing.assert_array_equal(res["per_task"]["test_y"], expected[:, None, None])
        np.testing.assert_array_equal(
            final_outputs(algorithm, None, str(tmp_path / case), len(seeds)), expected)
    # the chunk's metrics are the mean over the updates each seed ran (x after each)
    with open(tmp_path / "one_chunk" / "metrics_fit.csv", newline="") as f:
        row = next(csv.DictReader(f))
    per_seed = [float(row[f"x/seed{s}"]) for s in seeds]
    np.testing.assert_allclose(per_seed, [np.mean(np.arange(1, c + 1)) for c in caps])
    # without ``done`` every update runs, to the same outputs
    cfg = RunConfig(workdir=str(tmp_path / "no_done"), seeds=seeds, chunk_steps=2, verbose=False)
    res = run(_early_stopping_algorithm(with_done=False), None, None, cfg)
    assert res["phases_ended_early_in_this_call"] == {}
    assert _csv_steps(tmp_path / "no_done" / "metrics_fit.csv") == [2, 4, 6, 8, 10]
    np.testing.assert_array_equal(res["per_task"]["test_y"], expected[:, None, None])


def test_phases_hinting_seeds_in_sequence_run_them_one_after_another_with_the_same_outputs(
        tmp_path):
    plain = _early_stopping_algorithm()
    fit, use = plain.phases
    hinted = plain._replace(phases=(fit._replace(seeds_in_sequence=True), use))
    seeds = (3, 4, 5, 6)
    assert sequential_seeds(RunConfig(workdir="w", seeds=seeds))          # tests run on a CPU
    assert not sequential_seeds(RunConfig(workdir="w", seeds=seeds, shard_seeds=True))
    outs = {}
    for name, algorithm in (("vmapped", plain), ("in_sequence", hinted)):
        cfg = RunConfig(workdir=str(tmp_path / name), seeds=seeds, chunk_steps=2, verbose=False)
        res = run(algorithm, None, None, cfg)
        assert res["phases_ended_early_in_this_call"] == {"fit": 3}        # done: still skipped
        outs[name] = final_outputs(algorithm, None, str(tmp_path / name), len(seeds))
    np.testing.assert_array_equal(outs["vmapped"], outs["in_sequence"])

    def top_level_maps(algorithm, in_sequence):
        programs = Programs(algorithm, sequential_seeds=in_sequence)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
        aux = programs.prepare[0](jnp.zeros((len(seeds),)), None)
        state = programs.init[0](keys, aux, None)
        jaxpr = jax.make_jaxpr(programs.chunk(0, 2))(state, keys, aux, None).jaxpr
        inner = jaxpr.eqns[0].params["jaxpr"].jaxpr          # inside the jit
        return [e.params["length"] for e in inner.eqns if e.primitive.name == "scan"]

    assert top_level_maps(hinted, True) == [len(seeds)]        # one seed after another
    assert top_level_maps(hinted, False) == []                 # vmapped: no loop over seeds
    assert top_level_maps(plain, True) == []                   # only where the phase hints it


def test_identical_first_phases_are_shared_and_give_the_same_result(tmp_path):
    share = str(tmp_path / "shared")
    first = _run(tmp_path / "a", spec="r2pgo", share_dir=share)[0]
    assert first["phases_shared_in_this_call"] == []
    # Same encoder, other policy head: the encoder phase is taken from the first run.
    shared, algorithm, data = _run(tmp_path / "b", spec="r2pgo/no_hypernetwork", share_dir=share)
    assert shared["phases_shared_in_this_call"] == ["encoder"]
    assert _csv_steps(tmp_path / "b" / "metrics_encoder.csv") == [2, 4, 6]
    alone = _run(tmp_path / "c", spec="r2pgo/no_hypernetwork")[0]
    assert shared["metrics"] == alone["metrics"]
    for a, b in zip(*(jax.tree_util.tree_leaves(final_outputs(algorithm, data, str(d), 2))
                      for d in (tmp_path / "b", tmp_path / "c"))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Another encoder (uniform negatives) is not taken from it.
    other = _run(tmp_path / "d", spec="r2pgo/no_weighted_negatives", share_dir=share, stop=1)
    assert other[0] is None and not os.path.exists(tmp_path / "d" / "metrics_policy.csv")


def test_workdir_refuses_a_different_run(tmp_path):
    _run(tmp_path, spec="bc", stop=1)
    with pytest.raises(RunConfigError, match=r"unfinished run of bc with other settings .*"
                                             r"config.policy.batch_size: 32 -> 64"):
        _run(tmp_path, spec="bc", stop=1,
             settings=algos.Settings(**{**TINY.__dict__, "batch_size": 64}))


def test_seeds_sharded_over_host_devices_equal_unsharded(tmp_path):
    """Two CPU host devices; the sharded run places seeds on both and computes the same."""
    script = textwrap.dedent(f"""
        import sys, jax, numpy as np
        sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
        from test_runner import _setup
        from jaxomrl.experiment.run_config import RunConfig
        from jaxomrl.experiment.runner import final_outputs, run
        assert jax.device_count() == 2, jax.devices()
        algorithm, data, eval_data = _setup("bc")
        outs = []
        for shard in (False, True):
            wd = {str(tmp_path)!r} + f"/shard{{shard}}"
            res = run(algorithm, data, eval_data,
                      RunConfig(workdir=wd, seeds=(0, 1), chunk_steps=3, shard_seeds=shard,
                                verbose=False))
            assert res["devices"] == (2 if shard else 1), res["devices"]
            outs.append(final_outputs(algorithm, data, wd, 2))
        for a, b in zip(*map(jax.tree_util.tree_leaves, outs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        print("SHARDED_OK")
    """)
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert "SHARDED_OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


def _cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def test_train_cli_rejects_missing_data_wrong_family_and_unknown_algorithm(tmp_path):
    wd = f"--workdir={tmp_path / 'w'}"
    proc = _cli(f"--data={tmp_path / 'nowhere'}", "--family=point_robot_sparse", wd)
    assert proc.returncode != 0 and "no dataset at" in proc.stderr
    path = dataset_lib.save(scripted_point_robot_dataset(), str(tmp_path / "train.npz"))
    proc = _cli(f"--data={path}", "--family=cheetah_vel", wd)
    assert proc.returncode != 0
    assert "from family 'point_robot_sparse', expected 'cheetah_vel'" in proc.stderr
    proc = _cli(f"--data={tmp_path}", "--family=point_robot_sparse", "--algo=r2pgo/no_vae", wd)
    assert proc.returncode != 0 and "r2pgo has no ablation 'no_vae'" in proc.stderr
    assert not os.path.exists(tmp_path / "w")


def test_online_returns_of_known_policies_and_context_semantics():
    family = envs.make("point_robot_sparse")
    _, test = family.train_test_split(0)
    tasks = test[:3]
    goals = jax.vmap(family.goal)(tasks)

    def to_goal(obs, goal):  # 0.09 per step straight at the goal: inside radius 0.2 from step 9
        d = goal - obs
        return 0.9 * d / jnp.linalg.norm(d)   # normalised action; the env scales by 0.1

    # Context = number of transitions seen; the policy moves only once it has seen 20.
    counting = Context(init=lambda: jnp.zeros(()), update=lambda c, tr: c + 1,
                       embed=lambda c, obs: jnp.stack([c, 0.0]))

    def returns(carry, frozen=False, initial=None, context=counting, gate=20):
        def run_one(task, goal, key):
            def act(obs, z, k):
                move = 1.0 if z is None else (z[0] >= gate).astype(jnp.float32)
                return move * to_goal(obs, goal)
            t1 = jax.tree_util.tree_map(lambda x: x[None], task)
            init = None if initial is None else jnp.full((1,), initial)
            return online_returns(family, t1, act, context, key, 2, carry, initial_context=init,
                                  freeze_from=0 if frozen else None)[0]
        return np.asarray(jax.jit(jax.vmap(run_one))(tasks, goals, jax.random.split(
            jax.random.PRNGKey(0), 3)))

    np.testing.assert_array_equal(returns(True, context=None), np.full((3, 2), 12.0))
    np.testing.assert_array_equal(returns(True), np.tile([0.0, 12.0], (3, 1)))
    np.testing.assert_array_equal(returns(False), np.zeros((3, 2)))          # reset per episode
    np.testing.assert_array_equal(returns(True, frozen=True), np.zeros((3, 2)))
    np.testing.assert_array_equal(returns(True, frozen=True, initial=20.0),
                                  np.full((3, 2), 12.0))


def test_policy_embeddings_are_the_online_context_of_each_episode_prefix():
    algorithm, data, _ = _setup()
    from jaxomrl.learners.encoder import make_encoder_learner
    enc = make_encoder_learner(algos.make_config("r2pgo", TINY).encoder, 2, 2)
    params = enc.init(jax.random.PRNGKey(0)).params
    z, next_z = jax.jit(enc.embed_stream)(params, data["train"])
    ep = np.asarray(data["train"].episode[0])
    first = np.flatnonzero(ep == ep[0])              # the task's first episode
    tr = jax.tree_util.tree_map(lambda x: x[0, first][None], data["train"].transitions)
    prefix = enc.embed(params, tr, jnp.ones((1, first.size), bool))
    np.testing.assert_allclose(next_z[0, first[-1]], prefix[0], atol=1e-5)
    second = first[-1] + 1                          # a new episode starts from the empty history
    np.testing.assert_allclose(z[0, second], z[0, 0], atol=1e-6)
    assert not np.allclose(z[0, second], next_z[0, first[-1]])


def test_policy_top_fraction_weights_the_actor_of_every_policy_learner():
    """--policy_top_fraction: the policy phase's actor learns with each task's best episodes'
    weights (data.sampler.top_episodes of its training data), read by every update."""
    from jaxomrl.algos.base import FIRST_INPUTS
    from jaxomrl.data.sampler import top_episodes
    settings = algos.Settings(**{**TINY.__dict__, "policy_top_fraction": 0.5})
    algorithm, data, _ = _setup("bc", settings)
    assert algorithm.config["policy_top_fraction"] == 0.5
    phase = algorithm.phases[-1]
    aux = phase.prepare(FIRST_INPUTS, data)
    np.testing.assert_array_equal(aux.actor_weight, top_episodes(data["train"], 0.5))
    assert 0 < float(np.mean(aux.actor_weight)) < 1
    key = jax.random.PRNGKey(0)
    state = phase.init_state(key, aux, data)
    bc = lambda a: float(jax.jit(phase.learner.update)(state, PhaseData(a, data), key)[1][
        "bc_loss"])
    assert bc(aux) > 0 and bc(aux.replace(actor_weight=jnp.zeros_like(aux.actor_weight))) == 0
    for spec in ("r2pgo", "borel"):
        algorithm, data, _ = _setup(spec, settings)
        encoder, policy = algorithm.phases
        trained = encoder.output(encoder.init_state(key, FIRST_INPUTS, data), FIRST_INPUTS)
        np.testing.assert_array_equal(policy.prepare(trained, data).actor_weight,
                                      top_episodes(data["train"], 0.5))
