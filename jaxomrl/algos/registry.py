"""Named algorithms and their ablations, built from one set of sizes and schedules.

A run is named by a *spec*: the algorithm, optionally followed by ablations, ``/``-separated:

    r2pgo                               R2PGO (recurrent VAE + similarity-weighted InfoNCE encoder,
                                        hypernetwork SAC+BC actor and critics)
    r2pgo/no_weighted_negatives         ... negatives drawn uniformly over tasks (alpha = 0)
    r2pgo/no_hypernetwork               ... policy conditioned by concatenating [s, z]
    bc                                  task-agnostic behaviour cloning on all training tasks

Baselines (ReDA §5 / appendix B.4: same data, sizes and SAC+BC policy learning; the encoder is
frozen after its phase and the policy conditions on [s, z]):

    om_bc                               recurrent VAE encoder (reconstruction only, no
                                        contrastive term), policy by behaviour cloning on [s, z]
    om_sac                              the same encoder, SAC+BC policy
    focal                               FOCAL: transition encoder, mean-pooled, distance metric
                                        loss
    corro                               CORRO: transition encoder trained by InfoNCE on single
                                        transitions against generated negatives (reward noise),
                                        mean-pooled over the context

ReDA (``jaxomrl.algos.reda``): per-task dynamics ensembles and a shared reward model, an
adversarial SAC policy generating contexts in the models against the transformer context
encoder (InfoNCE on real + adversarial contexts), then the frozen encoder's concat SAC+BC policy:

    reda                                ReDA
    reda/no_model                       the same encoder trained on real contexts only
    reda/no_adversary                   uniform random actions in the models
    reda/no_uncertainty                 lambda_1 = 0
    reda/no_task_reward                 lambda_2 = 0

``make_config(spec, settings)`` gives the ``MetaConfig`` of a spec; ``make(spec, settings,
family, num_train_tasks)`` the ``Algorithm`` the runner trains.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from jaxomrl.algos.base import Algorithm
from jaxomrl.algos.offline_meta import MetaConfig, make_algorithm
from jaxomrl.algos.reda import ReDAConfig, make_reda
from jaxomrl.errors import check_finite_fields
from jaxomrl.envs.base import TaskFamily
from jaxomrl.learners.dynamics import DynamicsConfig
from jaxomrl.learners.encoder import EncoderConfig
from jaxomrl.learners.sac import SACConfig

ALGORITHMS: Dict[str, Tuple[str, ...]] = {
    "r2pgo": ("no_weighted_negatives", "no_hypernetwork"),
    "bc": (),
    "om_bc": (),
    "om_sac": (),
    "focal": (),
    "corro": (),
    "reda": ("no_model", "no_adversary", "no_uncertainty", "no_task_reward"),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and schedules shared by every algorithm of a comparison (defaults: the papers' /
    peer codebases' values where they agree; sources in README / experiments/README.md)."""

    hidden: Tuple[int, ...] = (256, 256)
    hyper_hidden: Tuple[int, ...] = (64,)
    latent_dim: int = 5
    encoder_hidden: int = 64
    window: int = 20                    # GRU: episode-prefix length the encoder trains on
    infonce_prefix: str = "random"      # R2PGO: InfoNCE on the belief after a random prefix
    vae_posteriors: Optional[int] = None    # VAE decoding subsample (None: the full grid)
    vae_transitions: Optional[int] = None
    contexts_per_task: int = 8
    encoder_meta_batch: int = 16
    encoder_steps: int = 2000
    encoder_lr: float = 3e-4
    kl_weight: float = 0.1
    infonce_weight: float = 1.0
    alpha: float = 5.0                  # R2PGO eq. 4 kernel width on task attributes
    num_negatives: int = 16
    temperature: float = 1.0
    policy_steps: int = 5000
    batch_size: int = 256
    meta_batch: int = 16
    lr: float = 3e-4
    rl_weight: float = 2.5              # TD3+BC lambda
    bc_weight: float = 1.0
    eval_episodes: int = 1
    eval_contexts: int = 4              # context episodes per task of the fixed-context protocols
    carry_context: bool = True
    policy_context: str = "task"        # the policy's z: another episode's prefix | its own
    normalize_obs: bool = True          # the policy's observations standardised (TD3+BC)
    # ReDA (defaults: those of ReDAConfig / DynamicsConfig, defined there once)
    num_models: int = DynamicsConfig.ensemble_size        # ensemble members per task (B.5)
    model_hidden: Tuple[int, ...] = DynamicsConfig.hidden
    model_rounds: int = ReDAConfig.model_rounds   # x model_eval_every SGD steps, early-stopped
    model_eval_every: int = DynamicsConfig.eval_every
    starts_per_task: int = ReDAConfig.starts_per_task     # adversarial rollouts per task, step
    lambda_uncertainty: float = ReDAConfig.lambda_uncertainty
    model_uncertainty: str = DynamicsConfig.uncertainty   # u of eq. 6: aleatoric | disagreement
    model_holdout_metric: str = DynamicsConfig.holdout_metric   # early stopping: nll | mse
    lambda_task: float = ReDAConfig.lambda_task
    policy_model_fraction: float = ReDAConfig.policy_model_fraction  # model rows, policy batch
    adversarial_weight: float = ReDAConfig.adversarial_weight  # adversarial InfoNCE term

    def __post_init__(self):
        check_finite_fields(self)


def parse_spec(spec: str) -> Tuple[str, Tuple[str, ...]]:
    """``"r2pgo/no_hypernetwork"`` -> ``("r2pgo", ("no_hypernetwork",))``, validated."""
    name, *ablations = spec.strip().split("/")
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    for a in ablations:
        if a not in ALGORITHMS[name]:
            raise ValueError(f"{name} has no ablation {a!r}; known: {list(ALGORITHMS[name])}")
    if len(set(ablations)) != len(ablations):
        raise ValueError(f"repeated ablation in {spec!r}")
    return name, tuple(ablations)


def make_config(spec: str, s: Settings) -> MetaConfig:
    name, ablations = parse_spec(spec)
    policy = dict(hidden=tuple(s.hidden), hyper_hidden=tuple(s.hyper_hidden), actor_lr=s.lr,
                  critic_lr=s.lr, batch_size=s.batch_size)
    common = dict(policy_steps=s.policy_steps, meta_batch=s.meta_batch,
                  eval_episodes=s.eval_episodes, carry_context=s.carry_context,
                  eval_contexts=s.eval_contexts, normalize_obs=s.normalize_obs)
    if name != "bc":
        common["policy_context"] = s.policy_context
    if name == "bc":
        return MetaConfig(policy=SACConfig(head="none", rl_weight=0.0, bc_weight=s.bc_weight,
                                           **policy), **common)
    shared = dict(latent_dim=s.latent_dim, hidden=s.encoder_hidden, window=s.window,
                  contexts_per_task=s.contexts_per_task, meta_batch=s.encoder_meta_batch,
                  learning_rate=s.encoder_lr, temperature=s.temperature)
    vae = dict(encoder="gru", vae_weight=1.0, kl_weight=s.kl_weight,
               vae_posteriors=s.vae_posteriors, vae_transitions=s.vae_transitions)
    if name == "reda":
        encoder = EncoderConfig(encoder="transformer", infonce_weight=1.0, alpha=0.0,
                                num_negatives=s.num_negatives, **shared)
    elif name == "r2pgo":
        encoder = EncoderConfig(
            **vae, **shared, infonce_weight=s.infonce_weight, num_negatives=s.num_negatives,
            alpha=0.0 if "no_weighted_negatives" in ablations else s.alpha,
            infonce_prefix=s.infonce_prefix)
    elif name in ("om_bc", "om_sac"):
        encoder = EncoderConfig(**vae, **shared)
    elif name == "focal":
        encoder = EncoderConfig(encoder="mlp", pooling="mean", focal_weight=1.0, **shared)
    else:  # corro
        encoder = EncoderConfig(encoder="mlp", pooling="mean", corro_weight=1.0,
                                num_negatives=s.num_negatives, **shared)
    if name == "om_bc":
        head = dict(head="concat", rl_weight=0.0, bc_weight=s.bc_weight)
    else:
        hyper = name == "r2pgo" and "no_hypernetwork" not in ablations
        head = dict(head="hyper" if hyper else "concat", rl_weight=s.rl_weight,
                    bc_weight=s.bc_weight)
    return MetaConfig(policy=SACConfig(**head, **policy), encoder=encoder,
                      encoder_steps=s.encoder_steps, **common)


def make_reda_config(spec: str, s: Settings) -> ReDAConfig:
    name, ablations = parse_spec(spec)
    if name != "reda":
        raise ValueError(f"{spec!r} is not a ReDA spec")
    models = dict(hidden=tuple(s.model_hidden), ensemble_size=s.num_models,
                  eval_every=s.model_eval_every, holdout_metric=s.model_holdout_metric)
    return ReDAConfig(
        meta=make_config(spec, s),
        dynamics=DynamicsConfig(target="next_state", uncertainty=s.model_uncertainty, **models),
        reward_model=DynamicsConfig(target="reward", **models),
        model_rounds=s.model_rounds,
        adversary=SACConfig(hidden=tuple(s.hidden), batch_size=s.batch_size, actor_lr=s.lr,
                            critic_lr=s.lr),
        adversarial_steps=s.encoder_steps, starts_per_task=s.starts_per_task,
        num_positives=s.contexts_per_task,
        lambda_uncertainty=0.0 if "no_uncertainty" in ablations else s.lambda_uncertainty,
        lambda_task=0.0 if "no_task_reward" in ablations else s.lambda_task,
        adversary_mode="random" if "no_adversary" in ablations else "sac",
        augment="no_model" not in ablations, policy_model_fraction=s.policy_model_fraction,
        policy_uncertainty=s.lambda_uncertainty, adversarial_weight=s.adversarial_weight)


def make(spec: str, settings: Settings, family: TaskFamily, num_train_tasks: int) -> Algorithm:
    if parse_spec(spec)[0] == "reda":
        return make_reda(spec, make_reda_config(spec, settings), family, num_train_tasks)
    return make_algorithm(spec, make_config(spec, settings), family, num_train_tasks)


def from_run_config(spec: str, config: Dict, family: TaskFamily, num_train_tasks: int,
                    **meta_overrides) -> Algorithm:
    """The algorithm of a run from its ``run.json`` config, with fields of its ``MetaConfig``
    replaced (e.g. ``eval_episodes``)."""
    if parse_spec(spec)[0] == "reda":
        cfg = ReDAConfig.from_dict(config)
        cfg = dataclasses.replace(cfg, meta=dataclasses.replace(cfg.meta, **meta_overrides))
        return make_reda(spec, cfg, family, num_train_tasks)
    cfg = dataclasses.replace(MetaConfig.from_dict(config), **meta_overrides)
    return make_algorithm(spec, cfg, family, num_train_tasks)
