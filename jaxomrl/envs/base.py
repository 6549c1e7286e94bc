"""The task-family API: a distribution over MDPs with shared state and action spaces.

A family is a static Python object (configuration, compiled simulator constants). Everything that
varies per task lives in a :class:`Task` pytree and everything that varies per environment lives in
an :class:`EnvState` pytree, so the pure functions

    reset(task, key) -> EnvState
    step(task, state, action) -> EnvState
    step_autoreset(task, state, action) -> EnvState

can be ``jax.vmap``-ped over tasks and over parallel environments and ``jax.jit``-ed over whole
episodes (``lax.scan``). Shapes below are for one environment; batch axes lead.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxomrl.types import Policy, Transition, scale_action


@struct.dataclass
class Task:
    """One task (or a batch of tasks, with leading axes on every leaf).

    Attributes:
      params: the physical parameters that define the task, as stored in datasets
        (e.g. ``goal_angle``, ``target_velocity``, per-element multipliers). Dict of arrays.
      attributes: ``[attr_dim]`` float vector p_i describing the task (R2PGO eq. 4).
      model: simulator fields that differ from the family's nominal model, keyed by
        ``mjx.Model.tree_replace`` path (empty for pure-JAX families).
      family: name of the family the task belongs to (static, checked by every call).
    """

    params: Dict[str, jax.Array]
    attributes: jax.Array
    model: Dict[str, jax.Array]
    family: str = struct.field(pytree_node=False)

    @property
    def num_tasks(self) -> int:
        """Size of the leading batch axis (only for a 1-D batch of tasks)."""
        return int(self.attributes.shape[0]) if self.attributes.ndim == 2 else 1

    def __getitem__(self, index) -> "Task":
        """Index / slice the leading batch axis: ``tasks[3]``, ``tasks[:5]``, ``tasks[idx_array]``."""
        return jax.tree_util.tree_map(lambda x: x[index], self)


def stack_tasks(tasks) -> Task:
    """Stacks single tasks of one family into a batch with a leading axis."""
    families = {t.family for t in tasks}
    if len(families) != 1:
        raise ValueError(f"cannot stack tasks of different families: {sorted(families)}")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *tasks)


@struct.dataclass
class EnvState:
    """State of one environment.

    Attributes:
      physics: family-specific simulator state (``mjx.Data``, or the point robot's position).
      obs: ``[obs_dim]`` observation to act on (after an auto-reset, the new episode's first one).
      next_obs: ``[obs_dim]`` observation the last step reached, before any auto-reset; the
        ``next_obs`` of the transition. Equal to ``obs`` after ``reset`` and plain ``step``.
      reward: ``[]`` reward of the last step.
      terminated: ``[]`` bool, the last step ended the episode in a terminal state.
      truncated: ``[]`` bool, the last step hit the horizon without terminating.
      t: ``[]`` int32 steps taken in the current episode.
      key: PRNG key consumed by auto-resets.
      info: dict of ``[]`` physical quantities the reward uses (velocities, costs, distances).
    """

    physics: Any
    obs: jax.Array
    next_obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    t: jax.Array
    key: jax.Array
    info: Dict[str, jax.Array]

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


class TaskFamily(abc.ABC):
    """Base class of every task family. Subclasses implement ``_make_tasks``, ``_reset``, ``_step``.

    Class attributes set by subclasses: ``obs_dim``, ``action_dim``, ``attr_dim``, ``horizon``,
    ``action_low``, ``action_high``, ``info_keys``. ``name`` is the registry name (set by the constructor).
    """

    name: str
    obs_dim: int
    action_dim: int
    attr_dim: int
    horizon: int
    action_low: float = -1.0
    action_high: float = 1.0
    info_keys: Tuple[str, ...] = ()  # the scalar float32 entries of EnvState.info
    backend: str = "jax"             # the simulator (MJX families: "mjx" or "c")

    def __init__(self, name: str, num_train: int, num_test: int, num_val: int = 0):
        self.name = name
        self.num_train = int(num_train)
        self.num_test = int(num_test)
        self.num_val = int(num_val)

    # ---------------------------------------------------------------- tasks
    @abc.abstractmethod
    def sample_params(self, key: jax.Array, num: int) -> Dict[str, jax.Array]:
        """Draws ``num`` tasks' physical parameters (leading axis ``num``)."""

    @abc.abstractmethod
    def _make_tasks(self, params: Dict[str, np.ndarray]) -> Task:
        """Builds a batch of tasks from parameters with a leading batch axis."""

    def make_tasks(self, params: Dict[str, Any]) -> Task:
        """Tasks from stored parameters (e.g. read back from a dataset). Runs on the host."""
        expected = self.param_shapes()
        if set(params) != set(expected):
            raise ValueError(
                f"{self.name}: task params must have keys {sorted(expected)}, got {sorted(params)}")
        params = {k: np.asarray(v, np.float32) for k, v in params.items()}
        nums = {v.shape[0] if v.ndim else None for v in params.values()}
        for k, v in params.items():
            if v.ndim == 0 or v.shape[1:] != expected[k]:
                raise ValueError(f"{self.name}: param {k!r} must have shape [num, *{expected[k]}], "
                                 f"got {v.shape}")
        if len(nums) != 1:
            raise ValueError(f"{self.name}: task params disagree on the number of tasks: {nums}")
        return self._make_tasks(params)

    def param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Per-task shape of every entry of ``Task.params``."""
        p = self.sample_params(jax.random.PRNGKey(0), 1)
        return {k: tuple(v.shape[1:]) for k, v in p.items()}

    def sample_tasks(self, key: jax.Array, num: int) -> Task:
        """``num`` tasks drawn from the family's distribution (host call, not jittable for families
        whose derived simulator constants are recomputed by MuJoCo)."""
        if num < 1:
            raise ValueError(f"{self.name}: num must be >= 1, got {num}")
        return self.make_tasks(jax.device_get(self.sample_params(key, num)))

    def train_test_split(self, seed: int = 0) -> Tuple[Task, Task]:
        """Fixed, seedable split into ``num_train`` training and ``num_test`` unseen test tasks."""
        tasks = self.sample_tasks(jax.random.PRNGKey(seed), self.num_train + self.num_test)
        return tasks[: self.num_train], tasks[self.num_train:]

    def validation_tasks(self, seed: int = 0) -> Task:
        """``num_val`` validation tasks of split ``seed``: drawn like the test tasks, from a key
        of their own (so adding them leaves the training and test tasks of every seed as they
        were), and disjoint from both. What every choice of a setting is made on; the test
        tasks are evaluated once, at the end."""
        if self.num_val < 1:
            raise ValueError(f"{self.name}: the family has no validation tasks (num_val=0)")
        return self.sample_tasks(jax.random.fold_in(jax.random.PRNGKey(seed), 1), self.num_val)

    def split(self, seed: int = 0) -> Dict[str, Task]:
        """``{"train": ..., "val": ..., "test": ...}`` of split ``seed`` (no ``val`` where the
        family has no validation tasks)."""
        train, test = self.train_test_split(seed)
        out = {"train": train, "test": test}
        if self.num_val:
            out["val"] = self.validation_tasks(seed)
        return out

    # ---------------------------------------------------------------- dynamics
    @abc.abstractmethod
    def _reset(self, task: Task, key: jax.Array) -> Tuple[Any, jax.Array]:
        """Returns (physics, obs) of a new episode."""

    @abc.abstractmethod
    def _step(self, task: Task, physics: Any, action: jax.Array, t: jax.Array
              ) -> Tuple[Any, jax.Array, jax.Array, jax.Array, Dict[str, jax.Array]]:
        """Returns (physics, obs, reward, terminated, info) after applying a clipped action."""

    def transition_reward(self, task: Task, obs: jax.Array, action: jax.Array,
                          next_obs: jax.Array) -> jax.Array:
        """Task ``task``'s reward for the transition ``(obs, action, next_obs)`` (one transition,
        ``action`` in the family's units), from the transition alone: what BOReL's reward
        relabelling recomputes (``jaxomrl.data.relabel``). Families whose reward needs more than
        the observations (e.g. Half-Cheetah-Vel's displacement, which its observation omits)
        do not define it (:meth:`check_transition_reward` then refuses; they may define
        :meth:`relabel_reward` instead)."""
        self.check_transition_reward()
        raise NotImplementedError

    def check_transition_reward(self) -> None:
        """Raises ``ValueError`` naming the family unless it defines :meth:`transition_reward`."""
        if type(self).transition_reward is TaskFamily.transition_reward:
            raise ValueError(f"{self.name}: the reward cannot be recomputed from a transition's "
                             "observations, so reward relabelling is not available for this "
                             "family")

    def relabel_reward(self, task: Task, source: Task, obs: jax.Array, action: jax.Array,
                       next_obs: jax.Array, reward: jax.Array) -> jax.Array:
        """Task ``task``'s reward for a transition recorded in task ``source`` with reward
        ``reward`` (one transition, ``action`` in the family's units): what reward relabelling
        (``jaxomrl.data.relabel``) writes. Default: :meth:`transition_reward`, which needs
        neither the source nor its reward; a family whose reward depends on a quantity the
        observation omits may recover it from the recorded reward instead."""
        del source, reward
        return self.transition_reward(task, obs, action, next_obs)

    def check_relabel_reward(self) -> None:
        """Raises ``ValueError`` naming the family unless :meth:`relabel_reward` is available."""
        if type(self).relabel_reward is TaskFamily.relabel_reward:
            self.check_transition_reward()

    def terminal_obs(self, obs: jax.Array) -> jax.Array:
        """Whether a step that lands in observation ``obs [..., obs_dim]`` ends the episode, from
        the observation alone (``[...]`` bool): the termination function of model rollouts
        (MBPO / MOPO use the environment's). Default: a non-finite observation."""
        return jnp.logical_not(jnp.all(jnp.isfinite(obs), axis=-1))

    def from_gym_obs(self, obs: np.ndarray) -> np.ndarray:
        """Observations ``[..., d]`` of the peers' Gym version of this family's environment, in
        this family's convention (``[..., obs_dim]``; data imported from other codebases,
        ``jaxomrl.data.imports``). Default: the same convention, so only ``d == obs_dim``.
        Raises ``ValueError`` naming both conventions where no mapping is known."""
        obs = np.asarray(obs)
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"{self.name}: observations have {obs.shape[-1]} entries, this "
                             f"family's have {self.obs_dim}, and no mapping from Gym's is known")
        return obs

    def _merge_reset(self, done: jax.Array, fresh: Any, physics: Any) -> Any:
        """Selects the fresh episode's physics where ``done``. Families may select fewer fields."""
        return optax.tree_utils.tree_where(done, fresh, physics)

    def check_task(self, task: Task) -> None:
        """Raises a clear error if ``task`` is not one unbatched task of this family."""
        if not isinstance(task, Task):
            raise TypeError(f"{self.name}: expected a jaxomrl Task, got {type(task).__name__}")
        if task.family != self.name:
            raise ValueError(f"task belongs to family {task.family!r}, not {self.name!r}")
        if task.attributes.shape != (self.attr_dim,):
            raise ValueError(
                f"{self.name}: expected one task with attributes of shape ({self.attr_dim},), got "
                f"{task.attributes.shape}; vmap over the leading axes of a batch of tasks")

    def reset(self, task: Task, key: jax.Array) -> EnvState:
        """Starts an episode of ``task``. ``key`` also seeds later auto-resets."""
        self.check_task(task)
        key, sub = jax.random.split(key)
        physics, obs = self._reset(task, sub)
        zero = jnp.zeros((), jnp.float32)
        false = jnp.zeros((), bool)
        info = {k: zero for k in self.info_keys}
        return EnvState(physics=physics, obs=obs, next_obs=obs, reward=zero, terminated=false,
                        truncated=false, t=jnp.zeros((), jnp.int32), key=key, info=info)

    def step(self, task: Task, state: EnvState, action: jax.Array) -> EnvState:
        """Advances one environment step; actions are clipped to [action_low, action_high].

        After a done step, ``step`` keeps going from the terminal state; use ``step_autoreset``
        for batched collection.
        """
        self.check_task(task)
        action = jnp.asarray(action)
        if action.shape != (self.action_dim,):
            raise ValueError(f"{self.name}: action must have shape ({self.action_dim},), got "
                             f"{action.shape}; vmap over batch axes")
        action = jnp.clip(action, self.action_low, self.action_high)
        t = state.t + 1
        physics, obs, reward, terminated, info = self._step(task, state.physics, action, t)
        truncated = jnp.logical_and(t >= self.horizon, jnp.logical_not(terminated))
        return state.replace(physics=physics, obs=obs, next_obs=obs,
                             reward=reward.astype(jnp.float32), terminated=terminated,
                             truncated=truncated, t=t, info=info)

    def step_autoreset(self, task: Task, state: EnvState, action: jax.Array) -> EnvState:
        """``step``, then start a new episode where it ended; ``next_obs`` keeps the last obs."""
        nxt = self.step(task, state, action)
        key, sub = jax.random.split(state.key)
        fresh_physics, fresh_obs = self._reset(task, sub)
        done = nxt.done
        return nxt.replace(
            physics=self._merge_reset(done, fresh_physics, nxt.physics),
            obs=jnp.where(done, fresh_obs, nxt.obs),
            t=jnp.where(done, 0, nxt.t),
            key=key,
        )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, obs_dim={self.obs_dim}, "
                f"action_dim={self.action_dim}, attr_dim={self.attr_dim}, horizon={self.horizon})")


def uniform_policy(family: TaskFamily) -> Policy:
    """Uniformly random actions: a ``jaxomrl.types.Policy`` on [-1, 1]^d (every action of the
    family's box equally likely once ``rollout`` maps it there)."""

    def policy(obs, z, key):
        del obs, z
        return jax.random.uniform(key, (family.action_dim,), minval=-1.0, maxval=1.0)

    return policy


def rollout(family: TaskFamily, task: Task, key: jax.Array, policy: Policy, num_steps: int,
            num_envs: int, z=None) -> Tuple[EnvState, Transition]:
    """Runs ``num_envs`` auto-resetting environments of one task for ``num_steps`` steps.

    ``policy(obs, z, key)`` is the one acting signature (``jaxomrl.types.Policy``): actions in
    [-1, 1]^d, mapped here onto the family's action box (``z``: the task context it acts on, or
    None). ``vmap`` this over a batch of tasks (and ``jit`` it) for multi-task collection.
    Returns the final states ``[num_envs]`` and transitions ``[num_steps, num_envs]``, whose
    actions are in the family's box (as datasets store them).
    """
    reset_key, run_key = jax.random.split(key)
    states = jax.vmap(family.reset, in_axes=(None, 0))(task, jax.random.split(reset_key, num_envs))
    step = jax.vmap(family.step_autoreset, in_axes=(None, 0, 0))

    def body(states, k):
        actions = jax.vmap(lambda obs, kk: scale_action(policy(obs, z, kk), family.action_low,
                                                        family.action_high))(
            states.obs, jax.random.split(k, num_envs))
        nxt = step(task, states, actions)
        tr = Transition(obs=states.obs, action=actions, reward=nxt.reward, next_obs=nxt.next_obs,
                        terminated=nxt.terminated, truncated=nxt.truncated)
        return nxt, tr

    return jax.lax.scan(body, states, jax.random.split(run_key, num_steps))
