"""Task families: pure-functional environments with tasks as pytree arguments."""
from jaxomrl.envs.base import (EnvState, Task, TaskFamily, rollout, stack_tasks,
                               uniform_policy)
from jaxomrl.envs.registry import list_families, make, register

__all__ = ["EnvState", "Task", "TaskFamily", "rollout", "stack_tasks",
           "uniform_policy", "list_families", "make", "register"]
