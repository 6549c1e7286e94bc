"""Every task family by name: ``make("hopper_gravity", horizon=200)``."""
from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional

from jaxomrl.envs.base import TaskFamily
from jaxomrl.envs.mjx_family import (BACKENDS, MJXFamily, RandParams, ScaleSet, TargetVelocity,
                                     resolve_backend)
from jaxomrl.envs.point_robot import PointRobotSparse

_FACTORIES: Dict[str, Callable[..., TaskFamily]] = {}
_PHYSICS_FAMILIES = set()   # families with a choice of physics (MJX or MuJoCo C)
PHYSICS = BACKENDS          # the choices of make(physics=...)

# ReDA (unstable_wrapper): multipliers seen in training, and unseen test multipliers.
REDA_TRAIN = (0.5, 1.0, 1.5)
REDA_TEST = (0.8, 1.2)
# Validation multipliers: unseen like the test ones and between the training ones, disjoint from
# both (not in ReDA, which has no validation tasks).
REDA_VAL = (0.7, 1.3)
# ReDA's didactic example: InvertedPendulum with gravity x1 and x2 (the same two tasks at test
# time, where the context comes from a different behaviour checkpoint; validation the same two).
PENDULUM_SCALES = (1.0, 2.0)
GYM_HORIZON = 1000


def register(name: str, factory: Callable[..., TaskFamily], physics: bool = False) -> None:
    """Adds a family factory ``factory(name=..., **config) -> TaskFamily`` under ``name``;
    ``physics``: the factory takes ``backend=`` (``MJXFamily``'s simulators)."""
    if name in _FACTORIES:
        raise ValueError(f"task family {name!r} is already registered")
    _FACTORIES[name] = factory
    if physics:
        _PHYSICS_FAMILIES.add(name)


def has_physics(name: str) -> bool:
    """Whether family ``name`` has a choice of physics backend (the MJX families)."""
    return name in _PHYSICS_FAMILIES


def resolved_physics(name: str, physics: Optional[str] = None) -> str:
    """The backend ``make(name, physics=physics)`` runs: ``"mjx"`` / ``"c"``, or ``"jax"`` for
    a pure-JAX family; a choice the family does not have is a ``ValueError``."""
    if name in _PHYSICS_FAMILIES:
        if physics not in (None,) + BACKENDS:
            raise ValueError(f"physics must be one of {BACKENDS}, got {physics!r}")
        return resolve_backend(physics or "auto")
    if physics not in (None, "auto", "jax"):
        raise ValueError(f"task family {name!r} is pure JAX: it has no physics={physics!r}")
    return "jax"


def list_families() -> List[str]:
    return sorted(_FACTORIES)


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, config: tuple) -> TaskFamily:
    return _FACTORIES[name](name=name, **dict(config))


def make(name: str, physics: Optional[str] = None, **config) -> TaskFamily:
    """The family registered as ``name``, configured by keyword arguments.

    ``physics``: the simulator of an MJX family (``"mjx"``, ``"c"`` or ``"auto"``, the default:
    MuJoCo C on CPUs, MJX on accelerators; ``MJXFamily``). It is not part of a task's
    definition: datasets record it beside their ``family_config``. Pure-JAX families (the
    point robot) have no choice and accept only ``None``, ``"auto"`` or ``"jax"``.

    Families are cached per (name, config), so jitted functions closed over a family are shared.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown task family {name!r}; known families: {', '.join(list_families())}")
    if "backend" in config:
        raise ValueError("pass the physics backend as make(name, physics=...), not in the config")
    backend = resolved_physics(name, physics)
    if name in _PHYSICS_FAMILIES:
        config["backend"] = backend
    try:
        return _make_cached(name, tuple(sorted(config.items())))
    except TypeError as e:  # unhashable config value: build uncached
        if "unhashable" not in str(e):
            raise
        return _FACTORIES[name](name=name, **config)


register("point_robot_sparse", PointRobotSparse)
register("cheetah_vel", functools.partial(
    MJXFamily, robot="halfcheetah", perturbation=TargetVelocity(0.0, 3.0),
    reward="target_velocity", horizon=200, ctrl_cost_weight=0.05), physics=True)
for _robot, _name in (("hopper", "hopper_rand_params"), ("walker2d", "walker_rand_params")):
    register(_name, functools.partial(MJXFamily, robot=_robot, perturbation=RandParams(),
                                      reward="locomotion", horizon=200), physics=True)
for _robot in ("halfcheetah", "hopper", "walker2d", "ant"):
    register(f"{_robot}_gravity", functools.partial(
        MJXFamily, robot=_robot, perturbation=ScaleSet("gravity", REDA_TRAIN, REDA_TEST, REDA_VAL),
        reward="locomotion", horizon=GYM_HORIZON), physics=True)
for _robot in ("hopper", "walker2d", "ant"):
    register(f"{_robot}_dof_damping", functools.partial(
        MJXFamily, robot=_robot, perturbation=ScaleSet("dof_damping", REDA_TRAIN, REDA_TEST, REDA_VAL),
        reward="locomotion", horizon=GYM_HORIZON), physics=True)
register("inverted_pendulum_gravity", functools.partial(
    MJXFamily, robot="inverted_pendulum",
    perturbation=ScaleSet("gravity", PENDULUM_SCALES, PENDULUM_SCALES, PENDULUM_SCALES),
    reward="alive", horizon=GYM_HORIZON), physics=True)
