"""Prompt-DT's parts: the token layout and causal mask, the return-to-go and prompt sampling,
the action loss's equation, and a learner that fits behaviour on a small problem."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxomrl.data.sampler import TaskData, episode_last, returns_to_go, take, window_positions
from jaxomrl.learners.gradients import scan_updates
from jaxomrl.learners.prompt_dt import Inference, PromptDTConfig, best_return, make_prompt_dt
from jaxomrl.losses.sequence import masked_action_mse
from jaxomrl.nets.decision_transformer import (PromptDecisionTransformer, attention_mask,
                                               interleave)
from jaxomrl.types import Segment
from scripted_data import scripted_point_robot_dataset, transition_data

O, A = 4, 2


def _segment(n, key):
    k1, k2, k3 = jax.random.split(key, 3)
    return Segment(rtg=jax.random.normal(k1, (n,)), obs=jax.random.normal(k2, (n, O)),
                   action=jnp.tanh(jax.random.normal(k3, (n, A))), timestep=jnp.arange(n) + 3,
                   mask=jnp.ones(n, bool))


def test_token_layout_and_causal_mask():
    r, s, a = (jnp.full((3, 1), float(i)) + 10 * jnp.arange(3)[:, None] for i in range(3))
    tokens = interleave(r, s, a)[:, 0]
    np.testing.assert_array_equal(tokens, [0, 1, 2, 10, 11, 12, 20, 21, 22])  # R, s, a per step
    valid = jnp.asarray([False, True, True, True])
    want = np.array([[i == j or (j <= i and valid[j]) for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(attention_mask(valid), want)


def test_predictions_see_the_past_and_the_prompt_but_not_their_own_action():
    """Step t's prediction changes with R_t and s_t and anything before, never with a_t or
    later steps; a fully masked prompt is the same as none; the prompt's content matters."""
    k, p = 6, 3
    model = PromptDecisionTransformer(A, 50, width=16, num_layers=2, num_heads=2)
    seg, prompt = _segment(k, jax.random.PRNGKey(0)), _segment(p, jax.random.PRNGKey(1))
    params = model.init(jax.random.PRNGKey(2), seg, prompt)
    out = model.apply(params, seg, prompt)
    assert out.shape == (k, A) and np.all(np.abs(out) < 1)
    changed = lambda s: np.abs(np.asarray(model.apply(params, s, prompt) - out)).max(1) > 1e-6
    t = 3
    assert changed(seg.replace(action=seg.action.at[t].add(0.5))).tolist() == [i > t for i in
                                                                               range(k)]
    for field in ("obs", "rtg"):
        moved = seg.replace(**{field: getattr(seg, field).at[t].add(0.5)})
        assert changed(moved).tolist() == [i >= t for i in range(k)], field
    masked = prompt.replace(mask=jnp.zeros(p, bool))
    np.testing.assert_allclose(model.apply(params, seg, masked), model.apply(params, seg, None),
                               atol=1e-6)
    other = _segment(p, jax.random.PRNGKey(5))
    assert np.abs(np.asarray(model.apply(params, seg, other) - out)).max() > 1e-4
    # padding at the segment's start is never read by the valid steps
    padded = seg.replace(mask=seg.mask.at[:2].set(False))
    garbage = padded.replace(obs=padded.obs.at[:2].set(99.0))
    np.testing.assert_allclose(model.apply(params, padded, prompt)[2:],
                               model.apply(params, garbage, prompt)[2:], atol=1e-5)


def test_returns_to_go_and_prompts_from_episode_ends():
    rng = np.random.default_rng(0)
    n = 12
    f = lambda *s: jnp.asarray(rng.normal(size=(2, n) + s), jnp.float32)
    data = transition_data(f(O), f(A), f(O), f(), episode_length=4)
    rtg = np.asarray(returns_to_go(data))
    r = np.asarray(data.transitions.reward)
    want = np.stack([np.concatenate([np.cumsum(ep[::-1])[::-1] for ep in row.reshape(3, 4)])
                     for row in r])
    np.testing.assert_allclose(rtg, want, rtol=1e-5)
    assert np.asarray(episode_last(data))[0].tolist() == [i % 4 == 3 for i in range(n)]
    tasks, pos, mask = window_positions(data, jax.random.PRNGKey(0), 32, 3, episode_ends=True)
    assert set(np.asarray(pos[..., -1]).ravel() % 4) == {3} and bool(mask.all())
    np.testing.assert_allclose(take(jnp.asarray(rtg), tasks, pos)[..., -1],
                               take(data.transitions.reward, tasks, pos)[..., -1], rtol=1e-6)


def test_masked_action_mse_is_its_equation():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(3, 5, A)), rng.normal(size=(3, 5, A))
    mask = rng.random((3, 5)) > 0.4
    want = np.sum(((pred - target) ** 2)[mask]) / (mask.sum() * A)
    np.testing.assert_allclose(masked_action_mse(jnp.asarray(pred), jnp.asarray(target),
                                                 jnp.asarray(mask)), want, rtol=1e-5)
    with pytest.raises(ValueError, match="must be"):
        masked_action_mse(jnp.zeros((3, A)), jnp.zeros((3, A)), jnp.ones((4,), bool))


def test_prompt_dt_learns_the_behaviour_of_a_small_problem():
    """Noisy goal-directed point-robot behaviour of 12 tasks: after 300 steps the held-out
    action error of a tiny Prompt-DT is far below its initial one and below that of predicting
    each task's mean action."""
    ds = scripted_point_robot_dataset()
    data = TaskData.from_dataset(ds.select_tasks(~ds.is_test))
    cfg = PromptDTConfig(width=32, num_layers=2, context=8, prompt_length=4, max_timestep=64,
                         learning_rate=1e-3, warmup_steps=20, batch_size=8, meta_batch=6)
    obs_dim = data.transitions.obs.shape[-1]
    learner = make_prompt_dt(cfg, obs_dim, A)
    source = learner.make_source(data)
    key = jax.random.PRNGKey(0)
    state0 = learner.init(key)
    state, metrics = jax.jit(scan_updates, static_argnums=(0, 4))(
        learner.update, state0, source, key, 300)
    eval_cfg = dataclasses.replace(cfg, meta_batch=None, batch_size=32)
    batch = make_prompt_dt(eval_cfg, obs_dim, A).sample_batch(source, jax.random.PRNGKey(9))
    err = lambda params: float(learner.loss(params, batch, None)[0])   # deterministic
    seg = batch[0]
    w = seg.mask[..., None]
    task_mean = jnp.sum(seg.action * w, axis=(1, 2)) / jnp.sum(w, axis=(1, 2))
    baseline = float(masked_action_mse(jnp.broadcast_to(task_mean[:, None, None],
                                                        seg.action.shape), seg.action, seg.mask))
    before, after = err(state0.params), err(state.params)
    assert after < 0.5 * before and after < baseline, (before, after, baseline)
    assert np.all(np.isfinite(np.asarray(metrics["action_mse"])))


def _tiny_inference(data, context=6, prompt_length=4, key=0):
    cfg = PromptDTConfig(width=16, num_layers=2, num_heads=2, context=context,
                         prompt_length=prompt_length, max_timestep=32, rtg_scale=7.0)
    learner = make_prompt_dt(cfg, data.transitions.obs.shape[-1], A)
    source = learner.make_source(data)
    inference = Inference(params=learner.init(jax.random.PRNGKey(key)).params,
                          obs_moments=source.obs_moments,
                          target_return=best_return(data, source.rtg))
    return learner, source, inference


def test_prompt_context_read_from_an_episode_is_that_episodes_training_prompt():
    """Reading an episode transition by transition (the protocols' context update), the prompt
    is the episode's last P steps with their returns-to-go to its end, as the training prompts
    are sampled; it is empty before the first episode ends and replaced by the next one's."""
    ds = scripted_point_robot_dataset()
    data = TaskData.from_dataset(ds.select_tasks(~ds.is_test))
    learner, source, inference = _tiny_inference(data)
    p, scale = learner.config.prompt_length, learner.config.rtg_scale
    task, h = 3, 20
    tr = jax.tree_util.tree_map(lambda x: x[task], data.transitions)
    assert bool(tr.truncated[h - 1]) and not bool(tr.truncated[: h - 1].any())
    ctx = learner.context_init()
    prompts = []
    for i in range(2 * h):
        ctx = learner.context_update(inference, ctx, jax.tree_util.tree_map(lambda x: x[i], tr))
        prompts.append(learner.context_embed(inference, ctx, tr.obs[i]))
    assert not bool(prompts[h - 2].mask.any())          # no episode has ended yet
    for end, prompt in ((h - 1, prompts[h - 1]), (2 * h - 1, prompts[-1])):
        pos = np.arange(end - p + 1, end + 1)
        np.testing.assert_array_equal(prompt.mask, np.ones(p, bool))
        np.testing.assert_allclose(prompt.rtg, source.rtg[task, pos] / scale, rtol=1e-5)
        np.testing.assert_allclose(prompt.obs, (tr.obs[pos] - source.obs_moments[0])
                                   / source.obs_moments[1], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(prompt.action, tr.action[pos])
        np.testing.assert_array_equal(prompt.timestep, data.timestep[task, pos])
    # between episode ends the prompt stays that of the last ended episode
    np.testing.assert_array_equal(prompts[h + 5].rtg, prompts[h - 1].rtg)


def test_policy_memory_rebuilds_the_training_segment_of_every_step():
    """Replaying a data episode through the policy's memory (return-to-go started at that
    episode's return) gives at every step the action the model predicts for the training-format
    segment ending there (left-padded window of K steps): acting and training read the same
    token layout, the memory resets at an episode's start, and the prediction never reads the
    current action."""
    ds = scripted_point_robot_dataset()
    data = TaskData.from_dataset(ds.select_tasks(~ds.is_test))
    learner, source, inference = _tiny_inference(data)
    k, scale = learner.config.context, learner.config.rtg_scale
    task, start, h = 5, 20, 20
    inference = inference.replace(target_return=source.rtg[task, start])
    policy = learner.make_policy(inference)
    prompt = learner.sample_batch(source, jax.random.PRNGKey(3))[1]
    prompt = jax.tree_util.tree_map(lambda x: x[0, 0], prompt)
    memory = policy.init()
    act, predict = jax.jit(policy.act), jax.jit(learner.predict)
    moments = source.obs_moments
    for t in range(h):
        i = start + t
        pos = np.arange(i - k + 1, i + 1)
        valid = pos >= start
        pos = np.maximum(pos, 0)
        seg = Segment(rtg=source.rtg[task, pos] / scale,
                      obs=(data.transitions.obs[task, pos] - moments[0]) / moments[1],
                      action=data.transitions.action[task, pos],
                      timestep=data.timestep[task, pos], mask=jnp.asarray(valid))
        want = predict(inference.params, seg, prompt)[-1]
        got = act(memory, data.transitions.obs[task, i], prompt, None)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"step {t}")
        memory = policy.update(memory, data.transitions.obs[task, i],
                               data.transitions.action[task, i],
                               data.transitions.reward[task, i])
    fresh = policy.init()
    assert float(fresh["rtg"]) == pytest.approx(float(source.rtg[task, start]) / scale)
    assert float(best_return(data, source.rtg)) == pytest.approx(
        float(jnp.max(jnp.where(data.timestep == 0, source.rtg, -jnp.inf))))
