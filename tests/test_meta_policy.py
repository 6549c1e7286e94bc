"""Task-conditioned heads (concat, hypernetwork) and the offline SAC+BC meta-policy learner."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxomrl.algos.base import PhaseData
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.losses import sac as L
from jaxomrl.nets.heads import ConditionedMLP, HyperDense
from jaxomrl.types import TaskBatch, Transition

RNG = np.random.default_rng(0)


def test_hyper_dense_equals_explicit_formula_and_starts_independent_of_z():
    layer = HyperDense(3, hyper_hidden=(8,))
    x = jnp.asarray(RNG.normal(size=(5, 4)), jnp.float32)
    z = jnp.asarray(RNG.normal(size=(5, 2)), jnp.float32)
    params = layer.init(jax.random.PRNGKey(0), x, z)
    # bias-HyperInit: the generated layer is the same for every z at initialisation
    out0 = layer.apply(params, x, z)
    np.testing.assert_allclose(out0, layer.apply(params, x, -3.0 * z), atol=1e-6)
    # perturb every parameter so z matters, then check a = F_H(z)(x3) = x3 W(z) + b(z)
    params = jax.tree_util.tree_map(
        lambda p: p + 0.3 * jnp.asarray(RNG.normal(size=p.shape), p.dtype), params)
    p = params["params"]
    h = np.maximum(np.asarray(z) @ np.asarray(p["MLP_0"]["Dense_0"]["kernel"])
                   + np.asarray(p["MLP_0"]["Dense_0"]["bias"]), 0.0)
    k, c = np.asarray(p["generator"]["kernel"]), np.asarray(p["generator"]["bias"])  # [5, 8, 3]
    w = np.einsum("bh,iho->bio", h, k[:4]) + c[:12].reshape(4, 3)   # W(z) = sum_h h_h K_w[h] + c_w
    b = h @ k[4] + c[12:]                                           # b(z) = h K_b + c_b
    want = np.einsum("bi,bio->bo", np.asarray(x), w) + b
    np.testing.assert_allclose(layer.apply(params, x, z), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head", ["concat", "hyper"])
def test_both_heads_fit_a_conditional_regression(head):
    # y depends on x through a z-specific map: different tasks, different functions of x
    x = jnp.asarray(RNG.uniform(-1, 1, size=(512, 2)), jnp.float32)
    z = jnp.asarray(RNG.uniform(-1, 1, size=(512, 2)), jnp.float32)
    y = jnp.sin(2.0 * x[:, :1] * z[:, :1]) + x[:, 1:] * z[:, 1:]
    net = ConditionedMLP((32, 32), 1, head, (32,))
    params = net.init(jax.random.PRNGKey(0), x, z)
    tx = optax.adam(3e-3)

    @jax.jit
    def fit(params):
        def step(carry, _):
            p, o = carry
            loss, g = jax.value_and_grad(lambda p: jnp.mean((net.apply(p, x, z) - y) ** 2))(p)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss
        return jax.lax.scan(step, (params, tx.init(params)), None, 1500)[1]

    losses = np.asarray(fit(params))
    assert losses[-1] < 0.05 * float(jnp.var(y)), (head, losses[0], losses[-1])


def test_sac_bc_loss_matches_equation_and_normaliser_is_constant():
    q = RNG.normal(size=(2, 16)).astype(np.float32) * 5
    lp = RNG.normal(size=16).astype(np.float32)
    pa, da = RNG.uniform(-1, 1, (2, 16, 3)).astype(np.float32)
    qmin = q.min(0)
    want = 2.5 * np.mean(0.2 * lp - qmin) / np.mean(np.abs(qmin)) + \
        np.mean(np.sum((pa - da) ** 2, -1))
    got, m = L.sac_bc_actor_loss(jnp.asarray(q), jnp.asarray(lp), 0.2, jnp.asarray(pa),
                                 jnp.asarray(da), 2.5, 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    np.testing.assert_allclose(L.bc_loss(jnp.asarray(pa), jnp.asarray(da))[0],
                               np.mean(np.sum((pa - da) ** 2, -1)), rtol=1e-5)
    # the |Q| normaliser is a constant: dL/dQ_min = -rl_weight / (B * mean|Q_min|)
    g = np.asarray(jax.grad(lambda q: L.sac_bc_actor_loss(q, jnp.asarray(lp), 0.2,
                                                          jnp.asarray(pa), jnp.asarray(da))[0])(
        jnp.asarray(q)))
    lower = q.argmin(0)
    np.testing.assert_allclose(g[lower, np.arange(16)], -2.5 / (16 * np.mean(np.abs(qmin))),
                               rtol=1e-4)


def _batch(n=64, obs_dim=3, action_dim=2, latent=4, seed=0):
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    obs, z = f(n, obs_dim), f(n, latent)
    # behaviour actions are a function of the state and the task, so cloning can fit them
    action = 0.8 * jnp.tanh(obs @ f(obs_dim, action_dim) + z @ f(latent, action_dim))
    tr = Transition(obs=obs, action=action, reward=f(n), next_obs=f(n, obs_dim),
                    terminated=jnp.zeros(n, bool), truncated=jnp.zeros(n, bool))
    return tr, z


@functools.cache
def _learner(head, rl_weight=2.5, bc_weight=1.0):
    cfg = SACConfig(hidden=(32, 32), head=head, hyper_hidden=(16,), rl_weight=rl_weight,
                    bc_weight=bc_weight, batch_size=64, actor_lr=1e-3, critic_lr=1e-3)
    return make_sac(cfg, 3, 2, latent_dim=4)


@pytest.mark.parametrize("head", ["concat", "hyper"])
def test_meta_policy_seeds_vmapped_equal_separate_and_bc_fits(head):
    sac = _learner(head)
    batch, z = _batch()

    def run(key, steps):
        def body(s, k):
            return sac.update(s, TaskBatch(batch, z), k)
        return jax.lax.scan(body, sac.init(key), jax.random.split(key, steps))

    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    # equality over a short run (float32 batched and unbatched kernels round differently, and
    # Adam amplifies that over hundreds of steps), learning over a long one
    short = jax.jit(jax.vmap(functools.partial(run, steps=30)))(keys)[0]
    s0, _ = jax.jit(functools.partial(run, steps=30))(keys[0])
    for a, b in zip(jax.tree_util.tree_leaves(s0.actor_params),
                    jax.tree_util.tree_leaves(short.actor_params)):
        np.testing.assert_allclose(a, b[0], rtol=1e-4, atol=1e-5)
    _, metrics = jax.jit(jax.vmap(functools.partial(run, steps=400)))(keys)
    bc = np.asarray(metrics["bc_loss"])
    assert bc[:, -10:].mean() < 0.7 * bc[:, :10].mean()
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))


def test_bc_only_and_conditioning_errors():
    sac = _learner("hyper", rl_weight=0.0, bc_weight=1.0)
    batch, z = _batch()
    state = sac.init(jax.random.PRNGKey(0))
    new, m = jax.jit(sac.update)(state, TaskBatch(batch, z), jax.random.PRNGKey(1))
    assert "critic_loss" not in m and "bc_loss" in m
    # OM-BC does not train critics
    for a, b in zip(jax.tree_util.tree_leaves(state.critic_params),
                    jax.tree_util.tree_leaves(new.critic_params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs task embeddings"):
        sac.update(state, batch, jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match="latent_dim >= 1"):
        make_sac(SACConfig(head="concat"), 3, 2)
    with pytest.raises(ValueError, match="not both 0"):
        SACConfig(rl_weight=0.0, bc_weight=0.0)


@pytest.mark.parametrize("normalize", [True, False])
def test_policy_standardises_observations_so_their_units_do_not_matter(normalize):
    """With ``normalize_obs`` the policy trained on observations in other units (obs * c + b,
    same keys) acts as the original on the same states; without it, it does not."""
    import dataclasses

    from jaxomrl import algos
    from jaxomrl.algos.offline_meta import MetaConfig
    from jaxomrl.data.sampler import observation_moments, run_data
    from scripted_data import scripted_point_robot_dataset

    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds)
    obs = np.asarray(data["train"].transitions.obs).reshape(-1, 2)
    mean, std = observation_moments(data["train"])
    np.testing.assert_allclose(mean, obs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, obs.std(0) + 1e-3, rtol=1e-4)
    scale, shift = jnp.asarray([7.0, 0.2]), jnp.asarray([-3.0, 40.0])
    tr = data["train"].transitions
    moved = {"train": data["train"].replace(transitions=tr.replace(
        obs=tr.obs * scale + shift, next_obs=tr.next_obs * scale + shift))}
    settings = algos.Settings(hidden=(16, 16), batch_size=32, meta_batch=4,
                              normalize_obs=normalize)
    algorithm = algos.make("bc", settings, ds.make_family(), int((~ds.is_test).sum()))
    phase = algorithm.phases[-1]

    def train(d):
        aux = phase.prepare(None, d)
        state = phase.init_state(jax.random.PRNGKey(0), aux, d)
        state = jax.lax.scan(lambda s, k: (phase.learner.update(s, PhaseData(aux, d), k)[0],
                                           None), state,
                             jax.random.split(jax.random.PRNGKey(1), 30))[0]
        return phase.output(state, aux)

    act, act_moved = (algorithm.policy(jax.jit(train)(d))[0] for d in (data, moved))
    probe = jnp.asarray(obs[:64])
    a = act(probe, None, jax.random.PRNGKey(2))
    b = act_moved(probe * scale + shift, None, jax.random.PRNGKey(2))
    if normalize:
        np.testing.assert_allclose(a, b, atol=2e-3)
    else:
        assert float(jnp.max(jnp.abs(a - b))) > 0.05
    # runs written before the setting existed did not standardise
    old = dataclasses.asdict(algos.make_config("bc", settings))
    del old["normalize_obs"]
    assert MetaConfig.from_dict(old).normalize_obs is False


def test_policy_standardises_embeddings_so_their_units_do_not_matter():
    """With ``normalize_z`` (BOReL's standardised hyper-state) a policy trained on an encoder
    whose embedding is c * z + b (its output layer rescaled) acts as the original one does on
    the corresponding embeddings."""
    import dataclasses

    from jaxomrl import algos
    from jaxomrl.algos.offline_meta import TrainedEncoder, make_algorithm
    from jaxomrl.data.sampler import run_data
    from scripted_data import scripted_point_robot_dataset

    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds)
    family = ds.make_family()
    settings = algos.with_family(algos.Settings(hidden=(16, 16), batch_size=32, meta_batch=4,
                                                latent_dim=2, encoder_hidden=16), family)
    config = algos.make_config("borel", dataclasses.replace(settings, normalize_z=True))
    encoder = config.encoder
    config = dataclasses.replace(config, encoder=dataclasses.replace(
        encoder, gru=dataclasses.replace(encoder.gru, belief="mean")))
    assert config.normalize_z
    algorithm = make_algorithm("borel", config, family, int((~ds.is_test).sum()))
    encoder, policy = algorithm.phases
    params = encoder.init_state(jax.random.PRNGKey(0), None, data).params
    scale, shift = jnp.asarray([5.0, 0.1]), jnp.asarray([3.0, -20.0])
    head = params["params"]["encoder"]["head"]
    moved = jax.tree_util.tree_map(lambda x: x, params)
    moved["params"]["encoder"]["head"] = {
        "kernel": head["kernel"].at[:, :2].multiply(scale),
        "bias": head["bias"].at[:2].multiply(scale).at[:2].add(shift)}

    def train(phase, p):
        aux = phase.prepare(TrainedEncoder(params=p), data)
        state = phase.init_state(jax.random.PRNGKey(0), aux, data)
        state = jax.lax.scan(lambda s, k: (phase.learner.update(s, PhaseData(aux, data), k)[0],
                                           None), state,
                             jax.random.split(jax.random.PRNGKey(1), 30))[0]
        return phase.output(state, aux)

    out, out_moved = (jax.jit(lambda q: train(policy, q))(p) for p in (params, moved))
    (act, _), (act_moved, _) = algorithm.policy(out), algorithm.policy(out_moved)
    obs = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (64, 2)), jnp.float32)
    z = out["z_moments"][0] + out["z_moments"][1] * jnp.asarray(
        np.random.default_rng(1).normal(size=(64, 2)), jnp.float32)
    a = act(obs, z, jax.random.PRNGKey(2))
    np.testing.assert_allclose(a, act_moved(obs, z * scale + shift, jax.random.PRNGKey(2)),
                               atol=2e-3)
    # without the standardisation the units do matter
    plain = make_algorithm("x", dataclasses.replace(config, normalize_z=False), family,
                           int((~ds.is_test).sum()))
    b, b_moved = (plain.policy(jax.jit(lambda q: train(plain.phases[1], q))(p))[0](
        obs, zz, jax.random.PRNGKey(2)) for p, zz in ((params, z), (moved, z * scale + shift)))
    assert float(jnp.max(jnp.abs(b - b_moved))) > 0.05


def test_weighted_actor_losses_are_their_equations_and_ignore_zero_weights():
    pa, da = (jnp.asarray(x) for x in RNG.uniform(-1, 1, (2, 16, 3)).astype(np.float32))
    w = (RNG.uniform(size=16) > 0.5).astype(np.float32) * RNG.uniform(1, 2, 16).astype(np.float32)
    err = np.sum((np.asarray(pa) - np.asarray(da)) ** 2, -1)
    np.testing.assert_allclose(L.bc_loss(pa, da, jnp.asarray(w))[0], np.sum(w * err) / np.sum(w),
                               rtol=1e-5)
    grad = np.asarray(jax.grad(lambda p: L.bc_loss(p, da, jnp.asarray(w))[0])(pa))
    assert np.all(grad[w == 0] == 0) and np.all(grad[w > 0] != 0)
    assert float(L.bc_loss(pa, da, jnp.zeros(16))[0]) == 0.0
    # SAC+BC: both terms and the |Q| normaliser are weighted means over the batch
    q = RNG.normal(size=(2, 16)).astype(np.float32) * 5
    lp = RNG.normal(size=16).astype(np.float32)
    qmin, wm = q.min(0), lambda x: np.sum(w * x) / np.sum(w)
    want = 2.5 * wm(0.2 * lp - qmin) / wm(np.abs(qmin)) + wm(err)
    got = L.sac_bc_actor_loss(jnp.asarray(q), jnp.asarray(lp), 0.2, pa, da, 2.5, 1.0,
                              jnp.asarray(w))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    np.testing.assert_allclose(L.sac_actor_loss(jnp.asarray(q), jnp.asarray(lp), 0.2,
                                                jnp.asarray(w))[0], wm(0.2 * lp - qmin),
                               rtol=1e-5)
    g = np.asarray(jax.grad(lambda q: L.sac_bc_actor_loss(q, jnp.asarray(lp), 0.2, pa, da, 2.5,
                                                          1.0, jnp.asarray(w))[0])(jnp.asarray(q)))
    assert np.all(g[:, w == 0] == 0)


@pytest.mark.parametrize("rl_weight", [0.0, 0.5])
def test_actor_weights_choose_one_behaviour_where_plain_cloning_averages_two(rl_weight):
    """Two behaviours act +0.6 and -0.6 in the same states: cloning both learns their mean,
    weighting the first's transitions alone learns the first's action (BC and SAC+BC)."""
    sac = make_sac(SACConfig(hidden=(32, 32), head="concat", rl_weight=rl_weight,
                             bc_weight=1.0, batch_size=64, actor_lr=3e-3, critic_lr=1e-3,
                             learn_alpha=False, init_alpha=0.0), 3, 2, latent_dim=4)
    half, _ = _batch(n=32)
    z = jnp.asarray(np.random.default_rng(1).normal(size=(32, 4)), jnp.float32)  # order-free
    both = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x]), half)
    both = both.replace(action=jnp.concatenate([jnp.full((32, 2), 0.6), jnp.full((32, 2), -0.6)]),
                        reward=jnp.zeros(64))
    zz = jnp.concatenate([z, z])
    first = jnp.concatenate([jnp.ones(32), jnp.zeros(32)])

    def fit(weight):
        def body(s, k):
            return sac.update(s, TaskBatch(both, zz, actor_weight=weight), k)[0], None
        state = jax.lax.scan(body, sac.init(jax.random.PRNGKey(0)),
                             jax.random.split(jax.random.PRNGKey(1), 300))[0]
        return np.asarray(sac.make_policy(state.actor_params, True)(half.obs, z, None))

    # cloning both: their mean (the RL term on zero rewards moves a few states a little)
    mixed = fit(None)
    assert abs(mixed.mean()) < 0.1 and np.all(np.abs(mixed) < 0.3), mixed
    np.testing.assert_allclose(fit(first), 0.6, atol=0.15)


def test_zero_actor_weights_train_the_critics_only_and_iql_refuses_them():
    from jaxomrl.learners.iql import IQLConfig, make_iql
    batch, z = _batch()
    for rl_weight, bc_weight in ((1.0, 0.0), (2.5, 1.0)):          # plain SAC, SAC+BC
        sac = make_sac(SACConfig(hidden=(8,), head="concat", rl_weight=rl_weight,
                                 bc_weight=bc_weight), 3, 2, 4)
        state = sac.init(jax.random.PRNGKey(0))
        new, _ = sac.update(state, TaskBatch(batch, z, actor_weight=jnp.zeros(64)),
                            jax.random.PRNGKey(1))
        for a, b in zip(jax.tree_util.tree_leaves(state.actor_params),
                        jax.tree_util.tree_leaves(new.actor_params)):
            np.testing.assert_array_equal(a, b)
        assert not all(np.array_equal(a, b) for a, b in zip(
            jax.tree_util.tree_leaves(state.critic_params),
            jax.tree_util.tree_leaves(new.critic_params)))
    iql = make_iql(IQLConfig(hidden=(8,), head="concat"), 3, 2, 4)
    with pytest.raises(ValueError, match="actor_weight"):
        iql.update(iql.init(jax.random.PRNGKey(0)), TaskBatch(batch, z, actor_weight=jnp.ones(64)),
                   jax.random.PRNGKey(1))


@pytest.mark.parametrize("context,own_share", [("task", 0.0), ("history", 1.0), ("mixed", 0.5)])
def test_policy_context_gives_each_row_its_own_history_or_another_episodes_belief(
        monkeypatch, context, own_share):
    """What the SAC update receives as z: ``history`` the belief of the row's own transition
    (and after it for the TD target), ``task`` one of another transition held fixed for the TD
    target, ``mixed`` either, half the rows each. Every transition's observation and belief carry
    its index, so the update can tell whose belief it got."""
    import dataclasses
    import types

    from jaxomrl import algos
    from jaxomrl.algos import offline_meta
    from jaxomrl.data.sampler import run_data
    from scripted_data import scripted_point_robot_dataset

    def fake_sac(config, obs_dim, action_dim, latent):
        def update(state, batch, key):
            code, z = batch.transition.obs[:, 0], batch.z[:, 0]
            next_z = z if batch.next_z is None else batch.next_z[:, 0]   # None: z held
            own = (z == code) & (next_z == code + 0.5)    # its own belief, and after it
            return state, {"own": jnp.mean(own), "either": jnp.mean(own | (next_z == z))}
        return types.SimpleNamespace(init=lambda key: jnp.zeros(()), update=update)

    monkeypatch.setattr(offline_meta, "make_sac", fake_sac)
    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds)
    family = ds.make_family()
    settings = algos.with_family(algos.Settings(batch_size=256, meta_batch=4, latent_dim=2,
                                                policy_context=context, normalize_obs=False),
                                 family)
    config = algos.make_config("r2pgo", settings)
    policy = offline_meta.make_algorithm("r2pgo", config, family,
                                         int((~ds.is_test).sum())).phases[-1]
    train = data["train"]
    code = jnp.arange(train.num_tasks * train.size, dtype=jnp.float32).reshape(
        train.num_tasks, train.size)
    train = train.replace(transitions=train.transitions.replace(
        obs=train.transitions.obs.at[..., 0].set(code)))
    data = dict(data, train=train)
    aux = offline_meta.Embedded(z=jnp.repeat(code[..., None], 2, -1),
                                next_z=jnp.repeat(code[..., None] + 0.5, 2, -1))
    metrics = jax.jit(jax.vmap(lambda k: policy.learner.update(jnp.zeros(()),
                                                               PhaseData(aux, data), k)[1]))(
        jax.random.split(jax.random.PRNGKey(0), 20))
    share = float(metrics["own"].mean())
    assert abs(share - own_share) < 0.03, share
    np.testing.assert_array_equal(metrics["either"], 1.0)   # the others' held for the TD target
    if context == "mixed":   # a belief horizon in episodes needs a recurrent encoder
        with pytest.raises(ValueError, match="needs encoder='gru'"):
            algos.make_config("focal", dataclasses.replace(settings, history_episodes=2))
