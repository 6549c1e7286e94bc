"""Task families: pure-functional environments with tasks as pytree arguments."""
from jaxomrl.envs.base import (EnvState, Task, TaskFamily, rollout, stack_tasks,
                               uniform_policy)
from jaxomrl.envs.registry import (PHYSICS, has_physics, list_families, make, register,
                                   resolved_physics)

__all__ = ["EnvState", "Task", "TaskFamily", "rollout", "stack_tasks",
           "uniform_policy", "list_families", "make", "register", "PHYSICS", "has_physics",
           "resolved_physics"]
