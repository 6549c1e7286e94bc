"""Representation losses equal independent NumPy implementations; gradients push the right way;
edge cases stay finite; weighted negative sampling follows b_ij."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl.eval import metrics
from jaxomrl.losses import contrastive as C
from jaxomrl.losses import vae as V

RNG = np.random.default_rng(0)


def np_info_nce(a, p, n, tau, kind="dot", mask=None, with_pos=True):
    def sc(x, y):
        s = np.sum(x * y, -1)
        if kind == "cosine":
            s = s / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1) + 1e-8)
        return s
    out = []
    for b in range(a.shape[0]):
        pos = sc(a[b], p[b]) / tau
        negs = [sc(a[b], n[b, k]) / tau for k in range(n.shape[1]) if mask is None or mask[b, k]]
        terms = ([pos] if with_pos else []) + negs
        out.append(np.log(np.sum(np.exp(np.array(terms, np.float64)))) - pos if terms else 0.0)
    return np.mean(out)


@pytest.mark.parametrize("kind", ["dot", "cosine"])
@pytest.mark.parametrize("with_pos", [True, False])
def test_info_nce_matches_numpy(kind, with_pos):
    a, p = RNG.normal(size=(6, 4)), RNG.normal(size=(6, 4))
    n = RNG.normal(size=(6, 5, 4))
    mask = RNG.random((6, 5)) < 0.7
    for m in (None, mask):
        got, _ = C.info_nce(jnp.asarray(a, jnp.float32), jnp.asarray(p, jnp.float32),
                            jnp.asarray(n, jnp.float32), 0.5, kind,
                            None if m is None else jnp.asarray(m), with_pos)
        np.testing.assert_allclose(got, np_info_nce(a, p, n, 0.5, kind, m, with_pos),
                                   rtol=1e-4, atol=1e-5)


def test_info_nce_gradients_pull_positives_and_push_negatives():
    a = jnp.asarray(RNG.normal(size=(8, 4)), jnp.float32)
    p = jnp.asarray(RNG.normal(size=(8, 4)), jnp.float32)
    n = jnp.asarray(RNG.normal(size=(8, 3, 4)), jnp.float32)
    gp, gn = jax.grad(lambda p, n: C.info_nce(a, p, n, 1.0)[0], argnums=(0, 1))(p, n)
    # a gradient step moves the positive towards the anchor and negatives away from it
    assert np.all(np.sum(np.asarray(-gp) * np.asarray(a), -1) > 0)
    assert np.all(np.sum(np.asarray(-gn) * np.asarray(a)[:, None], -1) < 0)
    step = 0.1
    before = C.info_nce(a, p, n, 1.0)[0]
    after = C.info_nce(a, p - step * gp, n - step * gn, 1.0)[0]
    assert after < before


@pytest.mark.parametrize("tau", [1e-4, 1.0, 1e4])
def test_info_nce_finite_on_edge_cases(tau):
    same = jnp.ones((4, 3))
    loss, _ = C.info_nce(same, same, jnp.ones((4, 5, 3)), tau)
    # identical embeddings: log(K + 1) (float32 rounding of scores ~3/tau limits precision)
    np.testing.assert_allclose(loss, np.log(6.0), atol=2e-3)
    g = jax.grad(lambda x: C.info_nce(x, x, jnp.ones((4, 5, 3)), tau, "cosine")[0])(same)
    assert np.all(np.isfinite(g))
    a = jnp.asarray(RNG.normal(size=(4, 3)) * 10, jnp.float32)
    loss, _ = C.info_nce(a, a, jnp.asarray(RNG.normal(size=(4, 5, 3)) * 10, jnp.float32), tau)
    assert np.isfinite(loss)
    # no valid negative at all, positive excluded: defined as 0, finite gradient
    f = lambda x: C.info_nce(x, x, jnp.ones((4, 2, 3)), tau, negative_mask=jnp.zeros((4, 2), bool),
                             positive_in_denominator=False)[0]
    assert float(f(a)) == 0.0 and np.all(np.isfinite(jax.grad(f)(a)))


def test_shape_and_argument_errors():
    with pytest.raises(ValueError, match="negatives must be"):
        C.info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="anchor and positive"):
        C.info_nce(jnp.ones((4, 3)), jnp.ones((5, 3)), jnp.ones((4, 2, 3)))
    with pytest.raises(ValueError, match="temperature"):
        C.info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.ones((4, 2, 3)), 0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        C.similarity_weights(jnp.ones((3, 1)), -1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        C.sample_negative_tasks(jax.random.PRNGKey(0), jnp.ones((3, 1)), -0.5, 4)
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        C.weighted_info_nce(jax.random.PRNGKey(0), jnp.ones((3, 1, 2)), jnp.ones((3, 1)), 1.0, 4)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.relative_representation_metric(jnp.ones((0, 2)), jnp.ones((3, 2)), jnp.ones((3, 2)))


def test_similarity_weights_and_negative_counts_follow_b_ij():
    p = jnp.asarray([[0.0], [0.1], [0.5], [2.0]])
    alpha = 2.0
    b = np.exp(-alpha * (np.asarray(p) - np.asarray(p).T) ** 2)
    np.testing.assert_allclose(C.similarity_weights(p, alpha), b, rtol=1e-6)
    n = 40_000
    idx, valid = jax.jit(C.sample_negative_tasks, static_argnums=3)(jax.random.PRNGKey(0), p,
                                                                    alpha, n)
    assert idx.shape == (4, n) and bool(valid.all())
    for i in range(4):
        counts = np.bincount(np.asarray(idx[i]), minlength=4) / n
        target = b[i].copy()
        target[i] = 0.0
        target /= target.sum()
        assert counts[i] == 0.0
        np.testing.assert_allclose(counts, target, atol=0.01)
    # alpha = 0: uniform over the other tasks; a single task: no valid negative
    idx0, _ = C.sample_negative_tasks(jax.random.PRNGKey(1), p, 0.0, n)
    np.testing.assert_allclose(np.bincount(np.asarray(idx0[0]), minlength=4)[1:] / n, 1 / 3,
                               atol=0.01)
    _, v1 = C.sample_negative_tasks(jax.random.PRNGKey(1), p[:1], 1.0, 5)
    assert not bool(v1.any())


def test_weighted_info_nce_equals_eq5_when_samples_within_a_task_agree():
    # With both samples of a task equal, the positive and every negative embedding are fixed, so
    # only the task counts are random; with two tasks every negative is the other task.
    z = jnp.asarray(RNG.normal(size=(2, 1, 3)).repeat(2, 1), jnp.float32)       # [T=2, S=2, D]
    loss, _ = C.weighted_info_nce(jax.random.PRNGKey(0), z, jnp.asarray([[0.0], [1.0]]), 1.0, 4,
                                  0.7)
    zi = np.asarray(z[:, 0])
    want = np.mean([np_info_nce(zi[i:i + 1], zi[i:i + 1], np.repeat(zi[1 - i][None, None], 4, 1),
                                0.7) for i in range(2)])
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    one, _ = C.weighted_info_nce(jax.random.PRNGKey(0), z[:1], jnp.zeros((1, 1)), 1.0, 4)
    assert float(one) == 0.0  # a single task: no negatives, positive only


def test_focal_loss_matches_numpy():
    z = RNG.normal(size=(7, 3))
    ids = np.array([0, 0, 1, 1, 1, 2, 0])
    same, diff = [], []
    for i in range(7):
        for j in range(i + 1, 7):
            d2 = np.sum((z[i] - z[j]) ** 2)
            (same if ids[i] == ids[j] else diff).append(d2 if ids[i] == ids[j] else 1 / (d2 + 0.1))
    got, m = C.focal_distance_loss(jnp.asarray(z, jnp.float32), jnp.asarray(ids))
    np.testing.assert_allclose(got, np.mean(same) + np.mean(diff), rtol=1e-5)
    # gradients pull same-task embeddings together and push different tasks apart
    g = np.asarray(jax.grad(lambda x: C.focal_distance_loss(x, jnp.asarray([0, 0, 1]))[0])(
        jnp.asarray([[0.0, 0.0], [1.0, 0.0], [0.5, 3.0]])))
    assert g[0, 0] < 0 and g[1, 0] > 0 and g[2, 1] < 0
    loss1, _ = C.focal_distance_loss(jnp.ones((4, 2)), jnp.zeros(4, int))   # single task
    assert float(loss1) == 0.0


def test_club_bound_and_nll_match_their_equations_with_a_mask():
    """CLUB (Cheng et al. 2020, CSRO's per-dimension scale): mean over valid pairs (i, j) of
    (z_j - mu_i)^2 / var_i minus the mean over valid i of (z_i - mu_i)^2 / var_i, both averaged
    over dimensions; the Gaussian NLL likewise. Invalid rows take part in neither."""
    n, d = 6, 3
    z, mu = RNG.normal(size=(n, d)), RNG.normal(size=(n, d))
    var = RNG.uniform(0.3, 1.3, size=(n, d))
    mask = np.array([1, 1, 0, 1, 1, 0], bool)
    ok = np.flatnonzero(mask)
    # log q up to its constant; the log-variance cancels in the ratio but not in the NLL
    logq = lambda zj, i: -np.mean((zj - mu[i]) ** 2 / (2 * var[i]) + 0.5 * np.log(var[i]))
    positive = np.mean([logq(z[i], i) for i in ok])
    pairs = np.mean([logq(z[j], i) for i in ok for j in ok])
    want = 2 * (positive - pairs)            # CSRO's scale: twice the per-dimension estimate
    f = lambda x: jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(C.club_upper_bound(f(z), f(mu), f(var), jnp.asarray(mask)), want,
                               rtol=1e-5)
    np.testing.assert_allclose(C.gaussian_nll(f(z), f(mu), f(var), jnp.asarray(mask)),
                               -positive, rtol=1e-5)
    # all rows valid by default
    full = 2 * (np.mean([logq(z[i], i) for i in range(n)])
                - np.mean([logq(z[j], i) for i in range(n) for j in range(n)]))
    np.testing.assert_allclose(C.club_upper_bound(f(z), f(mu), f(var)), full, rtol=1e-5)
    # a q that predicts each z from its own x perfectly: the bound is positive (z reveals x);
    # an embedding constant within the task: zero whatever q says
    assert float(C.club_upper_bound(f(z), f(z), f(var))) > 0
    const = np.broadcast_to(z[:1], z.shape)
    np.testing.assert_allclose(C.club_upper_bound(f(const), f(mu), f(var)), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="must all be"):
        C.club_upper_bound(f(z), f(mu[:, :2]), f(var))


def test_corro_negatives_perturb_only_the_outcome():
    r, s = jnp.zeros((5,)), jnp.ones((5, 3))
    rn, sn = C.corro_negatives(jax.random.PRNGKey(0), r, s, 4000, reward_std=0.5,
                               next_obs_std=0.2)
    assert rn.shape == (5, 4000) and sn.shape == (5, 4000, 3)
    np.testing.assert_allclose(np.std(np.asarray(rn)), 0.5, rtol=0.02)
    np.testing.assert_allclose(np.mean(np.asarray(sn)), 1.0, atol=0.01)
    np.testing.assert_allclose(np.std(np.asarray(sn)), 0.2, rtol=0.02)


def np_kl(mq, lq, mp, lp):
    return 0.5 * np.sum(lp - lq + (np.exp(lq) + (mq - mp) ** 2) / np.exp(lp) - 1, -1)


def test_cvae_loss_matches_equation():
    """CORRO's CVAE objective: beta * mean_n KL(q || N(0, I)) + mean squared errors of s' (over
    transitions and dimensions) and r."""
    N, Z, O = 7, 4, 3
    mean, lv = RNG.normal(size=(N, Z)), RNG.normal(size=(N, Z)) * 0.3
    sp, s_, rp, r = (RNG.normal(size=(N, O)), RNG.normal(size=(N, O)), RNG.normal(size=N),
                     RNG.normal(size=N))
    kl = 0.5 * np.sum(np.exp(lv) + mean ** 2 - 1 - lv, -1)
    want = 0.2 * kl.mean() + np.mean((sp - s_) ** 2) + np.mean((rp - r) ** 2)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    loss, m = V.cvae_loss(f32(mean), f32(lv), f32(sp), f32(s_), f32(rp), f32(r), kl_weight=0.2)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(m["cvae_kl"]), kl.mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="expected mean"):
        V.cvae_loss(f32(mean[0]), f32(lv[0]), f32(sp), f32(s_), f32(rp), f32(r))


def test_vae_loss_matches_equation():
    L, D, O = 5, 3, 2
    mu, lv = RNG.normal(size=(L + 1, D)), RNG.normal(size=(L + 1, D)) * 0.3
    rp, r = RNG.normal(size=(L + 1, L)), RNG.normal(size=L)
    sp, s = RNG.normal(size=(L + 1, L, O)), RNG.normal(size=(L, O))
    mask = np.array([1, 1, 1, 0, 0], bool)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    got, m = V.vae_loss(f32(mu), f32(lv), f32(rp), f32(r), jnp.asarray(mask), f32(sp), f32(s),
                        kl_weight=0.3)
    post = np.concatenate([[True], mask])
    pairs = [(t, j) for t in range(L + 1) for j in range(L) if post[t] and mask[j]]
    rec_r = np.mean([(rp[t, j] - r[j]) ** 2 for t, j in pairs])
    rec_s = np.mean([np.sum((sp[t, j] - s[j]) ** 2) for t, j in pairs])
    prev_mu = np.vstack([np.zeros((1, D)), mu[:-1]])
    prev_lv = np.vstack([np.zeros((1, D)), lv[:-1]])
    kl = np.mean([np_kl(mu[t], lv[t], prev_mu[t], prev_lv[t]) for t in range(L + 1) if post[t]])
    np.testing.assert_allclose(got, rec_r + rec_s + 0.3 * kl, rtol=1e-4)
    np.testing.assert_allclose(m["vae_kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(V.gaussian_kl(f32(mu), f32(lv), f32(mu), f32(lv)), 0.0, atol=1e-6)


def test_vae_loss_on_a_subsample_of_the_decoding_grid():
    """Given the pairs it decodes, the subsampled loss is the same equation over those pairs;
    with the whole grid as the subsample it is the full loss, and uniform subsamples average to
    the full reconstruction term (VariBAD's vae_subsample_elbos / _decodes)."""
    L, D, O = 6, 3, 2
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    mu, lv = f32(RNG.normal(size=(L + 1, D))), f32(RNG.normal(size=(L + 1, D)) * 0.3)
    rp, r = RNG.normal(size=(L + 1, L)), f32(RNG.normal(size=L))
    sp, s = RNG.normal(size=(L + 1, L, O)), f32(RNG.normal(size=(L, O)))
    full, m_full = V.vae_loss(mu, lv, f32(rp), r, None, f32(sp), s, kl_weight=0.3)
    post_i, tr_i = np.arange(L + 1), np.tile(np.arange(L), (L + 1, 1))
    whole, _ = V.vae_loss(mu, lv, f32(rp[post_i[:, None], tr_i]), r, None,
                          f32(sp[post_i[:, None], tr_i]), s, kl_weight=0.3,
                          posterior_index=post_i, transition_index=tr_i)
    np.testing.assert_allclose(whole, full, rtol=1e-6)
    post_i, tr_i = np.array([0, 4, 4]), np.array([[1, 5], [0, 0], [2, 3]])
    got, m = V.vae_loss(mu, lv, f32(rp[post_i[:, None], tr_i]), r, None,
                        f32(sp[post_i[:, None], tr_i]), s, kl_weight=0.3,
                        posterior_index=post_i, transition_index=tr_i)
    want_r = np.mean([(rp[t, j] - r[j]) ** 2 for t, row in zip(post_i, tr_i) for j in row])
    np.testing.assert_allclose(m["vae_reward_mse"], want_r, rtol=1e-5)
    np.testing.assert_allclose(m["vae_kl"], m_full["vae_kl"], rtol=1e-6)   # KL: every posterior
    draws = []
    for k in jax.random.split(jax.random.PRNGKey(0), 400):
        k1, k2 = jax.random.split(k)
        pi, ti = jax.random.randint(k1, (2,), 0, L + 1), jax.random.randint(k2, (2, 3), 0, L)
        draws.append(V.vae_loss(mu, lv, f32(rp)[pi[:, None], ti], r, posterior_index=pi,
                                transition_index=ti)[1]["vae_reward_mse"])
    full_r = m_full["vae_reward_mse"]
    np.testing.assert_allclose(np.mean(draws), full_r, rtol=0.05)
    assert np.std(draws) > 0.05 * full_r            # they are samples, not the full grid
    with pytest.raises(ValueError, match="both"):
        V.vae_loss(mu, lv, f32(rp[:2, :3]), r, posterior_index=np.arange(2))
    with pytest.raises(ValueError, match="expected"):
        V.vae_loss(mu, lv, f32(rp), r, posterior_index=post_i, transition_index=tr_i)


def test_relative_representation_metric_and_centroid_accuracy():
    z1 = RNG.normal(size=(5, 2))
    z2 = RNG.normal(size=(6, 2)) + 3.0
    zt = RNG.normal(size=(4, 2))
    num = np.mean([np.sum((a - b) ** 2) for a in z1 for b in zt])
    den = np.mean([np.sum((a - b) ** 2) for a in z2 for b in zt])
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(metrics.relative_representation_metric(f32(z1), f32(z2), f32(zt)),
                               num / den, rtol=1e-5)
    assert float(metrics.relative_representation_metric(f32(z1), f32(z2), f32(z1))) < 0.3
    ref = jnp.asarray([[[0.0, 0.0]] * 3, [[5.0, 5.0]] * 3])
    q = jnp.asarray([[[0.5, 0.0], [4.0, 4.0]], [[5.0, 4.0], [6.0, 6.0]]])
    np.testing.assert_allclose(C.centroid_accuracy(ref, q), 0.75)
