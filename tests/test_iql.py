"""IQL: losses equal their equations; the learner extracts the data's best action where cloning
averages; conditioned on z it learns a different action per task; vmapped seeds equal their
unbatched twins."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl.learners.iql import IQLConfig, make_iql
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.losses import iql as L
from jaxomrl.types import TaskBatch, Transition

RNG = np.random.default_rng(0)
B = 64


def test_expectile_and_value_loss_match_equations():
    u = RNG.normal(size=B).astype(np.float32)
    for tau in (0.5, 0.7, 0.9):
        want = np.abs(tau - (u < 0)) * u ** 2
        np.testing.assert_allclose(L.expectile_loss(jnp.asarray(u), tau), want, rtol=1e-6)
    q, v = RNG.normal(size=(2, B)).astype(np.float32), RNG.normal(size=B).astype(np.float32)
    d = q.min(0) - v
    loss, _ = L.value_loss(jnp.asarray(q), jnp.asarray(v), 0.7)
    np.testing.assert_allclose(loss, np.mean(np.abs(0.7 - (d < 0)) * d ** 2), rtol=1e-5)


def test_expectile_minimiser_is_mean_at_half_and_rises_towards_the_maximum():
    q = RNG.normal(size=(1, 512)).astype(np.float32)
    grid = np.linspace(-3, 3, 6001, dtype=np.float32)
    argmin = lambda tau: grid[np.argmin([float(L.value_loss(jnp.asarray(q), jnp.full(512, g), tau)[0])
                                         for g in grid[::10]]) * 10]
    assert abs(argmin(0.5) - q.mean()) < 0.02
    assert q.mean() + 0.2 < argmin(0.7) < argmin(0.9) < q.max()


def test_awr_loss_matches_equation_clips_weights_and_stops_their_gradient():
    lp, adv = RNG.normal(size=B).astype(np.float32), 3 * RNG.normal(size=B).astype(np.float32)
    beta, cap = 2.0, 20.0
    w = np.minimum(np.exp(beta * adv), cap)
    loss, m = L.awr_actor_loss(jnp.asarray(lp), jnp.asarray(adv), beta, cap)
    np.testing.assert_allclose(loss, -np.mean(w * lp), rtol=1e-5)
    np.testing.assert_allclose(m["awr_weight_clipped"], np.mean(w >= cap), rtol=1e-6)
    g = jax.grad(lambda a: L.awr_actor_loss(jnp.asarray(lp), a, beta, cap)[0])(jnp.asarray(adv))
    np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_allclose(jax.grad(lambda l: L.awr_actor_loss(l, jnp.asarray(adv), beta,
                                                                   cap)[0])(jnp.asarray(lp)),
                               -w / B, rtol=1e-5)


def test_gaussian_log_prob_matches_scipy_form():
    a, m = RNG.normal(size=(B, 3)), RNG.normal(size=(B, 3))
    ls = RNG.normal(size=(B, 3)) * 0.3
    want = np.sum(-0.5 * ((a - m) / np.exp(ls)) ** 2 - ls - 0.5 * np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(L.gaussian_log_prob(*map(jnp.asarray, (a, m, ls))), want,
                               rtol=1e-5)


def bandit(n=256, good=0.2, seed=0, obs_dim=2):
    """One-step episodes from one state: action +0.8 pays 1, -0.8 pays 0; only a ``good``
    fraction of the data took the good action."""
    rng = np.random.default_rng(seed)
    pick = rng.random(n) < good
    action = np.where(pick, 0.8, -0.8)[:, None].astype(np.float32)
    action = action + 0.05 * rng.normal(size=(n, 1)).astype(np.float32)
    obs = np.ones((n, obs_dim), np.float32)
    return Transition(obs=jnp.asarray(obs), action=jnp.asarray(action),
                      reward=jnp.asarray(pick.astype(np.float32)), next_obs=jnp.asarray(obs),
                      terminated=jnp.ones(n, bool), truncated=jnp.zeros(n, bool))


def train(learner, data, steps, key, z=None):
    batch = data if z is None else TaskBatch(data, z)

    def step(state, k):
        return learner.update(state, batch, k)[0], None
    return jax.lax.scan(step, learner.init(key), jax.random.split(key, steps))[0]


def test_iql_extracts_the_good_action_that_cloning_averages_away():
    data, key, obs = bandit(), jax.random.PRNGKey(0), jnp.ones((1, 2))
    iql = make_iql(IQLConfig(hidden=(32, 32), expectile=0.9, temperature=10.0), 2, 1)
    bc = make_sac(SACConfig(hidden=(32, 32), rl_weight=0.0, bc_weight=1.0), 2, 1)
    mode = lambda learner: learner.make_policy(train(learner, data, 1500, key).actor_params, True)
    a_iql = float(mode(iql)(obs, None, key)[0, 0])
    a_bc = float(mode(bc)(obs, None, key)[0, 0])
    assert a_bc < -0.3          # cloning: the data's mean action, mostly the bad one
    assert a_iql > 0.6          # IQL: the good action


def test_conditioned_iql_learns_each_tasks_good_action_and_vmaps_over_seeds():
    """Two tasks in one batch, z = +-1, the good action's sign flips with the task; vmapped
    seeds equal the same seeds trained one by one (50 updates: float rounding of the batched
    matmuls, not the learner, separates them over long runs)."""
    a, b = bandit(seed=1), bandit(seed=2)
    flip = b.replace(reward=1.0 - b.reward)          # task 2: -0.8 is the good action
    data = jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, flip)
    z = jnp.concatenate([jnp.ones((256, 1)), -jnp.ones((256, 1))])
    iql = make_iql(IQLConfig(hidden=(32, 32), head="concat", expectile=0.9, temperature=10.0),
                   2, 1, 1)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    states = jax.jit(jax.vmap(lambda k: train(iql, data, 1500, k, z)))(keys)
    obs = jnp.ones((2, 2))
    for i, k in enumerate(keys):
        one = jax.tree_util.tree_map(lambda x: x[i], states)
        act = iql.make_policy(one.actor_params, True)(obs, jnp.array([[1.0], [-1.0]]), k)[:, 0]
        assert act[0] > 0.5 and act[1] < -0.5
    short = jax.jit(jax.vmap(lambda k: train(iql, data, 50, k, z)))(keys)
    for i, k in enumerate(keys):
        alone = jax.jit(lambda k: train(iql, data, 50, k, z))(k)
        for x, y in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(short)):
            np.testing.assert_allclose(x, y[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(expectile=1.0), dict(expectile=0.0),
                                 dict(temperature=-1.0), dict(head="film"), dict(hidden=())])
def test_config_errors(bad):
    with pytest.raises(ValueError):
        IQLConfig(**bad)
