"""Prompt-DT (Xu et al. 2022) as an algorithm of the runner: one phase that trains the prompt
decision transformer (``jaxomrl.learners.prompt_dt``) on every training task's data, and the
evaluation protocols every other method runs, with the prompt as the task context.

The prompt is what the protocol's context source gives (``eval.protocols``): the last
``prompt_length`` steps of an episode of the task's offline data (``offline_ctx``), of a
held-out behaviour checkpoint's data (``offpolicy_ctx``), or of the agent's own previous episode
(``online``: episode 1 has an empty prompt, episode k the end of episode k - 1; ``nonprior_ctx``:
the end of the last collection episode). Every episode's return-to-go starts at the best return
of a whole training episode (over all training tasks: an unseen task has no data of its own;
Prompt-DT fixes one target per environment, e.g. 0 for Half-Cheetah-Vel).

ReDA (Table 1 / 2) evaluates PromptDT under its on-policy protocol (context "from interactions
the meta-policy encounters when deployed to the task": here ``online`` from episode 2) and
off-policy protocol (context from held-out checkpoints: ``offpolicy_ctx``); the paper does not
give its prompt length or target return-to-go.

Data as ``jaxomrl.algos.offline_meta``: ``{"train": TaskData}``; evaluation data
``{"tasks": {split: Task}, "data": {split: TaskData}, "ood": ...}``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

import jax

from jaxomrl.algos.base import Algorithm, Phase
from jaxomrl.algos.offline_meta import evaluate_protocols
from jaxomrl.config import from_json
from jaxomrl.envs.base import TaskFamily
from jaxomrl.errors import check_finite_fields
from jaxomrl.eval.adaptation import encoder_context
from jaxomrl.learners.prompt_dt import Inference, PromptDTConfig, best_return, make_prompt_dt


@dataclasses.dataclass(frozen=True)
class PromptDTRunConfig:
    """One Prompt-DT run (per seed): the learner's config, its steps, the evaluation's
    (the same fields as ``offline_meta.MetaConfig``'s)."""

    dt: PromptDTConfig = PromptDTConfig()
    steps: int = 5000
    eval_episodes: int = 1
    carry_context: bool = True
    eval_contexts: int = 4
    nonprior_episodes: int = 2

    def __post_init__(self):
        check_finite_fields(self)
        for name in ("steps", "eval_episodes", "eval_contexts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nonprior_episodes < 0:
            raise ValueError(f"nonprior_episodes must be >= 0, got {self.nonprior_episodes}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PromptDTRunConfig":
        return from_json(cls, d)


def make_prompt_dt_algorithm(name: str, config: PromptDTRunConfig, family: TaskFamily,
                             num_train_tasks: int) -> Algorithm:
    del num_train_tasks      # the meta-batch is the learner's (all tasks when larger)
    if family.horizon > config.dt.max_timestep:
        raise ValueError(f"the family's horizon {family.horizon} exceeds the timestep "
                         f"embedding's table ({config.dt.max_timestep})")
    dt = make_prompt_dt(config.dt, family.obs_dim, family.action_dim)

    def output(state, source) -> Inference:
        return Inference(params=state.params, obs_moments=source.obs_moments,
                         target_return=best_return(source.data, source.rtg))

    phase = Phase(name="policy", num_steps=config.steps, learner=dt,
                  batch=lambda source, data: source, output=output,
                  prepare=lambda inputs, data: dt.make_source(data["train"]),
                  seeds_in_sequence=True)

    def policy(outputs: Inference):
        """(the DT's recurrent policy, its prompt context) (``Algorithm.policy``)."""
        return dt.make_policy(outputs), encoder_context(dt, outputs)

    def evaluate(outputs: Inference, key: jax.Array, eval_data) -> Dict[str, jax.Array]:
        """``jaxomrl.eval.protocols.evaluate_policy`` in every task set of ``eval_data``."""
        act, context = policy(outputs)
        return evaluate_protocols(family, config, act, context, key, eval_data)

    return Algorithm(name=name, phases=(phase,), evaluate=evaluate,
                     config=dataclasses.asdict(config), policy=policy)
