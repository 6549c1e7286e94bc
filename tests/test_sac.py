"""SAC: losses equal their equations, the tanh-Gaussian density, vmapped-over-tasks training."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl import envs
from jaxomrl.learners.online_sac import OnlineSACConfig, make_online_sac
from jaxomrl.learners.gradients import scan_updates
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.losses import sac as L
from jaxomrl.nets.actor_critic import tanh_gaussian_sample
from jaxomrl.types import Transition

RNG = np.random.default_rng(0)
B, N = 64, 2


def test_soft_q_target_matches_equation():
    r, nq, lp = RNG.normal(size=B), RNG.normal(size=(N, B)), RNG.normal(size=B)
    term = RNG.random(B) < 0.3
    alpha, gamma = 0.37, 0.95
    want = r + gamma * (1 - term) * (nq.min(0) - alpha * lp)
    got = L.soft_q_target(jnp.asarray(r, jnp.float32), jnp.asarray(term), jnp.asarray(nq, jnp.float32),
                          jnp.asarray(lp, jnp.float32), jnp.float32(alpha), gamma)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # terminal transitions do not bootstrap
    np.testing.assert_allclose(np.asarray(got)[term], r[term], rtol=1e-6)


def test_critic_loss_matches_equation_and_pulls_q_to_target():
    q, y = RNG.normal(size=(N, B)).astype(np.float32), RNG.normal(size=B).astype(np.float32)
    want = sum(np.mean((q[k] - y) ** 2) for k in range(N))
    loss, _ = L.critic_loss(jnp.asarray(q), jnp.asarray(y))
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    g = jax.grad(lambda q: L.critic_loss(q, jnp.asarray(y))[0])(jnp.asarray(q))
    np.testing.assert_allclose(g, 2 * (q - y) / B, rtol=1e-4, atol=1e-6)


def test_actor_loss_matches_equation_and_ignores_alpha_gradient():
    q, lp = RNG.normal(size=(N, B)).astype(np.float32), RNG.normal(size=B).astype(np.float32)
    alpha = 0.2
    want = np.mean(alpha * lp - q.min(0))
    loss, m = L.sac_actor_loss(jnp.asarray(q), jnp.asarray(lp), jnp.float32(alpha))
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(m["entropy"], -lp.mean(), rtol=1e-5)
    g_alpha = jax.grad(lambda a: L.sac_actor_loss(jnp.asarray(q), jnp.asarray(lp), a)[0])(0.2)
    assert g_alpha == 0.0
    # only the smaller critic receives gradient, with weight -1/B
    gq = np.asarray(jax.grad(lambda q: L.sac_actor_loss(q, jnp.asarray(lp), 0.2)[0])(jnp.asarray(q)))
    lower = q.argmin(0)
    np.testing.assert_allclose(gq[lower, np.arange(B)], -1.0 / B, rtol=1e-5)
    np.testing.assert_allclose(gq[1 - lower, np.arange(B)], 0.0)


@pytest.mark.parametrize("entropy_gap", [+1.0, -1.0])
def test_temperature_loss_equation_and_direction(entropy_gap):
    target = -2.0
    # log_prob = -(entropy) with entropy = target + gap
    lp = jnp.full((B,), -(target + entropy_gap))
    log_alpha = jnp.float32(np.log(0.3))
    loss, _ = L.temperature_loss(log_alpha, lp, target)
    np.testing.assert_allclose(loss, -np.log(0.3) * (-(target + entropy_gap) + target), rtol=1e-5)
    grad = jax.grad(lambda a: L.temperature_loss(a, lp, target)[0])(log_alpha)
    # entropy above the target (gap > 0): descent lowers alpha; below: raises it
    assert np.sign(grad) == np.sign(entropy_gap)


def test_tanh_gaussian_log_prob_is_change_of_variables_and_normalised():
    mean = jnp.asarray(RNG.normal(size=(B, 3)), jnp.float32)
    log_std = jnp.asarray(RNG.uniform(-1, 0.5, size=(B, 3)), jnp.float32)
    key = jax.random.PRNGKey(3)
    a, lp = tanh_gaussian_sample(mean, log_std, key)
    u = np.arctanh(np.clip(np.asarray(a, np.float64), -1 + 1e-7, 1 - 1e-7))
    std = np.exp(np.asarray(log_std, np.float64))
    want = np.sum(-0.5 * ((u - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
                  - np.log(1 - np.tanh(u) ** 2), axis=-1)
    np.testing.assert_allclose(lp, want, rtol=1e-3, atol=1e-3)
    assert np.all(np.abs(np.asarray(a)) <= 1.0)
    # 1-D density integrates to one over (-1, 1)
    u_grid = np.linspace(-8, 8, 20001)
    m1, s1 = 0.3, 0.8
    a_grid = np.tanh(u_grid)
    dens = np.exp(-0.5 * ((u_grid - m1) / s1) ** 2) / (s1 * np.sqrt(2 * np.pi)) / (1 - a_grid ** 2)
    assert abs(np.trapezoid(dens, a_grid) - 1.0) < 1e-3


# ---------------------------------------------------------------- vmapped training
TINY = OnlineSACConfig(sac=SACConfig(hidden=(16, 16), batch_size=32), num_envs=4,
                       buffer_capacity=512, warmup_steps=32, updates_per_iteration=2,
                       train_reward="dense_reward")
ITERS = 12


@functools.cache
def _online_fns():
    family = envs.make("point_robot_sparse")
    o = make_online_sac(family, TINY)
    single = jax.jit(lambda k, t: o.iterate(o.init(k, t), t, ITERS))
    batched = jax.jit(jax.vmap(lambda k, t: o.iterate(o.init(k, t), t, ITERS)))
    return family, single, batched


def test_vmapped_over_tasks_equals_per_task_training():
    family, single, batched = _online_fns()
    tasks = family.sample_tasks(jax.random.PRNGKey(1), 3)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    states, metrics = batched(keys, tasks)
    assert int(states.agent.step[0]) == ITERS * TINY.updates_per_iteration
    for i in range(3):
        s_i, m_i = single(keys[i], tasks[i])
        for a, b in zip(jax.tree_util.tree_leaves(s_i.agent),
                        jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[i], states.agent))):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(s_i.buffer.data.obs, states.buffer.data.obs[i], atol=1e-5)
    # agents are independent: different tasks give different parameters
    p = jax.tree_util.tree_leaves(states.agent.actor_params)[0]
    assert not np.allclose(p[0], p[1])


def test_online_update_is_one_iteration_of_train():
    """The learner shape: ``n`` calls of ``update(state, task, key)`` are ``iterate(state, task, n)``."""
    family = envs.make("point_robot_sparse")
    o = make_online_sac(family, TINY)
    task = family.sample_tasks(jax.random.PRNGKey(1), 1)[0]
    start = jax.jit(o.init)(jax.random.PRNGKey(4), task)
    step = jax.jit(o.update)
    one = start
    for i in range(3):
        one, _ = step(one, task, jax.random.PRNGKey(i))
    many, _ = jax.jit(o.iterate, static_argnums=2)(start, task, 3)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(many)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(one.env_steps - start.env_steps) == 3 * TINY.num_envs


def test_online_config_errors():
    with pytest.raises(ValueError, match="train_reward"):
        make_online_sac(envs.make("point_robot_sparse"),
                        OnlineSACConfig(train_reward="nonexistent"))
    with pytest.raises(ValueError, match="buffer_capacity"):
        OnlineSACConfig(num_envs=8, buffer_capacity=4)


def test_cql_penalty_matches_equation_and_pushes_down_unseen_actions():
    rng = np.random.default_rng(4)
    n, k, b, d = 5, 2, 7, 3
    q_data = rng.normal(size=(k, b)).astype(np.float32)
    q_rand = rng.normal(size=(n, k, b)).astype(np.float32)
    q_pol = rng.normal(size=(n, k, b)).astype(np.float32)
    logp = rng.normal(size=(n, b)).astype(np.float32)
    got, metrics = L.cql_penalty(q_data, q_rand, q_pol, logp, d)
    cat = np.concatenate([q_rand + d * np.log(2.0), q_pol - logp[:, None, :]], 0)
    m = cat.max(0)
    lse = m + np.log(np.exp(cat - m).sum(0))
    np.testing.assert_allclose(got, np.mean(lse - q_data), rtol=1e-5)
    assert float(metrics["cql_gap"]) == pytest.approx(float(got))
    # descending it lowers Q at the sampled actions and raises it at the data's
    g_data, g_rand = jax.grad(lambda a, c: L.cql_penalty(a, c, q_pol, logp, d)[0],
                              argnums=(0, 1))(jnp.asarray(q_data), jnp.asarray(q_rand))
    assert np.all(np.asarray(g_data) < 0) and np.all(np.asarray(g_rand) > 0)


def test_cql_keeps_offline_q_values_of_unseen_actions_below_plain_sacs():
    """On data whose actions all sit near 0, plain offline SAC's critics rate far-away actions
    as high as the data's; with CQL they rate them lower than the data's actions."""
    obs_dim, act_dim, b = 3, 2, 64
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(b, obs_dim)), jnp.float32)
    batch = Transition(obs=obs, action=jnp.asarray(rng.normal(size=(b, act_dim)) * 0.05,
                                                   jnp.float32),
                       reward=jnp.asarray(rng.normal(size=(b,)), jnp.float32),
                       next_obs=obs, terminated=jnp.zeros(b, bool), truncated=jnp.zeros(b, bool))
    far = jnp.full((b, act_dim), 0.9)

    def gap(cql_weight):
        sac = make_sac(SACConfig(hidden=(32, 32), batch_size=b, cql_weight=cql_weight), obs_dim,
                       act_dim)
        state = sac.init(jax.random.PRNGKey(0))
        state, metrics = jax.jit(lambda s: scan_updates(sac.update, s, batch,
                                                        jax.random.PRNGKey(1), 300))(state)
        q = lambda a: jnp.min(sac.critic.apply(state.critic_params, obs, a), axis=0).mean()
        return float(q(far) - q(batch.action)), metrics

    plain, _ = gap(0.0)
    conservative, metrics = gap(5.0)
    assert "cql_gap" in metrics
    assert conservative < plain and conservative < 0, (plain, conservative)


def test_a_fixed_temperature_holds_and_its_entropy_bonus_enters_the_soft_target():
    """``learn_alpha=False`` holds alpha at ``init_alpha`` (0 allowed: no entropy terms, TD3+BC's
    objective; a learned alpha needs a positive start). On rewards of -0.1 per step (the scale of
    Half-Cheetah-Vel's), an offline SAC+BC critic with alpha fixed at 1 rates the data above 0 —
    the entropy bonus outweighs the rewards — and with alpha 0 below 0."""
    with pytest.raises(ValueError, match="init_alpha"):
        SACConfig(init_alpha=0.0)
    obs_dim, act_dim, b = 3, 2, 64
    rng = np.random.default_rng(1)
    batch = Transition(obs=jnp.asarray(rng.normal(size=(b, obs_dim)), jnp.float32),
                       action=jnp.asarray(rng.uniform(-0.5, 0.5, size=(b, act_dim)), jnp.float32),
                       reward=jnp.full((b,), -0.1), next_obs=jnp.asarray(
                           rng.normal(size=(b, obs_dim)), jnp.float32),
                       terminated=jnp.zeros(b, bool), truncated=jnp.zeros(b, bool))

    def train(alpha):
        sac = make_sac(SACConfig(hidden=(32, 32), batch_size=b, learn_alpha=False,
                                 init_alpha=alpha, bc_weight=1.0, rl_weight=2.5), obs_dim,
                       act_dim)
        state, metrics = jax.jit(lambda s: scan_updates(
            sac.update, s, batch, jax.random.PRNGKey(1), 400))(sac.init(jax.random.PRNGKey(0)))
        np.testing.assert_allclose(metrics["alpha"], alpha)
        q = sac.critic.apply(state.critic_params, batch.obs, batch.action)
        return float(jnp.mean(q))

    assert train(0.0) < 0.0 < train(1.0)


def _random_case(seed=5, n=2, b=6, d=2, o=3):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)   # noqa: E731
    batch = Transition(obs=f(b, o), action=jnp.tanh(f(b, d)), reward=f(b), next_obs=f(b, o),
                       terminated=jnp.asarray(rng.random(b) < 0.3), truncated=jnp.zeros(b, bool))
    w_pi, w_q = f(o, 2 * d), f(n, o + d)
    act = lambda obs, z: jnp.split(obs @ w_pi, 2, axis=-1)                        # noqa: E731
    target_q = lambda obs, a, z: w_q @ jnp.concatenate([obs, a], -1).T  # [n, B]  # noqa: E731
    return batch, act, target_q, n, b, d


def test_critic_objectives_are_their_equations_composed():
    """The soft Bellman objective is ``critic_loss`` towards ``soft_q_target`` at a' ~ pi(s');
    the conservative one adds ``weight`` x ``cql_penalty`` at its sampled actions, and takes its
    own key beside the inner objective's."""
    batch, act, target_q, n, b, d = _random_case()
    alpha, gamma, key = jnp.float32(0.3), 0.9, jax.random.PRNGKey(3)
    bellman = L.soft_bellman_objective(gamma)
    k_critic, rest = bellman.split(key)
    target = bellman.constants(act, target_q, batch, None, None, alpha, k_critic)
    mean, log_std = act(batch.next_obs, None)
    a_next, lp_next = tanh_gaussian_sample(mean, log_std, k_critic)
    want = L.soft_q_target(batch.reward, batch.terminated, target_q(batch.next_obs, a_next, None),
                           lp_next, alpha, gamma)
    np.testing.assert_array_equal(target, want)
    q = target_q(batch.obs, batch.action, None)
    q_at = lambda a: target_q(batch.obs, a, None)   # noqa: E731
    np.testing.assert_array_equal(bellman.loss(q, q_at, target)[0], L.critic_loss(q, target)[0])

    cql = L.conservative_objective(bellman, 5.0, 4, d)
    (k_inner, k_cql), rest_cql = cql.split(key)
    inner_key, k_cql_want = jax.random.split(key)
    assert np.array_equal(k_cql, k_cql_want)
    assert np.array_equal(k_inner, bellman.split(inner_key)[0])
    assert np.array_equal(rest_cql, bellman.split(inner_key)[1])
    constants = cql.constants(act, target_q, batch, None, None, alpha, (k_inner, k_cql))
    inner_target, (uniform, pol, logp) = constants
    assert uniform.shape == pol.shape == (4, b, d) and logp.shape == (4, b)
    assert np.all(np.abs(uniform) <= 1.0)
    value, metrics = cql.loss(q, q_at, constants)
    penalty = L.cql_penalty(q, jax.vmap(q_at)(uniform), jax.vmap(q_at)(pol), logp, d)[0]
    np.testing.assert_allclose(value, L.critic_loss(q, inner_target)[0] + 5.0 * penalty,
                               rtol=1e-6)
    assert float(metrics["cql_gap"]) == pytest.approx(float(penalty))


def test_actor_objectives_are_their_equations_and_bc_never_evaluates_the_critics():
    batch, act, target_q, n, b, d = _random_case(seed=6)
    mean, log_std = act(batch.obs, None)
    a, logp = tanh_gaussian_sample(mean, log_std, jax.random.PRNGKey(0))
    q = target_q(batch.obs, a, None)
    alpha, weight = jnp.float32(0.2), jnp.abs(jnp.arange(b, dtype=jnp.float32) - 2)
    for w in (None, weight):
        np.testing.assert_array_equal(
            L.sac_actor_objective()(lambda: q, mean, logp, batch.action, alpha, w)[0],
            L.sac_actor_loss(q, logp, alpha, w)[0])
        np.testing.assert_array_equal(
            L.sac_bc_actor_objective(2.5, 0.5)(lambda: q, mean, logp, batch.action, alpha, w)[0],
            L.sac_bc_actor_loss(q, logp, alpha, jnp.tanh(mean), batch.action, 2.5, 0.5, w)[0])

        def no_critic():
            raise AssertionError("behaviour cloning evaluated the critics")
        np.testing.assert_array_equal(
            L.bc_actor_objective()(no_critic, mean, logp, batch.action, alpha, w)[0],
            L.bc_loss(jnp.tanh(mean), batch.action, w)[0])


@pytest.mark.parametrize("config, critic, actor, learned", [
    (dict(), "bellman", "sac", True),
    (dict(bc_weight=1.0, rl_weight=2.5), "bellman", "sac_bc", True),
    (dict(cql_weight=5.0), "conservative", "sac", True),
    (dict(rl_weight=0.0, bc_weight=1.0), None, "bc", False),
    (dict(learn_alpha=False, init_alpha=0.1), "bellman", "sac", False)])
def test_composed_objectives_are_the_variant_the_config_names(config, critic, actor, learned):
    from jaxomrl.learners.sac import compose_objectives
    obj = compose_objectives(SACConfig(**config), action_dim=2)
    split = {"bellman": jax.random.split, "conservative": None, None: None}[critic]
    assert (obj.critic is None) == (critic is None)
    if critic == "bellman":
        assert obj.critic.split is split
    if critic == "conservative":
        assert obj.critic.split is not jax.random.split
    assert obj.actor.__qualname__.startswith(f"{actor}_actor_objective")
    assert (obj.temperature is not None) == learned
    log_alpha = jnp.log(jnp.float32(0.5))
    want = 0.5 if config.get("learn_alpha", True) else config["init_alpha"]
    np.testing.assert_allclose(obj.alpha(log_alpha), want, rtol=1e-6)
