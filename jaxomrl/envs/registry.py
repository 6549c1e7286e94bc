"""Every task family by name: ``make("hopper_gravity", horizon=200)``."""
from __future__ import annotations

import functools
from typing import Callable, Dict, List

from jaxomrl.envs.base import TaskFamily
from jaxomrl.envs.mjx_family import MJXFamily, RandParams, ScaleSet, TargetVelocity
from jaxomrl.envs.point_robot import PointRobotSparse

_FACTORIES: Dict[str, Callable[..., TaskFamily]] = {}

# ReDA (unstable_wrapper): multipliers seen in training, and unseen test multipliers.
REDA_TRAIN = (0.5, 1.0, 1.5)
REDA_TEST = (0.8, 1.2)
# ReDA's didactic example: InvertedPendulum with gravity x1 and x2 (the same two tasks at test
# time, where the context comes from a different behaviour checkpoint).
PENDULUM_SCALES = (1.0, 2.0)
GYM_HORIZON = 1000


def register(name: str, factory: Callable[..., TaskFamily]) -> None:
    """Adds a family factory ``factory(name=..., **config) -> TaskFamily`` under ``name``."""
    if name in _FACTORIES:
        raise ValueError(f"task family {name!r} is already registered")
    _FACTORIES[name] = factory


def list_families() -> List[str]:
    return sorted(_FACTORIES)


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, config: tuple) -> TaskFamily:
    return _FACTORIES[name](name=name, **dict(config))


def make(name: str, **config) -> TaskFamily:
    """The family registered as ``name``, configured by keyword arguments.

    Families are cached per (name, config), so jitted functions closed over a family are shared.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown task family {name!r}; known families: {', '.join(list_families())}")
    try:
        return _make_cached(name, tuple(sorted(config.items())))
    except TypeError as e:  # unhashable config value: build uncached
        if "unhashable" not in str(e):
            raise
        return _FACTORIES[name](name=name, **config)


register("point_robot_sparse", PointRobotSparse)
register("cheetah_vel", functools.partial(
    MJXFamily, robot="halfcheetah", perturbation=TargetVelocity(0.0, 3.0),
    reward="target_velocity", horizon=200, ctrl_cost_weight=0.05))
for _robot, _name in (("hopper", "hopper_rand_params"), ("walker2d", "walker_rand_params")):
    register(_name, functools.partial(MJXFamily, robot=_robot, perturbation=RandParams(),
                                      reward="locomotion", horizon=200))
for _robot in ("halfcheetah", "hopper", "walker2d", "ant"):
    register(f"{_robot}_gravity", functools.partial(
        MJXFamily, robot=_robot, perturbation=ScaleSet("gravity", REDA_TRAIN, REDA_TEST),
        reward="locomotion", horizon=GYM_HORIZON))
for _robot in ("hopper", "walker2d", "ant"):
    register(f"{_robot}_dof_damping", functools.partial(
        MJXFamily, robot=_robot, perturbation=ScaleSet("dof_damping", REDA_TRAIN, REDA_TEST),
        reward="locomotion", horizon=GYM_HORIZON))
register("inverted_pendulum_gravity", functools.partial(
    MJXFamily, robot="inverted_pendulum",
    perturbation=ScaleSet("gravity", PENDULUM_SCALES, PENDULUM_SCALES),
    reward="alive", horizon=GYM_HORIZON))
