"""Probabilistic dynamics-model ensembles, one per task, trained together (ReDA §3.2, MBPO, MOPO).

``make_dynamics(config, obs_dim, action_dim)`` returns ``Dynamics`` with pure functions:

    state = init(key, data)                       # data: TaskData [T, N]; T tasks x E members
    state, metrics = update(state, data, key)     # one round (below); metrics [T, E]
    state, metrics = fit(state, data, key, num_rounds)   # early-stopped rounds; [T, E, R]
    mean, logvar = predict(params, norm, obs, action)         # one task: [E, ..., out]
    next_obs, reward, u = step(params, norm, obs, action, key)  # one task, one sampled step
    u = uncertainty(params, norm, obs, action)                  # the u of step, unsampled
    transitions, u = rollout(params, norm, act, starts, key, length)   # branch rollouts
    errors = holdout_error(state, data)                        # [T, E], original units
    done = stopped(state)          # every member early-stopped: more rounds change no output

(``params``, ``norm``: one task's slice of ``state.best``, ``state.norm``; ``vmap`` the last
four over tasks.) Each member is a Gaussian MLP on the normalised input ``[s, a]`` (actions in
[-1, 1]) predicting the normalised target ``[s' - s, r]`` (``target="transition"``;
``"next_state"``: ``s' - s``; ``"reward"``: ``r``, e.g. ReDA's reward model shared by all
tasks, trained on ``pool_tasks(data)``) with a soft-bounded log-variance (learned bounds, MBPO's
penalty). Every task's transitions are split once into training and held-out parts
(``holdout_fraction``); inputs / targets are normalised with the training part's statistics.
Training alternates ``eval_every`` minibatch steps per member (each member its own batches) with a
held-out evaluation; each member keeps the parameters of its best held-out score (``best``;
``holdout_metric``: Gaussian NLL by default, or MSE) and
stops updating after ``patience`` evaluations without improvement (early stopping inside one
jitted program). ``step`` samples a member uniformly per call (MBPO) and returns MOPO's
uncertainty ``u(s, a) = max_members ||std of s'||``.

Everything is a ``vmap`` of single-member functions with per-member keys over tasks x members, so
an ensemble trained together equals its members trained one by one (tested).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxomrl.errors import check_finite_fields
from jaxomrl.data.sampler import TaskData
from jaxomrl.learners.base import InitFn, UpdateFn
from jaxomrl.learners.gradients import gradient_step
from jaxomrl.losses import dynamics as dyn_losses
from jaxomrl.nets.mlp import MLP
from jaxomrl.types import Policy, Transition


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """Defaults: ReDA appendix B.5 (3 hidden layers of 200, ensemble of 3, lr 1e-3) / MBPO."""

    hidden: Tuple[int, ...] = (200, 200, 200)
    ensemble_size: int = 3
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 256
    holdout_fraction: float = 0.1
    max_holdout: int = 2000          # held-out transitions scored per evaluation (first ones)
    eval_every: int = 100            # minibatch steps between held-out evaluations
    patience: int = 5                # evaluations without improvement before a member stops
    bound_weight: float = 0.01
    init_max_logvar: float = 0.5
    init_min_logvar: float = -10.0
    target: str = "transition"       # transition: [s' - s, r] | next_state: s' - s | reward: r
    # u of step / rollout: "aleatoric" = max over members of ||std of s'|| (ReDA / MOPO);
    # "disagreement" = ||std over members of the predicted mean s'|| (epistemic).
    uncertainty: str = "aleatoric"
    # Held-out score that early stopping and the kept ``best`` parameters follow:
    # "nll" = Gaussian NLL of the normalised targets (a proper score of the probabilistic model,
    # mean and variance); "mse" = error of the mean only (MBPO). With rare hard-to-predict
    # transitions (e.g. a cart hitting its joint limit) the MSE is ruled by them and lowest
    # early, while the variance is still wide everywhere else; the NLL keeps improving as the
    # model sharpens where it can.
    holdout_metric: str = "nll"

    def __post_init__(self):
        check_finite_fields(self)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {sorted(TARGETS)}, got {self.target!r}")
        if self.uncertainty not in UNCERTAINTIES:
            raise ValueError(f"uncertainty must be 'aleatoric' or 'disagreement', got "
                             f"{self.uncertainty!r}")
        if self.holdout_metric not in ("nll", "mse"):
            raise ValueError(f"holdout_metric must be 'nll' or 'mse', got {self.holdout_metric!r}")
        if self.ensemble_size < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("ensemble_size, batch_size and eval_every must be >= 1")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")


class GaussianMLP(nn.Module):
    """``x [..., in] -> (mean [..., out], logvar [..., out])`` with learned log-variance bounds."""

    hidden: Tuple[int, ...]
    out_dim: int
    init_max_logvar: float = 0.5
    init_min_logvar: float = -10.0

    @nn.compact
    def __call__(self, x):
        h = MLP(self.hidden, 2 * self.out_dim, activation=nn.swish)(x)
        mean, raw = jnp.split(h, 2, axis=-1)
        max_lv = self.param("max_logvar", nn.initializers.constant(self.init_max_logvar),
                            (self.out_dim,))
        min_lv = self.param("min_logvar", nn.initializers.constant(self.init_min_logvar),
                            (self.out_dim,))
        return mean, dyn_losses.soft_bound_logvar(raw, max_lv, min_lv)


@struct.dataclass
class Normalizer:
    in_mean: jax.Array
    in_std: jax.Array
    out_mean: jax.Array
    out_std: jax.Array


@struct.dataclass
class MemberState:
    params: Any
    opt_state: Any
    best: Any
    best_error: jax.Array      # held-out score (``holdout_metric``, normalised targets) of ``best``
    since_best: jax.Array      # evaluations since the last improvement
    step: jax.Array


@struct.dataclass
class DynamicsState:
    """``members``: leaves ``[T, E, ...]``; ``norm``: ``[T, ...]``; ``split``: per-task
    permutation of the transitions ``[T, N]`` (held-out part first)."""

    members: MemberState
    norm: Normalizer
    split: jax.Array

    @property
    def best(self):
        return self.members.best


class Dynamics(NamedTuple):
    init: InitFn
    update: UpdateFn
    fit: Callable
    predict: Callable
    step: Callable
    rollout: Callable
    uncertainty: Callable
    holdout_error: Callable
    stopped: Callable
    member_init: Callable
    member_fit: Callable
    config: DynamicsConfig


TARGETS = ("transition", "next_state", "reward")
UNCERTAINTIES = ("aleatoric", "disagreement")


def model_io(data: TaskData, target: str = "transition") -> Tuple[jax.Array, jax.Array]:
    """Inputs ``[s, a]`` and targets (``[s' - s, r]``, ``s' - s`` or ``r``) of every transition,
    ``[T, N, ...]``."""
    tr = data.transitions
    inputs = jnp.concatenate([tr.obs, tr.action], -1)
    parts = {"transition": [tr.next_obs - tr.obs, tr.reward[..., None]],
             "next_state": [tr.next_obs - tr.obs], "reward": [tr.reward[..., None]]}[target]
    return inputs, jnp.concatenate(parts, -1)


def pool_tasks(data: TaskData) -> TaskData:
    """All tasks' transitions as one task ``[1, T * N]`` (ReDA's reward model, shared by the
    tasks, is trained on the joint dataset)."""
    return jax.tree_util.tree_map(lambda x: x.reshape((1, -1) + x.shape[2:]) if x.ndim >= 2
                                  else x[:1], data)


def with_task_input(data: TaskData) -> TaskData:
    """Every task's transitions in one pool ``[1, T * N]`` with the task's one-hot appended to
    the action: the data of one task-conditioned model, whose input is ``[s, a, onehot(i)]``
    (``make_dynamics(config, obs_dim, action_dim + T)``; :func:`task_input` builds its
    action)."""
    tr = data.transitions
    t, n = tr.reward.shape
    onehot = jnp.broadcast_to(jnp.eye(t, dtype=tr.action.dtype)[:, None], (t, n, t))
    return pool_tasks(data.replace(transitions=tr.replace(
        action=jnp.concatenate([tr.action, onehot], -1))))


def task_input(action: jax.Array, task, num_tasks: int) -> jax.Array:
    """A task-conditioned model's action input: ``action [..., A]`` with ``onehot(task)``
    appended (:func:`with_task_input`)."""
    onehot = jax.nn.one_hot(task, num_tasks, dtype=action.dtype)
    return jnp.concatenate([action, jnp.broadcast_to(onehot, action.shape[:-1] + (num_tasks,))],
                           -1)


def make_dynamics(config: DynamicsConfig, obs_dim: int, action_dim: int) -> Dynamics:
    in_dim = obs_dim + action_dim
    out_dim = {"transition": obs_dim + 1, "next_state": obs_dim, "reward": 1}[config.target]
    net = GaussianMLP(tuple(config.hidden), out_dim, config.init_max_logvar,
                      config.init_min_logvar)
    tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    e = config.ensemble_size

    def holdout_size(n: int) -> int:
        return max(1, min(int(n * config.holdout_fraction), n - 1))

    def normalizer(inputs, targets) -> Normalizer:
        std = lambda x: jnp.maximum(jnp.std(x, 0), 1e-6)
        return Normalizer(jnp.mean(inputs, 0), std(inputs), jnp.mean(targets, 0), std(targets))

    # ---- one member of one task ------------------------------------------------------------
    def member_init(key) -> MemberState:
        params = net.init(key, jnp.zeros((1, in_dim)))
        return MemberState(params=params, opt_state=tx.init(params), best=params,
                           best_error=jnp.asarray(jnp.inf), since_best=jnp.zeros((), jnp.int32),
                           step=jnp.zeros((), jnp.int32))

    def holdout_scores(params, norm, x, y):
        """``{"mse", "nll"}`` of the normalised held-out targets."""
        mean, logvar = net.apply(params, (x - norm.in_mean) / norm.in_std)
        target = (y - norm.out_mean) / norm.out_std
        return {"mse": jnp.mean((mean - target) ** 2),
                "nll": dyn_losses.gaussian_nll(mean, logvar, target)}

    def member_fit(m: MemberState, key, norm: Normalizer, x_train, y_train, x_hold, y_hold,
                     num_evaluations: int):
        """``num_evaluations`` rounds of (``eval_every`` minibatch steps, held-out evaluation);
        a member past its patience keeps its parameters. Returns (state, metrics per round)."""
        xn = (x_train - norm.in_mean) / norm.in_std
        yn = (y_train - norm.out_mean) / norm.out_std

        def loss_fn(params, idx):
            mean, logvar = net.apply(params, xn[idx])
            p = params["params"]
            return dyn_losses.ensemble_member_loss(mean, logvar, yn[idx], p["max_logvar"],
                                                   p["min_logvar"], config.bound_weight)

        def sgd(m, k):
            idx = jax.random.randint(k, (config.batch_size,), 0, xn.shape[0])
            params, opt_state, _, metrics = gradient_step(loss_fn, tx, m.params, m.opt_state, idx)
            new = m.replace(params=params, opt_state=opt_state, step=m.step + 1)
            stopped = m.since_best >= config.patience
            return optax.tree_utils.tree_where(stopped, m, new), metrics

        def round_(m, k):
            m, metrics = jax.lax.scan(sgd, m, jax.random.split(k, config.eval_every))
            scores = holdout_scores(m.params, norm, x_hold, y_hold)
            err = scores[config.holdout_metric]
            better = err < m.best_error
            m = m.replace(best=optax.tree_utils.tree_where(better, m.params, m.best),
                          best_error=jnp.where(better, err, m.best_error),
                          since_best=jnp.where(better, 0, m.since_best + 1))
            out = {k_: jnp.mean(v) for k_, v in metrics.items()}
            out.update(holdout_mse=scores["mse"], holdout_nll=scores["nll"],
                       stopped=(m.since_best >= config.patience))
            return m, out

        return jax.lax.scan(round_, m, jax.random.split(key, num_evaluations))

    # ---- all tasks x members -----------------------------------------------------------------
    def split_data(state_split, data: TaskData):
        inputs, targets = model_io(data, config.target)
        take = jax.vmap(lambda x, idx: x[idx])
        h = holdout_size(inputs.shape[1])
        hold = state_split[:, : min(h, config.max_holdout)]
        train = state_split[:, h:]
        return (take(inputs, train), take(targets, train), take(inputs, hold),
                take(targets, hold))

    def init(key, batch: TaskData) -> DynamicsState:
        """Fresh ensembles on ``batch``'s tasks: its hold-out split and normalisers."""
        data = batch
        t, n = data.transitions.reward.shape
        if n < 2:
            raise ValueError("dynamics models need at least 2 transitions per task")
        k_split, k_init = jax.random.split(key)
        split = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(k_split, t))
        x_train, y_train, _, _ = split_data(split, data)
        norm = jax.vmap(normalizer)(x_train, y_train)
        keys = jax.random.split(k_init, (t, e))
        members = jax.vmap(jax.vmap(member_init))(keys)
        return DynamicsState(members=members, norm=norm, split=split)

    def fit(state: DynamicsState, data: TaskData, key, num_evaluations: int):
        """Trains every task's ensemble for ``num_evaluations`` rounds. Metrics ``[T, E, R]``."""
        x_train, y_train, x_hold, y_hold = split_data(state.split, data)
        t = x_train.shape[0]
        keys = jax.random.split(key, (t, e))
        per_member = lambda m, k, norm, a, b, c, d: member_fit(m, k, norm, a, b, c, d,
                                                                 num_evaluations)
        members, metrics = jax.vmap(jax.vmap(per_member, in_axes=(0, 0, None, None, None, None,
                                                                  None)))(
            state.members, keys, state.norm, x_train, y_train, x_hold, y_hold)
        return state.replace(members=members), metrics

    def update(state: DynamicsState, batch: TaskData, key):
        """One round of :func:`fit` on ``batch`` (the learner's step). Metrics ``[T, E]``."""
        state, metrics = fit(state, batch, key, 1)
        return state, jax.tree_util.tree_map(lambda m: m[..., 0], metrics)

    def stopped(state: DynamicsState) -> jax.Array:
        """``[]`` bool: every member of every task is past its patience. Further rounds then
        change no member's parameters, optimiser or ``best`` (a stopped member skips its SGD
        steps, and its unchanged parameters score as before: never better than ``best``), only
        the count of evaluations since the best."""
        return jnp.all(state.members.since_best >= config.patience)

    def holdout_error(state: DynamicsState, data: TaskData) -> jax.Array:
        """``[T, E]`` held-out MSE of the best parameters, in the targets' original units."""
        _, _, x_hold, y_hold = split_data(state.split, data)

        def one(params, norm, x, y):
            mean, _ = predict(params, norm, x[:, : obs_dim], x[:, obs_dim:])
            return jnp.mean((mean - y) ** 2, axis=(-2, -1))
        return jax.vmap(one)(state.best, state.norm, x_hold, y_hold)

    def predict(params, norm: Normalizer, obs, action):
        """One task's ensemble (``params`` leaves ``[E, ...]``): per-member ``(mean, logvar)``
        ``[E, ..., out]`` of the target (e.g. ``[s' - s, r]``) in original units."""
        x = (jnp.concatenate([obs, action], -1) - norm.in_mean) / norm.in_std
        mean, logvar = jax.vmap(lambda p: net.apply(p, x))(params)
        return (mean * norm.out_std + norm.out_mean,
                logvar + 2.0 * jnp.log(norm.out_std))

    def uncertainty(params, norm: Normalizer, obs, action, kind: Optional[str] = None):
        """MOPO's uncertainty of one task's ensemble at ``(obs, action)`` (leading axes
        broadcast): ``kind="aleatoric"``: ``max_members ||std of s'||`` (MOPO / ReDA);
        ``"disagreement"``: the norm of the members' std of the mean s' (epistemic); default
        ``config.uncertainty``."""
        kind = kind or config.uncertainty
        if kind not in UNCERTAINTIES:
            raise ValueError(f"kind must be one of {UNCERTAINTIES}, got {kind!r}")
        return uncertainty_of(*predict(params, norm, obs, action), kind)

    def uncertainty_of(mean, logvar, kind: str):
        """u from the members' predictions ``[E, ..., out]`` (:func:`uncertainty`)."""
        if kind == "aleatoric":
            return jnp.max(jnp.linalg.norm(jnp.exp(0.5 * logvar[..., :obs_dim]), axis=-1),
                           axis=0)
        return jnp.linalg.norm(jnp.std(mean[..., :obs_dim], axis=0), axis=-1)

    def step(params, norm: Normalizer, obs, action, key):
        """One sampled model transition of one task (unbatched ``obs``, ``action``):
        ``(next_obs, reward, uncertainty)`` from a uniformly drawn member's Gaussian sample, and
        ``u`` of :func:`uncertainty` (``config.uncertainty``). ``reward`` is NaN for a
        ``next_state`` model (predict it with a ``reward`` model)."""
        if config.target == "reward":
            raise ValueError("step needs a transition or next_state model")
        k_member, k_noise = jax.random.split(key)
        mean, logvar = predict(params, norm, obs, action)              # [E, out]
        std = jnp.exp(0.5 * logvar)
        member = jax.random.randint(k_member, (), 0, mean.shape[0])
        sample = mean[member] + std[member] * jax.random.normal(k_noise, mean.shape[1:])
        u = uncertainty_of(mean, logvar, config.uncertainty)
        reward = sample[obs_dim] if config.target == "transition" else jnp.asarray(jnp.nan)
        return obs + sample[:obs_dim], reward, u

    def rollout(params, norm: Normalizer, policy: Policy, starts, key, length: int,
                reward_fn: Optional[Callable] = None, terminal_fn: Optional[Callable] = None,
                max_uncertainty=None, z=None):
        """Branch rollouts of ``length`` model steps from each start state ``starts [S, obs]``
        of one task (``policy(obs, z, key) -> action in [-1, 1]``, a ``jaxomrl.types.Policy``,
        acting on the context ``z`` or None; ``reward_fn(obs, action)`` replaces
        the model's reward, e.g. a shared reward model). Returns ``(Transition [S, length],
        uncertainty [S, length])``; ``vmap`` over tasks for every task's models at once.
        ``terminal_fn(next_obs) -> bool`` (e.g. ``TaskFamily.terminal_obs``) ends a rollout:
        ``terminated`` is set from the step that lands in a terminal state on, so the steps
        after it (still simulated, for fixed shapes) are recognisable and never bootstrap.
        ``max_uncertainty`` (a scalar, may be traced) ends a rollout the same way at the first
        step whose ``u`` exceeds it (MOReL's HALT: the models are not trusted beyond)."""
        def one(start, k):
            def body(carry, k):
                obs, ended = carry
                k_act, k_step = jax.random.split(k)
                action = policy(obs, z, k_act)
                nxt, reward, u = step(params, norm, obs, action, k_step)
                if reward_fn is not None:
                    reward = reward_fn(obs, action)
                if terminal_fn is not None:
                    ended = ended | terminal_fn(nxt)
                if max_uncertainty is not None:
                    ended = ended | (u > max_uncertainty)
                tr = Transition(obs=obs, action=action, reward=reward, next_obs=nxt,
                                terminated=ended, truncated=jnp.zeros((), bool))
                return (nxt, ended), (tr, u)
            return jax.lax.scan(body, (start, jnp.zeros((), bool)),
                                jax.random.split(k, length))[1]
        return jax.vmap(one)(starts, jax.random.split(key, starts.shape[0]))

    return Dynamics(init=init, update=update, fit=fit, predict=predict, step=step, rollout=rollout,
                    uncertainty=uncertainty,
                    holdout_error=holdout_error, stopped=stopped, member_init=member_init,
                    member_fit=member_fit, config=config)
