"""The learner contract (jaxomrl.learners.base): every learner in ``jaxomrl.learners`` and every
phase of every algorithm is ``init(key, batch) -> state`` and ``update(state, batch, key) ->
(state, metrics)``, called in that order on tiny inputs, jittable, pure, and learning."""
import importlib
import inspect
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxomrl.learners
from jaxomrl import algos, envs
from jaxomrl.algos.base import FIRST_INPUTS
from jaxomrl.data.sampler import TaskData, run_data
from jaxomrl.learners import base
from jaxomrl.learners.dynamics import DynamicsConfig, make_dynamics
from jaxomrl.learners.encoder import EncoderConfig, make_encoder_learner
from jaxomrl.learners.iql import IQLConfig, make_iql
from jaxomrl.learners.online_sac import OnlineSACConfig, make_online_sac
from jaxomrl.learners.prompt_dt import PromptDTConfig, make_prompt_dt
from jaxomrl.learners.sac import SACConfig, make_sac
from jaxomrl.types import TaskBatch, Transition
from scripted_data import scripted_point_robot_dataset

OBS, ACT = 2, 2


def _transitions(key, n=32, obs=OBS, act=ACT):
    k = jax.random.split(key, 4)
    return Transition(obs=jax.random.normal(k[0], (n, obs)),
                      action=jax.random.uniform(k[1], (n, act), minval=-1, maxval=1),
                      reward=jax.random.normal(k[2], (n,)),
                      next_obs=jax.random.normal(k[3], (n, obs)),
                      terminated=jnp.zeros((n,), bool), truncated=jnp.zeros((n,), bool))


def _train_data():
    ds = scripted_point_robot_dataset()
    return TaskData.from_dataset(ds.select_tasks(~ds.is_test))


def _learners():
    """``{factory name: (learner, batch)}`` for every learner factory of jaxomrl.learners."""
    tr = _transitions(jax.random.PRNGKey(1))
    z = jax.random.normal(jax.random.PRNGKey(2), (32, 3))
    data = _train_data()
    sac_cfg = SACConfig(hidden=(16, 16), batch_size=32)
    dt = make_prompt_dt(PromptDTConfig(width=16, num_layers=1, context=4, prompt_length=2,
                                       max_timestep=64, batch_size=2, meta_batch=2), OBS, ACT)
    online_cfg = OnlineSACConfig(sac=sac_cfg, num_envs=2, buffer_capacity=64, warmup_steps=0,
                                 updates_per_iteration=1, train_reward="dense_reward")
    family = envs.make("point_robot_sparse")
    return {
        "make_sac": (make_sac(sac_cfg, OBS, ACT), tr),
        "make_sac[concat]": (make_sac(SACConfig(hidden=(16, 16), head="concat"), OBS, ACT, 3),
                             TaskBatch(tr, z)),
        "make_iql": (make_iql(IQLConfig(hidden=(16, 16)), OBS, ACT), tr),
        "make_dynamics": (make_dynamics(DynamicsConfig(hidden=(16,), ensemble_size=2,
                                                       batch_size=16), OBS, ACT), data),
        "make_encoder_learner": (make_encoder_learner(
            EncoderConfig.make("mlp", hidden=16, latent_dim=3, window=4, contexts_per_task=2,
                          infonce_weight=1.0), OBS, ACT), data),
        "make_prompt_dt": (dt, dt.make_source(data)),
        "make_online_sac": (make_online_sac(family, online_cfg),
                            family.sample_tasks(jax.random.PRNGKey(3), 1)[0]),
    }


def _factories():
    """Every ``make_*`` of a ``jaxomrl.learners`` module that returns a learner."""
    out = set()
    for info in pkgutil.iter_modules(jaxomrl.learners.__path__):
        module = importlib.import_module(f"jaxomrl.learners.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            ret = inspect.signature(fn).return_annotation
            if name.startswith("make_") and fn.__module__ == module.__name__ and \
                    ret not in (inspect.Signature.empty, "None"):
                text = ret if isinstance(ret, str) else getattr(ret, "__name__", "")
                if text[:1].isupper():
                    out.add(name)
    return out


def _check(learner, batch, uses_key=True):
    base.check_signature(learner)
    key = jax.random.PRNGKey(0)
    state = learner.init(key, batch)
    update = jax.jit(learner.update)
    new, metrics = update(state, batch, key)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
    assert [x.shape for x in jax.tree_util.tree_leaves(new)] == \
        [x.shape for x in jax.tree_util.tree_leaves(state)]
    # metrics: named arrays (NaN is allowed: "no value yet", e.g. no episode ended)
    assert isinstance(metrics, dict) and metrics
    assert all(isinstance(k, str) and hasattr(v, "shape") for k, v in metrics.items())
    leaves = lambda s: [np.asarray(x) for x in jax.tree_util.tree_leaves(s)]
    assert all(np.isfinite(x).all() for x in leaves(new) if x.dtype.kind == "f")
    changed = lambda a, b: any(x.shape != y.shape or not np.array_equal(x, y)
                               for x, y in zip(leaves(a), leaves(b)))
    assert changed(new, state)                                   # it learnt something
    again, _ = update(state, batch, key)
    assert not changed(again, new)                               # pure: same inputs, same state
    if uses_key:                                                 # the key is the randomness
        other, _ = update(state, batch, jax.random.PRNGKey(1))
        assert changed(other, new)


def test_the_signature_check_refuses_another_argument_order():
    good = base.PlainLearner(init=lambda key, batch=None: 0,
                             update=lambda state, batch, key: (state, {}))
    base.check_signature(good)
    for bad in (base.PlainLearner(init=lambda key: 0, update=good.update),
                base.PlainLearner(init=good.init, update=lambda state, key, batch: (state, {})),
                base.PlainLearner(init=good.init,
                                  update=lambda state, key, aux, data: (state, {}))):
        with pytest.raises(TypeError, match="contract"):
            base.check_signature(bad)
    with pytest.raises(TypeError):
        base.check_signature(object())


def test_every_learner_follows_the_contract():
    learners = _learners()
    assert {name.split("[")[0] for name in learners} == _factories()   # none left out
    for name, (learner, batch) in learners.items():
        assert isinstance(learner, base.Learner), name
        # IQL's step draws nothing; OnlineSAC draws from its own stream in the state
        # (resumable collections): both take the key and ignore it
        _check(learner, batch, uses_key=name not in ("make_iql", "make_online_sac"))


@pytest.mark.parametrize("spec", ["r2pgo", "prompt_dt", "reda"])
def test_every_phase_is_a_learner_on_its_batch(spec):
    """Phases are learners plugged in unchanged: ``phase.learner`` follows the contract on
    ``phase.batch(aux, data)`` (offline meta-RL's encoder and policy, Prompt-DT's transformer,
    ReDA's models and adversary)."""
    from test_reda import _reda_settings
    ds = scripted_point_robot_dataset()
    data, _ = run_data(ds, ds)
    algorithm = algos.make(spec, _reda_settings(), ds.make_family(), int((~ds.is_test).sum()))
    inputs, key = FIRST_INPUTS, jax.random.PRNGKey(0)
    for phase in algorithm.phases:
        aux = phase.prepare(inputs, data)
        batch = phase.batch(aux, data)
        _check(phase.learner, batch)
        inputs = phase.output(phase.learner.init(key, batch), aux)
