"""Evaluation protocols (context sources, known returns), d(phi), the baselines' configurations,
and experiments/evaluate.py's results, tables and figures from a tiny run."""
import dataclasses
import functools
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl import algos, envs
from jaxomrl.algos.offline_meta import MetaConfig
from jaxomrl.data.sampler import describe_data, run_data
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data.sampler import TaskData
from jaxomrl.eval import metrics, report
from jaxomrl.eval.adaptation import Context, online_rollout
from jaxomrl.eval.protocols import evaluate_policy, nonprior_returns
from jaxomrl.eval.stats import scalar_metrics
from jaxomrl.experiment.run_config import RunConfig
from jaxomrl.experiment.runner import run
from scripted_data import scripted_point_robot_dataset
from test_runner import ROOT, TINY


def _with_reward(data: TaskData, value: float) -> TaskData:
    """``data`` with every reward set to ``value`` (marks which source a context came from)."""
    tr = data.transitions
    return data.replace(transitions=tr.replace(reward=jnp.full_like(tr.reward, value)))


def test_protocols_draw_context_from_their_source_and_give_known_returns():
    """A policy that walks straight to the goal (12 per episode, see test_runner) iff its
    context's reward sum is positive: each protocol's return shows which data it read."""
    ds = scripted_point_robot_dataset()
    family = ds.make_family()
    _, eval_data = run_data(ds)
    tasks = eval_data["tasks"]
    goals = {s: jax.vmap(family.goal)(t) for s, t in tasks.items()}
    sources = {"data": {"test": _with_reward(eval_data["data"]["test"], 1.0),
                        "train": _with_reward(eval_data["data"]["train"], 0.0)},
               "ood": {"test": _with_reward(eval_data["data"]["test"], -1.0),
                       "train": _with_reward(eval_data["data"]["train"], 1.0)}}
    reward_sum = Context(init=lambda: jnp.zeros(()), update=lambda c, tr: c + tr.reward,
                         embed=lambda c, obs: jnp.stack([c, 0.0]))

    def returns(split):
        data = {name: src[split] for name, src in sources.items()}

        def per_task(i, key):  # one task at a time: the policy closes over its goal
            goal = goals[split][i]
            task = jax.tree_util.tree_map(lambda x: x[i][None], tasks[split])
            sub = {name: {split: jax.tree_util.tree_map(lambda x: x[i][None], d)}
                   for name, d in data.items()}

            def act(obs, z, k):
                d = goal - obs
                return (z[0] > 0).astype(jnp.float32) * 0.9 * d / jnp.linalg.norm(d)
            out = evaluate_policy(family, {split: task}, act, reward_sum, key, sub,
                                  num_episodes=2, num_contexts=3)
            return {k: v[0] for k, v in out.items()}
        n = tasks[split].num_tasks
        return jax.device_get(jax.jit(jax.vmap(per_task))(
            jnp.arange(n), jax.random.split(jax.random.PRNGKey(0), n)))

    test, train = returns("test"), returns("train")
    n_test, n_train = tasks["test"].num_tasks, tasks["train"].num_tasks
    # test: the training data's contexts have reward > 0 -> walks (12); ood's < 0 -> stays (0).
    np.testing.assert_array_equal(test["test_offline_ctx"], np.full((n_test, 1), 12.0))
    np.testing.assert_array_equal(test["test_offpolicy_ctx"], np.zeros((n_test, 1)))
    # train: the sources swap roles.
    np.testing.assert_array_equal(train["train_offline_ctx"], np.zeros((n_train, 1)))
    np.testing.assert_array_equal(train["train_offpolicy_ctx"], np.full((n_train, 1), 12.0))
    # online: the policy's own history (empty, then its own reward-less steps) -> never walks.
    np.testing.assert_array_equal(test["test_online"], np.zeros((n_test, 2)))
    # Both task sets at once (one batch per protocol); a source with one split only is used there.
    still = lambda o, z, k: jnp.zeros(2)
    partial = {"data": sources["data"], "ood": {"test": sources["ood"]["test"]}}
    out = jax.jit(lambda k: evaluate_policy(family, tasks, still, reward_sum, k, partial, 2))(
        jax.random.PRNGKey(2))
    assert {k: v.shape for k, v in out.items()} == {
        "train_online": (n_train, 2), "test_online": (n_test, 2), "train_offline_ctx": (n_train, 1),
        "test_offline_ctx": (n_test, 1), "test_offpolicy_ctx": (n_test, 1)}
    # A task-agnostic policy is only evaluated online.
    out = jax.jit(lambda k: evaluate_policy(
        family, {"test": tasks["test"]}, lambda o, z, k: jnp.zeros(2), None, k,
        sources))(jax.random.PRNGKey(1))
    assert sorted(out) == ["test_online"]


def test_nonprior_context_is_collected_half_at_random_then_held_fixed():
    """CSRO's non-prior protocol with 2 collection episodes: a constant-action policy whose
    context counts the transitions it saw and those whose action was not the policy's. The
    embedding before step t has seen t transitions, min(t, H) of them random (the first half of
    the 2H collection steps), and from the evaluated episode on it stays at (2H, H)."""
    ds = scripted_point_robot_dataset()
    family = ds.make_family()
    tasks = run_data(ds)[1]["tasks"]["test"]
    seen = Context(init=lambda: jnp.zeros(2),
                   update=lambda c, tr: c + jnp.stack([1.0, jnp.any(tr.action != 0.5)]),
                   embed=lambda c, obs: c)
    const = lambda obs, z, k: jnp.full(2, 0.5)
    h, e = family.horizon, 2
    key = jax.random.PRNGKey(0)
    returns, trace = jax.jit(lambda k: online_rollout(
        family, tasks, const, seen, k, e + 1, random_steps=e * h // 2, freeze_from=e))(key)
    t = np.arange((e + 1) * h)
    np.testing.assert_array_equal(trace["z"][..., 0], np.broadcast_to(
        np.minimum(t, e * h), trace["z"].shape[:2]))
    np.testing.assert_array_equal(trace["z"][..., 1], np.broadcast_to(
        np.minimum(t, e * h // 2), trace["z"].shape[:2]))
    # the protocol reports that rollout's last episode, and evaluate_policy runs it per split
    np.testing.assert_allclose(nonprior_returns(family, tasks, const, seen, key, e),
                               returns[:, -1])
    out = evaluate_policy(family, {"test": tasks}, const, seen, key, nonprior_episodes=e)
    assert out["test_nonprior_ctx"].shape == (tasks.num_tasks, 1)
    assert "test_nonprior_ctx" not in evaluate_policy(family, {"test": tasks}, const, seen, key)
    with pytest.raises(ValueError, match="carry_context"):
        online_rollout(family, tasks, const, seen, key, 2, carry_context=False, freeze_from=1)
    with pytest.raises(ValueError, match="freeze_from"):
        online_rollout(family, tasks, const, seen, key, 2, freeze_from=2)


def test_trace_rewards_sum_to_the_returns_where_episodes_end_early():
    """A hopper that falls ends its episode; the rollout's budget runs on into an episode
    nobody counts, whose rewards stay out of the trace (they were in it, inflating per-window
    sums of the trace on terminating families)."""
    family = envs.make("hopper_rand_params", physics="c", horizon=40)
    tasks = family.train_test_split(0)[0][:2]
    flail = lambda obs, z, k: jnp.where(jnp.arange(3) == 0, 1.0, -1.0)    # falls early
    returns, trace = jax.jit(lambda k: online_rollout(family, tasks, flail, None, k, 1))(
        jax.random.PRNGKey(0))
    reward = np.asarray(trace["reward"])
    assert (reward[:, -5:] == 0).all()                  # it fell before the budget ran out
    np.testing.assert_allclose(reward.sum(1), np.asarray(returns)[:, 0], rtol=1e-5)


def test_a_recurrent_policys_memory_starts_every_episode_and_follows_a_frozen_context():
    """A policy that remembers how many steps of its episode it took and walks along x for the
    first 3 only: its positions (recorded by a context that embeds the observation) rise for 3
    steps and stay in every episode -- the memory restarts at each episode and is updated while
    the context is frozen (offline-context protocol) -- and a plain Policy is unchanged by it."""
    from jaxomrl.types import RecurrentPolicy
    ds = scripted_point_robot_dataset()
    family = ds.make_family()
    tasks = run_data(ds)[1]["tasks"]["test"]
    where = Context(init=lambda: jnp.zeros(()), update=lambda c, tr: c + 1.0,
                    embed=lambda c, obs: jnp.concatenate([obs, c[None]]))
    walker = RecurrentPolicy(
        init=lambda: jnp.zeros((), jnp.int32),
        act=lambda m, obs, z, k: jnp.where(m < 3, 1.0, 0.0) * jnp.asarray([1.0, 0.0]),
        update=lambda m, obs, a, r: m + 1)
    h, key = family.horizon, jax.random.PRNGKey(0)
    start = jnp.full((tasks.num_tasks,), 5.0)
    _, trace = jax.jit(lambda k: online_rollout(family, tasks, walker, where, k, 2,
                                                initial_context=start, freeze_from=0))(key)
    x, seen = np.asarray(trace["z"][..., 0]), np.asarray(trace["z"][..., 2])
    step = family.action_high
    want = step * np.minimum(np.arange(2 * h) % h, 3)
    np.testing.assert_allclose(x, np.broadcast_to(want, x.shape), atol=1e-6)
    np.testing.assert_array_equal(seen, 5.0)       # the context stayed frozen
    plain = lambda obs, z, k: jnp.asarray([1.0, 0.0])
    _, free = online_rollout(family, tasks, plain, where, key, 2)
    np.testing.assert_allclose(free["z"][:, :h, 0], np.broadcast_to(
        step * np.arange(h), (tasks.num_tasks, h)), atol=1e-5)
    np.testing.assert_array_equal(free["z"][..., 2], np.broadcast_to(   # context not frozen
        np.arange(2 * h), (tasks.num_tasks, 2 * h)))


def test_task_representation_metric_is_eq8_for_two_tasks_and_pairwise_means_for_more():
    k = jax.random.split(jax.random.PRNGKey(3), 3)
    z_train = jax.random.normal(k[0], (4, 5, 3))
    z_test = jax.random.normal(k[1], (4, 7, 3)) + 0.5
    d = np.asarray(metrics.task_representation_metric(z_train, z_test))

    def m(a, b):
        return np.mean([np.sum((x - y) ** 2) for x in np.asarray(a) for y in np.asarray(b)])
    for i in range(4):
        others = np.mean([m(z_train[j], z_test[i]) for j in range(4) if j != i])
        np.testing.assert_allclose(d[i], m(z_train[i], z_test[i]) / others, rtol=1e-5)
    two = metrics.task_representation_metric(z_train[:2], z_test[:2])[0]
    eq8 = metrics.relative_representation_metric(z_train[0], z_train[1], z_test[0])
    np.testing.assert_allclose(two, eq8, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        metrics.task_representation_metric(z_train[:1], z_test[:1])


def test_representation_metric_parts_recompose_dphi_and_separate_spread_from_placement():
    k = jax.random.split(jax.random.PRNGKey(4), 2)
    centres = 3.0 * jnp.arange(3)[:, None] * jnp.ones((3, 2))
    z_train = centres[:, None] + jax.random.normal(k[0], (3, 40, 2))
    z_test = centres[:, None] + 0.5 + jax.random.normal(k[1], (3, 30, 2))
    parts = {n: np.asarray(v)
             for n, v in metrics.representation_metric_parts(z_train, z_test).items()}
    mu_tr, mu_te = np.asarray(z_train).mean(1), np.asarray(z_test).mean(1)
    s_tr = np.mean(np.sum((np.asarray(z_train) - mu_tr[:, None]) ** 2, -1), 1)
    s_te = np.mean(np.sum((np.asarray(z_test) - mu_te[:, None]) ** 2, -1), 1)
    for i in range(3):       # m(j, i) = centroid distance + both spreads recomposes d(phi)
        m = [np.sum((mu_te[i] - mu_tr[j]) ** 2) + s_te[i] + s_tr[j] for j in range(3)]
        np.testing.assert_allclose(parts["dphi"][i], m[i] / np.mean(m[:i] + m[i + 1:]), rtol=1e-4)
    # the same centres with 10x the scatter: d(phi) rises towards 1, the spreads grow, fewer
    # single test embeddings are nearest their own centroid
    wide = metrics.representation_metric_parts(
        centres[:, None] + 10.0 * (z_train - centres[:, None]),
        centres[:, None] + 0.5 + 10.0 * (z_test - centres[:, None] - 0.5))
    assert np.all(np.asarray(wide["dphi"]) > parts["dphi"])
    assert np.all(np.asarray(wide["spread_train"]) > 10 * parts["spread_train"])
    assert np.all(parts["accuracy"] > 0.8) and np.all(np.asarray(wide["accuracy"]) < 0.8)
    assert np.all(parts["centroid_dphi"] < 0.1)


def test_baselines_share_sizes_and_policy_learning_and_configs_round_trip():
    configs = {s: algos.make_config(s, TINY) for s in
               ("r2pgo", "r2pgo/no_hypernetwork", "bc", "om_bc", "om_sac", "focal", "corro",
                "borel", "csro")}
    for spec, c in configs.items():
        assert MetaConfig.from_dict(dataclasses.asdict(c)) == c, spec
        assert c.policy.hidden == TINY.hidden and c.policy_steps == TINY.policy_steps
        if c.encoder is not None:
            # (BOReL's two-episode contexts: twice the window)
            assert c.encoder.latent_dim == TINY.latent_dim
            episodes = c.encoder.gru.context_episodes if c.encoder.gru is not None else 1
            assert c.encoder.window == TINY.window * episodes
    # SAC+BC everywhere except the BC baselines; only R2PGO uses the hypernetwork head.
    assert {s for s, c in configs.items() if c.policy.rl_weight == 0} == {"bc", "om_bc"}
    assert {s for s, c in configs.items() if c.policy.head == "hyper"} == {"r2pgo"}
    om_sac, focal, corro = configs["om_sac"].encoder, configs["focal"].encoder, \
        configs["corro"].encoder
    assert om_sac.kind == "gru" and om_sac.gru.vae_weight > 0 and not om_sac.infonce_weight
    assert configs["om_bc"].encoder == om_sac
    assert focal.kind == "mlp" and focal.focal_weight > 0 and not focal.infonce_weight
    assert corro.kind == "mlp" and corro.mlp.corro_weight > 0
    # CSRO: FOCAL's encoder with tanh transition embeddings, distance metric plus CLUB
    csro = configs["csro"].encoder
    assert (csro.kind, csro.mlp.transition_output) == ("mlp", "tanh")
    assert csro.focal_weight == 10 and csro.mlp.club_weight == TINY.club_weight > 0
    assert configs["csro"].policy.head == "concat" and configs["csro"].policy.rl_weight > 0
    no_club = algos.make_config("csro/no_club", TINY).encoder
    assert no_club == dataclasses.replace(csro, mlp=dataclasses.replace(csro.mlp, club_weight=0.0))
    # BOReL: the same VAE with VariBAD's input embeddings, plain SAC (no cloning) on the
    # hyper-state of the transition's own history.
    borel = configs["borel"]
    assert borel.encoder.gru.vae_weight > 0 and not borel.encoder.infonce_weight
    assert borel.encoder.gru.belief == "mean_logvar" and borel.encoder.gru.input_embeddings
    assert borel.encoder.embedding_dim == 2 * TINY.latent_dim
    assert borel.policy_context == "history"
    assert borel.encoder.gru.context_episodes == 2
    assert (borel.policy.rl_weight, borel.policy.bc_weight, borel.policy.head) == (1, 0,
                                                                                  "concat")


@functools.cache
def _load_evaluate_module():
    """experiments/evaluate.py as a module (once per session: it defines absl flags)."""
    spec = importlib.util.spec_from_file_location(
        "evaluate_cli", os.path.join(ROOT, "experiments", "evaluate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_writes_results_tables_and_figures_from_a_tiny_run(tmp_path):
    ds = scripted_point_robot_dataset()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = dataset_lib.save(ds, str(data_dir / "train.npz"))
    dataset_lib.save(ds, str(data_dir / "ood.npz"))  # a stand-in for held-out checkpoints
    ds, ood = dataset_lib.load_collection(str(data_dir))
    data, eval_data = run_data(ds, ood)
    family, n_train = ds.make_family(), int((~ds.is_test).sum())
    settings = dataclasses.replace(TINY, policy_steps=4)
    # One of each kind of run the evaluation treats differently (an ablation, a recurrent
    # history context, no embeddings); FOCAL and CSRO are window / MLP encoders like these
    # (the suite's time: each spec here costs ~1 min of compilation on the 2-core machine).
    for spec in ("r2pgo", "r2pgo/no_hypernetwork", "borel", "prompt_dt"):
        algorithm = algos.make(spec, settings, family, n_train)
        run(algorithm, data, eval_data,
            RunConfig(workdir=str(tmp_path / "runs" / spec.replace("/", "-")), seeds=(0, 1),
                      chunk_steps=2, eval_every=2, verbose=False,
                      share_dir=str(tmp_path / "runs" / "shared_phases")),
            describe_data(path, ds, ood))
    evaluate = _load_evaluate_module().evaluate
    # at the runs' own evaluation settings (TINY's), so that --from_training below must equal it
    res = evaluate(str(tmp_path / "runs"), episodes=2, contexts=4, tsne_contexts=3,
                   verbose=False)
    out = tmp_path / "runs" / "evaluation"
    saved = json.loads((out / "results.json").read_text())
    r2pgo = saved["algorithms"]["r2pgo"]
    assert np.asarray(r2pgo["per_seed_task_episode"]["test_online"]).shape == (2, 4, 2)
    for name in ("test_offline_ctx", "test_offpolicy_ctx", "train_offpolicy_ctx"):
        assert np.asarray(r2pgo["per_seed_task_episode"][name]).shape[:2] == (2, 4 if "test"
                                                                             in name else 12)
    assert len(r2pgo["summary"]["test_dphi"]["per_seed"]) == 2
    table = (out / "tables.md").read_text()
    assert _load_evaluate_module().render(saved) == table     # --render: from results.json
    assert "| r2pgo |" in table and "| r2pgo/no_hypernetwork |" in table
    assert "Interquartile mean" in table and "n = 2" in table
    assert "off-policy context" in table
    assert "**" in table and "d(φ)" in table
    names = {os.path.basename(f) for f in res["figures"]}
    assert {"adaptation.png", "protocols.png", "ablations.png", "tsne.png",
            "learning_curve_test_offline_ctx.png"} <= names
    assert list(saved["algorithms"]) == ["r2pgo", "r2pgo/no_hypernetwork", "borel", "prompt_dt"]
    # BOReL (hyper-state, history context, plain SAC) through the same evaluation and tables.
    borel = saved["algorithms"]["borel"]["per_seed_task_episode"]
    assert np.asarray(borel["test_online"]).shape == (2, 4, 2)
    assert "| borel |" in table
    # CSRO's non-prior context protocol, which every method with an encoder gets
    assert "non-prior context" in table
    for spec in ("r2pgo", "borel", "prompt_dt"):
        nonprior = saved["algorithms"][spec]["per_seed_task_episode"]["test_nonprior_ctx"]
        assert np.asarray(nonprior).shape == (2, 4, 1)
    # Prompt-DT: every protocol, its prompt the context; no embeddings, so no d(phi)
    pdt = saved["algorithms"]["prompt_dt"]
    assert np.asarray(pdt["per_seed_task_episode"]["test_online"]).shape == (2, 4, 2)
    assert np.asarray(pdt["per_seed_task_episode"]["train_offpolicy_ctx"]).shape == (2, 12, 1)
    assert "test_dphi" not in pdt["summary"] and "| prompt_dt |" in table
    for f in res["figures"]:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(f) > 10_000
    steps, values = report.read_curve(str(tmp_path / "runs" / "r2pgo" / "metrics_eval.csv"),
                                      "test_offline_ctx/ep1")
    assert list(steps) == [2, 4] and values.shape == (2, 2)
    # --from_training: the tables of the runs' own end-of-training evaluation, no new rollouts
    again = _load_evaluate_module().evaluate(str(tmp_path / "runs"), ["r2pgo", "borel"],
                                             tsne_contexts=3, out_dir=str(tmp_path / "ft"),
                                             verbose=False, from_training=True)
    for spec in ("r2pgo", "borel"):
        trained = json.loads((tmp_path / "runs" / spec / "results.json").read_text())
        assert again["algorithms"][spec]["per_seed_task_episode"] == trained["per_task"]
    assert (again["setup"]["episodes"], again["setup"]["contexts"]) == (2, 4)  # TINY's
    # ... which are the tables of evaluating again with those settings, as above (the README
    # main job evaluates in train.py at evaluate.py's settings and writes its tables
    # --from_training)
    for spec in ("r2pgo", "borel"):
        assert res["algorithms"][spec] == again["algorithms"][spec]
    row = lambda out: [line.replace("**", "").replace(" ≈", "") for line in (  # bold, ≈: as
        # against the best of the rows shown
        tmp_path / out / "tables.md").read_text().splitlines() if line.startswith("| r2pgo |")]
    assert len(row("ft")) >= 2 and set(row("ft")) <= set(row("runs/evaluation"))
    assert "tsne.png" in {os.path.basename(f) for f in again["figures"]}
    (tmp_path / "runs" / "borel" / "results.json").write_text("{}")   # no per_task in it
    with pytest.raises(Exception, match="--from_training: borel: no evaluation"):
        _load_evaluate_module().evaluate(str(tmp_path / "runs"), ["borel"], verbose=False,
                                         out_dir=str(tmp_path / "ft2"), from_training=True)


def test_markdown_table_bolds_the_best_mean_and_marks_what_is_not_distinguishable_from_it():
    t = report.markdown_table(
        {"a": {"x": [1.0, 3.0], "d": [0.5, 0.6, 0.7]}, "b": {"x": [1.0], "d": [0.2, 0.2, 0.3]},
         "c": {"x": [0.5, 1.5, 1.0], "d": [0.25, 0.3, 0.2]}}, ["x", "d"], lower_is_better=["d"])
    rows = t.splitlines()
    # Sample std (ddof = 1): sqrt(2) for 1 and 3; no std and no interval for one seed.
    assert rows[2].startswith("| a | **2.00 ± 1.41 [1.00, 3.00]** | 0.60 ± 0.10 [")
    assert rows[3].startswith("| b | 1.00 ≈ | **0.23 ± 0.06 [")
    # c's d is within noise of b's (Welch interval holds 0), a's is not.
    cell_d = lambda row: row.split(" | ")[2].rstrip(" |")
    assert cell_d(rows[4]).endswith("≈") and not cell_d(rows[2]).endswith("≈")
    assert "not distinguishable from the column's best" in t


def test_scalar_metrics_are_the_same_from_the_device_and_from_results_json():
    # The returns of a fresh evaluation are float32; --from_training reads them back from
    # results.json as Python floats. Averaged in float32, 0.35 and 0.8 gave 0.575 rounded to
    # float32 (printed 0.57), in float64 0.5750000030 (0.58): one evaluation, two tables.
    returns = np.asarray([[[0.35], [0.8]], [[1.0], [3.0]]], np.float32)     # [seeds, tasks, ep]
    dphi = np.asarray([[0.1, 0.2], [0.3, 0.7]], np.float32)
    fresh = scalar_metrics({"test_online": returns, "test_dphi": dphi})
    stored = scalar_metrics(json.loads(json.dumps(
        {"test_online": returns.tolist(), "test_dphi": dphi.tolist()})))
    assert fresh.keys() == stored.keys() == {"test_online/ep1", "test_dphi"}
    for name in fresh:
        np.testing.assert_array_equal(fresh[name], stored[name])
    assert f"{fresh['test_online/ep1'][0]:.2f}" == "0.58"
