"""ReDA's adversarial data generation: prefix contexts and the eq. 6 reward in situ."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl.algos.reda import (adversarial_batch, adversarial_info_nce, full_contexts,
                                prefix_contexts)
from jaxomrl.algos.base import PhaseData
from jaxomrl.data.sampler import TaskData
from jaxomrl.learners.encoder import EncoderConfig, make_encoder_learner
from jaxomrl.losses.adversarial import infonce_score
from jaxomrl.types import Transition
from scripted_data import scripted_point_robot_dataset, transition_data

L = 4


def test_prefix_contexts_are_right_aligned_with_the_next_state_as_query():
    steps = jnp.arange(L + 1, dtype=jnp.float32)
    tr = Transition(obs=steps[:-1, None], action=jnp.zeros((L, 1)), reward=steps[:-1],
                    next_obs=steps[1:, None], terminated=jnp.zeros(L, bool),
                    truncated=jnp.zeros(L, bool))
    ctx, mask, query = prefix_contexts(tr)
    for k in range(1, L + 1):
        np.testing.assert_array_equal(np.asarray(mask[k - 1]), np.arange(L) >= L - k)
        np.testing.assert_array_equal(np.asarray(ctx.reward[k - 1, L - k:]), np.arange(k))
        assert float(query.obs[k - 1, 0]) == k          # the state after the first k steps


def test_adversarial_reward_in_situ_is_eq_6_on_the_encoders_prefix_embeddings():
    ds = scripted_point_robot_dataset()
    data = TaskData.from_dataset(ds.select_tasks(np.arange(3)))
    enc = make_encoder_learner(EncoderConfig.make("transformer", infonce_weight=1.0,
                                             window=L, hidden=16, latent_dim=4), 2, 2)
    params = enc.init(jax.random.PRNGKey(0)).params

    def rollout(i, starts, key, length):  # a known "model": task i drifts by 0.05 i per step
        def one(s, k):                       # and task 1's rollouts end at their second step
            def body(carry, kk):
                obs, t = carry
                a = jax.random.uniform(kk, (2,), minval=-1, maxval=1)
                nxt = obs + 0.1 * a + 0.05 * i
                return (nxt, t + 1), (Transition(obs=obs, action=a, reward=jnp.zeros(()),
                                                 next_obs=nxt, terminated=(i == 1) & (t >= 1),
                                                 truncated=jnp.zeros((), bool)), 0.1 * (i + 1))
            return jax.lax.scan(body, (s, 0), jax.random.split(k, length))[1]
        return jax.vmap(one)(starts, jax.random.split(key, starts.shape[0]))

    reward_fn = lambda obs, a: -jnp.linalg.norm(obs)
    run = jax.jit(lambda l1, l2, contrast="real": adversarial_batch(
        enc.embed, enc.sample_contexts, params, rollout, reward_fn, data, jax.random.PRNGKey(1),
        5, L, 6, l1, l2, contrast=contrast), static_argnums=2)
    tr, info = run(0.5, 2.0)
    assert tr.obs.shape == (3, 5, L, 2)
    np.testing.assert_allclose(np.asarray(info["uncertainty"][1]), 0.2, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(tr.reward),
                               -np.linalg.norm(np.asarray(tr.obs), axis=-1), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(info["task_reward"]), np.asarray(tr.reward))
    # eq. 6: r_k = R(z_{k-1}) - R(z_k) - l1 u + l2 r, and r_adv = 0 at the first step.
    score = np.asarray(info["score"])
    r_adv = np.concatenate([np.zeros((3, 5, 1)), score[:, :, :-1] - score[:, :, 1:]], axis=2)
    want = r_adv - 0.5 * np.asarray(info["uncertainty"]) + 2.0 * np.asarray(info["task_reward"])
    want[1, :, 2:] = 0.0        # task 1's rollouts ended at step 2: nothing after the end,
    np.testing.assert_allclose(np.asarray(info["adv_reward"]), want, rtol=1e-4, atol=1e-5)
    for k in range(2, L):       # whose prefixes score as the last valid one
        np.testing.assert_array_equal(score[1, :, k], score[1, :, 1])
    assert not np.allclose(score[0, :, 3], score[0, :, 1])
    # the whole-rollout context of an ended rollout is its valid prefix, right-aligned
    ctx, mask, query = full_contexts(tr)
    np.testing.assert_array_equal(np.asarray(mask[1]), np.broadcast_to(np.arange(L) >= L - 2, (5, L)))
    np.testing.assert_array_equal(np.asarray(mask[0]), True)
    np.testing.assert_array_equal(np.asarray(ctx.obs[1, :, -2:]), np.asarray(tr.obs[1, :, :2]))
    np.testing.assert_array_equal(np.asarray(query.obs[1]), np.asarray(tr.next_obs[1, :, 1]))
    np.testing.assert_array_equal(np.asarray(query.obs[0]), np.asarray(tr.next_obs[0, :, -1]))
    # R(z_k) itself: embed task 2, rollout 3, prefix k = 2 by hand; positives = task 2's real
    # contexts, negatives = the other tasks'.
    ctx, mask, query = prefix_contexts(jax.tree_util.tree_map(lambda x: x[2, 3], tr))
    z = enc.embed(params, jax.tree_util.tree_map(lambda x: x[1], ctx), mask[1],
                  jax.tree_util.tree_map(lambda x: x[1], query))
    np.testing.assert_allclose(np.asarray(z), np.asarray(info["embeddings"][2, 3, 1]), atol=1e-5)
    pos = info["positives"]
    r = infonce_score(z[None], pos[2][None], jnp.concatenate([pos[0], pos[1]])[None])[0]
    np.testing.assert_allclose(float(r), score[2, 3, 1], rtol=1e-5)

    # eq. 3 / 5 as printed (contrast="adversarial"): the same rollouts and prefix embeddings,
    # R against the batch's whole rollouts: positives task 2's other rollouts, negatives every
    # rollout of tasks 0 and 1 (task 1's ended ones: their valid prefix, row 1).
    tr_a, info_a = run(0.5, 2.0, "adversarial")
    np.testing.assert_array_equal(np.asarray(tr_a.obs), np.asarray(tr.obs))
    emb = np.asarray(info_a["embeddings"])
    whole = np.stack([emb[0, :, L - 1], emb[1, :, 1], emb[2, :, L - 1]])   # [T, S, D]
    np.testing.assert_allclose(np.asarray(info_a["positives"]), whole, atol=1e-6)
    r = infonce_score(z[None], jnp.asarray(np.delete(whole[2], 3, axis=0))[None],
                      jnp.asarray(np.concatenate([whole[0], whole[1]]))[None])[0]
    score_a = np.asarray(info_a["score"])
    np.testing.assert_allclose(float(r), score_a[2, 3, 1], rtol=1e-5)
    assert not np.allclose(score_a, score)
    with pytest.raises(ValueError, match="contrast"):
        run(0.5, 2.0, "both")


@pytest.mark.parametrize("contrast", ["real", "adversarial"])
def test_adversarial_info_nce_is_its_equation(contrast):
    """The encoder's adversarial term, by hand: -log softmax of the anchor's positive against
    the other tasks' contexts; "adversarial" never pairs an anchor with itself."""
    t, s, p, d = 3, 5, 4, 2
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    z_adv, z_real = jax.random.normal(k[0], (t, s, d)), jax.random.normal(k[1], (t, p, d))
    loss, metrics = adversarial_info_nce(z_adv, z_real, k[2], contrast, temperature=0.5)
    ref = np.asarray(z_real if contrast == "real" else z_adv)
    za = np.asarray(z_adv)
    # the positives the function drew, recovered from its key
    if contrast == "real":
        pick = np.asarray(jax.random.randint(k[2], (t, s), 0, p))
    else:
        pick = (np.arange(s) + np.asarray(jax.random.randint(k[2], (t, s), 1, s))) % s
        assert (pick != np.arange(s)).all()
    want = []
    for i in range(t):
        neg = np.concatenate([ref[j] for j in range(t) if j != i])
        for a in range(s):
            logits = np.concatenate([[za[i, a] @ ref[i, pick[i, a]]], neg @ za[i, a]]) / 0.5
            want.append(np.log(np.exp(logits).sum()) - logits[0])
    np.testing.assert_allclose(float(loss), np.mean(want), rtol=1e-5)
    assert 0.0 <= float(metrics["infonce_accuracy"]) <= 1.0
    with pytest.raises(ValueError, match="contrast"):
        adversarial_info_nce(z_adv, z_real, k[2], "both")


def _reda_settings():
    from test_runner import TINY
    return dataclasses.replace(TINY, window=5, encoder_steps=4, policy_steps=4, num_models=2,
                               model_hidden=(16, 16), model_rounds=2, model_eval_every=5,
                               starts_per_task=4, policy_model_fraction=0.5,  # model rows too
                               adversary_rollout=3)      # contexts shorter than the window


def test_reda_ablation_switches():
    from jaxomrl.algos.registry import make_reda_config
    s = _reda_settings()
    full = make_reda_config("reda", s)
    assert full.augment and full.adversary_mode == "sac" and full.dynamics.ensemble_size == 2
    assert not make_reda_config("reda/no_model", s).augment
    assert make_reda_config("reda/no_adversary", s).adversary_mode == "random"
    assert make_reda_config("reda/no_uncertainty", s).lambda_uncertainty == 0.0
    assert make_reda_config("reda/no_task_reward", s).lambda_task == 0.0
    assert full.meta.encoder.kind == "transformer"
    from jaxomrl.algos.reda import ReDAConfig
    assert ReDAConfig.from_dict(dataclasses.asdict(full)) == full
    # Settings reach the models; bad values are refused.
    mse = make_reda_config("reda", dataclasses.replace(s, model_holdout_metric="mse"))
    assert mse.dynamics.holdout_metric == mse.reward_model.holdout_metric == "mse"
    assert full.dynamics.holdout_metric == "nll"
    with pytest.raises(ValueError, match="holdout_metric"):
        make_reda_config("reda", dataclasses.replace(s, model_holdout_metric="mae"))
    with pytest.raises(ValueError, match="adversarial_weight"):
        dataclasses.replace(full, adversarial_weight=-1.0)
    assert full.adversary_rollout == 3
    assert make_reda_config("reda", dataclasses.replace(s, adversary_rollout=0)
                            ).adversary_rollout == 0          # 0: the window
    with pytest.raises(ValueError, match="adversary_rollout"):
        dataclasses.replace(full, adversary_rollout=-1)
    assert full.adversarial_contrast == "real"
    assert make_reda_config("reda", dataclasses.replace(s, adversarial_contrast="adversarial")
                            ).adversarial_contrast == "adversarial"
    with pytest.raises(ValueError, match="adversarial_contrast"):
        dataclasses.replace(full, adversarial_contrast="both")


def test_reda_runs_in_the_runner_and_resume_equals_uninterrupted(tmp_path):
    from jaxomrl import algos
    from jaxomrl.data.sampler import run_data
    from jaxomrl.experiment.run_config import RunConfig
    from jaxomrl.experiment.runner import final_outputs, run
    ds = scripted_point_robot_dataset()
    data, eval_data = run_data(ds, ds)          # the data itself stands in for ood contexts
    algorithm = algos.make("reda", _reda_settings(), ds.make_family(), int((~ds.is_test).sum()))
    assert [p.name for p in algorithm.phases] == ["models", "adversarial", "policy"]

    def go(wd, stop=None):
        return run(algorithm, data, eval_data, RunConfig(workdir=str(wd), seeds=(0, 1),
                                                         chunk_steps=2, verbose=False),
                   {"test": "reda"}, stop_after_chunks=stop)

    full = go(tmp_path / "full")
    assert go(tmp_path / "resumed", stop=2) is None   # killed after the models phase
    assert go(tmp_path / "resumed", stop=1) is None   # and mid-adversarial
    resumed = go(tmp_path / "resumed")
    assert resumed["metrics"] == full["metrics"]
    for a, b in zip(*(jax.tree_util.tree_leaves(final_outputs(algorithm, data, str(d), 2))
                      for d in (tmp_path / "full", tmp_path / "resumed"))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "test_dphi" in full["metrics"] and "test_offpolicy_ctx/ep1" in full["metrics"]
    header = (tmp_path / "full" / "metrics_adversarial.csv").read_text().splitlines()[0]
    for name in ("adv_reward", "model_uncertainty", "adv_infonce", "adversary_critic_loss",
                 "adv_outside_first", "adv_outside_last"):
        assert name in header.split(","), header
    header = (tmp_path / "full" / "metrics_models.csv").read_text().splitlines()[0].split(",")
    n_train = int((~ds.is_test).sum())
    for name in ["model_holdout_mse"] + [f"model_holdout_mse/task{i}" for i in range(n_train)]:
        assert name in header and f"{name}/seed1" in header, header


def test_meta_policy_model_data_steps_each_task_in_its_own_models():
    """ReDA's meta-policy data from the models: rows of task i move by task i's learned physics
    (the test_dynamics linear tasks, s' = s + B_i a), reward = shared model - lambda u."""
    from test_dynamics import ACT, DYN, TRAIN, linear_tasks
    from jaxomrl.algos.reda import Models, policy_model_transitions, shared_reward_fn
    from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics, pool_tasks
    data = linear_tasks()
    state, _ = TRAIN(DYN.init(jax.random.PRNGKey(15), data), data, jax.random.PRNGKey(16), 12)
    rew = make_dynamics(DynamicsConfig(target="reward", hidden=(8,), ensemble_size=2), 3, ACT)
    r_state = rew.init(jax.random.PRNGKey(3), pool_tasks(data))
    models = Models(dyn_params=state.best, dyn_norm=state.norm, reward_params=r_state.best,
                    reward_norm=r_state.norm)
    tasks = jnp.array([1, 0])                       # rows of task 1 first: routing by index
    obs = data.transitions.obs[tasks, :16]         # [M, K, obs]
    z = jnp.full((2, 16, ACT), 0.5)                # the "policy" plays its z
    act = lambda o, zz, k: zz
    tr = jax.jit(policy_model_transitions, static_argnums=(0, 1, 2, 4))(
        DYN, rew, 0.7, models, act, obs, z, tasks, jax.random.PRNGKey(4))
    assert tr.obs.shape == obs.shape and not bool(tr.terminated.any())
    np.testing.assert_array_equal(np.asarray(tr.action), np.asarray(z))
    b = jax.random.normal(jax.random.split(jax.random.PRNGKey(0), 5)[0], (2, 3, ACT))
    expected = jnp.einsum("toa,a->to", b[tasks], jnp.full((ACT,), 0.5))
    np.testing.assert_allclose(np.asarray(jnp.mean(tr.next_obs - obs, axis=1)),
                               np.asarray(expected), atol=0.15)
    # reward + lambda u is the shared reward model's prediction; u is each task's own
    r_hat = jax.vmap(jax.vmap(shared_reward_fn(rew, models)))(obs, z)
    _take = lambda t, i: jax.tree_util.tree_map(lambda x: x[i], t)
    u = jnp.stack([jax.vmap(lambda o, a: DYN.step(_take(state.best, int(t)),
                                                  _take(state.norm, int(t)), o, a,
                                                  jax.random.PRNGKey(0))[2])(obs[m], z[m])
                   for m, t in enumerate(tasks)])
    np.testing.assert_allclose(np.asarray(tr.reward), np.asarray(r_hat - 0.7 * u), rtol=1e-4,
                               atol=1e-5)


def test_uncertainty_penalty_keeps_adversarial_rollouts_within_the_data():
    """ReDA's adversary (SAC on eq. 6 in the learned models) with a task reward that pulls it out
    of the data: without the penalty (lambda_1 = 0) its rollouts leave the data's state range,
    with it they stay inside. A 1-D toy, s' = s + 0.3 a with s, a in [-1, 1] in the data; the
    encoder is a constant, so eq. 6 is -lambda_1 u + r with r = a. u is the members'
    disagreement: the aleatoric u of the paper need not grow off the data (here it does not)."""
    from jaxomrl.algos.reda import _take
    from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics
    from jaxomrl.learners.sac import SACConfig, make_sac
    t, n, length, starts = 2, 1000, 5, 32
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.uniform(k[0], (t, n, 1), minval=-1, maxval=1)
    act = jax.random.uniform(k[1], (t, n, 1), minval=-1, maxval=1)
    nxt = obs + 0.3 * act + 0.01 * jax.random.normal(k[2], obs.shape)
    data = transition_data(obs, act, nxt, jnp.zeros((t, n)))
    dyn = make_dynamics(DynamicsConfig(target="next_state", hidden=(32, 32), ensemble_size=3,
                                       learning_rate=3e-3, batch_size=64, eval_every=100,
                                       max_holdout=100, uncertainty="disagreement"), 1, 1)
    models, _ = jax.jit(dyn.fit, static_argnums=3)(
        dyn.init(jax.random.PRNGKey(1), data), data, jax.random.PRNGKey(2), 10)
    sac = make_sac(SACConfig(hidden=(32, 32), batch_size=t * starts * length), 1, 1)
    embed = lambda params, ctx, mask, query: jnp.zeros(mask.shape[:-1] + (2,))
    contexts = lambda d, key, num: (None, jnp.ones((d.num_tasks, num, 1)), None)

    def batch(actor, deterministic, lambda_1, key, num):
        act = sac.make_policy(actor, deterministic)

        def rollout(i, s, kk, steps):
            return dyn.rollout(_take(models.best, i), _take(models.norm, i), act, s, kk, steps)
        return adversarial_batch(embed, contexts, None, rollout, lambda o, a: a[0], data, key,
                                 num, length, 2, lambda_1, 1.0)

    @jax.jit
    def train_and_roll_out(lambda_1):
        def step(state, key):
            k1, k2 = jax.random.split(key)
            tr, info = batch(state.actor_params, False, lambda_1, k1, starts)
            flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[3:]),
                                          tr.replace(reward=info["adv_reward"]))
            return sac.update(state, flat, k2)[0], None
        state = jax.lax.scan(step, sac.init(jax.random.PRNGKey(3)),
                             jax.random.split(jax.random.PRNGKey(4), 1500))[0]
        return batch(state.actor_params, True, 0.0, jax.random.PRNGKey(5), 256)[0].next_obs

    bound = float(obs.max()) + 0.1
    free, penalised = (np.asarray(train_and_roll_out(lam)) for lam in (0.0, 1000.0))
    assert (free > bound).mean() > 0.15, (free > bound).mean()
    assert (penalised > bound).mean() < 0.01, (penalised > bound).mean()


def test_adversarial_contrast_reaches_the_encoder_and_the_adversarys_reward():
    """``--adversarial_contrast=adversarial`` changes the adversarial phase's encoder term and
    the adversary's reward (R of eq. 5), not its rollouts."""
    from jaxomrl import algos
    from jaxomrl.data.sampler import run_data
    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds, ds)
    out = {}
    for contrast in ("real", "adversarial"):
        algorithm = algos.make("reda", dataclasses.replace(_reda_settings(),
                                                           adversarial_contrast=contrast),
                               ds.make_family(), int((~ds.is_test).sum()))
        assert algorithm.config["adversarial_contrast"] == contrast
        models_phase, adv_phase = algorithm.phases[:2]
        key = jax.random.PRNGKey(0)
        aux = adv_phase.prepare(models_phase.output(models_phase.init_state(key, None, data), None),
                                data)
        out[contrast] = jax.jit(adv_phase.learner.update)(
            adv_phase.init_state(key, aux, data), PhaseData(aux, data), key)[1]
    real, adv = out["real"], out["adversarial"]
    for k in ("adv_outside_data", "model_uncertainty", "model_task_reward", "infonce"):
        assert float(real[k]) == float(adv[k]), k        # same rollouts, same real-data term
    for k in ("adv_infonce", "adv_reward", "adv_context_score"):
        assert np.isfinite(float(adv[k])) and float(real[k]) != float(adv[k]), k


def test_task_conditioned_models_run_every_model_use_of_reda():
    """``--model_structure=task_conditioned``: one ensemble (task axis 1) whose input carries the
    task's one-hot; the adversarial phase (with the support halt) runs on it, and the policy's
    model rows keep the environment's action alone while following their task's one-hot."""
    from jaxomrl import algos
    from jaxomrl.algos.reda import policy_model_transitions, task_models
    from jaxomrl.data.sampler import run_data
    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds, ds)
    n_train = int((~ds.is_test).sum())
    settings = dataclasses.replace(_reda_settings(), model_structure="task_conditioned",
                                   adversary_support_quantile=0.9)
    algorithm = algos.make("reda", settings, ds.make_family(), n_train)
    assert algorithm.config["model_structure"] == "task_conditioned"
    models_phase, adv_phase = algorithm.phases[:2]
    assert models_phase.config["structure"] == "task_conditioned"
    key = jax.random.PRNGKey(0)
    state = models_phase.init_state(key, None, data)
    state, metrics = jax.jit(models_phase.learner.update)(
        state, models_phase.batch(None, data), key)
    assert "model_holdout_mse/task0" not in metrics and np.isfinite(float(metrics["model_nll"]))
    models = models_phase.output(state, None)
    assert jax.tree_util.tree_leaves(models.dyn_params)[0].shape[0] == 1   # one ensemble
    aux = adv_phase.prepare(models, data)
    assert aux.max_uncertainty.shape == (n_train,) and np.all(np.isfinite(aux.max_uncertainty))
    _, m_adv = jax.jit(adv_phase.learner.update)(adv_phase.init_state(key, aux, data),
                                                 PhaseData(aux, data), key)
    for k in ("adv_infonce", "adv_reward", "model_uncertainty", "adv_context_length"):
        assert np.isfinite(float(m_adv[k])), k
    # The policy's model rows: the policy's own action recorded, the one-hot only a model input.
    from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics
    from jaxomrl.config import from_json
    family = ds.make_family()
    dyn = make_dynamics(from_json(DynamicsConfig, algorithm.config["dynamics"]),
                        family.obs_dim, family.action_dim + n_train)
    rew = make_dynamics(from_json(DynamicsConfig, algorithm.config["reward_model"]),
                        family.obs_dim, family.action_dim)
    obs = data["train"].transitions.obs[:2, :4]                              # [M=2, K=4]
    act = lambda o, z, k: jnp.full((family.action_dim,), 0.5)
    rows = lambda tasks: policy_model_transitions(
        dyn, rew, 1.0, models, act, obs, jnp.zeros((2, 4, 1)), tasks, jax.random.PRNGKey(3),
        task_model=task_models("task_conditioned", n_train))
    tr, other = rows(jnp.array([0, 1])), rows(jnp.array([1, 0]))
    assert tr.action.shape == (2, 4, family.action_dim)
    np.testing.assert_array_equal(np.asarray(tr.action), 0.5)
    # the same states, actions and keys under the other task's one-hot: other next states
    assert not np.allclose(np.asarray(tr.next_obs), np.asarray(other.next_obs))


def test_support_quantile_ends_adversarial_rollouts_where_the_models_leave_their_data():
    """``--adversary_support_quantile``: each task's threshold is that quantile of its own
    models' u on its training transitions, and the adversarial contexts keep only the steps up
    to the first one above it (without it, every context has all its model steps)."""
    from jaxomrl import algos
    from jaxomrl.data.sampler import run_data
    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds, ds)
    n_train = int((~ds.is_test).sum())
    lengths = {}
    for q in (0.0, 0.5):
        algorithm = algos.make("reda", dataclasses.replace(_reda_settings(),
                                                           adversary_support_quantile=q),
                               ds.make_family(), n_train)
        models_phase, adv_phase = algorithm.phases[:2]
        key = jax.random.PRNGKey(0)
        models = models_phase.output(models_phase.init_state(key, None, data), None)
        aux = adv_phase.prepare(models, data)
        if q > 0:
            from jaxomrl.config import from_json
            from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics
            family = ds.make_family()
            dyn = make_dynamics(from_json(DynamicsConfig, algorithm.config["dynamics"]),
                                family.obs_dim, family.action_dim)
            tr = data["train"].transitions
            u = jax.vmap(dyn.uncertainty)(models.dyn_params, models.dyn_norm, tr.obs, tr.action)
            np.testing.assert_allclose(np.asarray(aux.max_uncertainty),
                                       np.quantile(np.asarray(u), q, axis=1), rtol=1e-5)
        else:
            assert np.isinf(np.asarray(aux.max_uncertainty)).all()
        _, metrics = jax.jit(adv_phase.learner.update)(adv_phase.init_state(key, aux, data),
                                                       PhaseData(aux, data), key)
        lengths[q] = float(metrics["adv_context_length"])
    assert lengths[0.0] == 3.0 and 1.0 <= lengths[0.5] < 3.0, lengths
    with pytest.raises(ValueError, match="support_quantile"):
        from jaxomrl.algos.registry import make_reda_config
        dataclasses.replace(make_reda_config("reda", _reda_settings()), support_quantile=1.5)

