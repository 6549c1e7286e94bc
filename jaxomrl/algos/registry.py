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
                                        transitions against generated negatives (reward noise,
                                        or --corro_negatives=generative: its conditional VAE's
                                        (s', r) at the same (s, a)), mean-pooled over the context
    borel                               BOReL (offline VariBAD): the recurrent VAE with VariBAD's
                                        separate s' / a / r embeddings (BOREL_INPUT_EMBEDDINGS),
                                        reconstruction only; the policy is plain off-policy SAC
                                        (no cloning: BOReL's default learner) on the hyper-state
                                        [s, mu, log sigma^2] of its own history
                                        (policy_context="history", belief="mean_logvar"), the
                                        step-0 belief being the prior's; beliefs span 2
                                        consecutive episodes (BOREL_EPISODES: the encoder's
                                        contexts run from an episode into the next, 2 x
                                        --window transitions, and the policy's hyper-states
                                        carry the belief from episode 1 into episode 2)

    borel/reward_relabelling            ... with BOReL's reward relabelling: 0.32 of every
                                        training task's episodes are other tasks' episodes with
                                        rewards recomputed for it (jaxomrl.data.relabel; families
                                        with a relabel_reward: the point robot, Half-Cheetah-Vel);
                                        --reward_relabelling gives any encoder spec another
                                        fraction

    csro                                CSRO: FOCAL's transition encoder with tanh-bounded
                                        per-transition embeddings, mean-pooled, trained by the
                                        distance metric loss (weight CSRO_FOCAL_WEIGHT) plus the
                                        CLUB upper bound on I(z; s, a) with in-task negatives
                                        (--club_weight); the policy SAC+BC on [s, z] (CSRO's
                                        learner is BRAC: the comparison's SAC+BC stands in)
    csro/no_club                        ... without the CLUB term (FOCAL's loss, weight 10, on
                                        the tanh transition embeddings)

Sequence models (``jaxomrl.algos.prompt_dt``; the same data and protocols, the prompt as the
task context):

    prompt_dt                           Prompt-DT: a causal transformer over (return-to-go,
                                        state, action) tokens with a 5-step trajectory prompt of
                                        the task prepended, trained by action regression; its
                                        sizes are the --dt_* settings (defaults Prompt-DT's),
                                        returns-to-go divided by --rtg_scale (default: the
                                        family's horizon, a per-step scale; Prompt-DT: 500 for
                                        Half-Cheetah-Vel)

BOReL's sizes are the comparison's (``Settings``: encoder width, latent size, KL weight, like
every other method's); BOReL's own defaults (Dorfman et al. 2021 / its VariBAD code: GRU 128,
latent 5, KL weight 0.05) are ``--encoder_hidden=128 --kl_weight=0.05``. Its two-episode
contexts are ``2 x --window`` long: where the horizon is longer than ``--window`` (the default
caps it at 64), they stay inside episode 1; ``--window`` = the horizon (with ``--vae_posteriors``
/ ``--vae_transitions`` to subsample the decoding) gives BOReL's whole 2-episode horizon.
Online, the belief carries over from episode 1 to 2 with ``carry_context``; episodes beyond
the second extend it past what the encoder trained on. BOReL's CQL option is ``--cql_weight``
(CQL's conservative critic term in the policy learner, any spec).

CSRO's own sizes (Gao et al. 2023 / its code): encoder and q(z | s, a) MLPs 200 x 3, latent 20,
--club_weight 25 (10 for Half-Cheetah-Vel), FOCAL weight 10; its learner is BRAC with a KL
dual (here the comparison's SAC+BC), its test-time context the non-prior protocol
(``{split}_nonprior_ctx``, evaluated for every method).

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
import functools
from typing import Any, Dict, Mapping, Optional, Tuple

from jaxomrl.algos.base import Algorithm
from jaxomrl.algos.offline_meta import POLICY_CONTEXTS, MetaConfig, make_algorithm
from jaxomrl.algos.prompt_dt import PromptDTRunConfig, make_prompt_dt_algorithm
from jaxomrl.algos.reda import CONTRASTS, MODEL_STRUCTURES, ReDAConfig, make_reda
from jaxomrl.config import route, set_paths, setting
from jaxomrl.data import relabel
from jaxomrl.errors import check_finite_fields
from jaxomrl.envs.base import TaskFamily
from jaxomrl.learners.dynamics import UNCERTAINTIES, DynamicsConfig
from jaxomrl.learners.encoder import (WIDTH, EncoderConfig, GRUConfig, SetConfig,
                                      TransformerConfig)
from jaxomrl.learners.prompt_dt import PromptDTConfig
from jaxomrl.learners.sac import SACConfig

# VariBAD's / BOReL's encoder input: ReLU embeddings of s', a and r (state / action / reward
# embedding sizes of VariBAD's code, which BOReL uses).
BOREL_INPUT_EMBEDDINGS = (32, 16, 16)
# BOReL's belief horizon: VariBAD's BAMDP of 2 consecutive episodes (BOReL's offline data are
# 2-episode rollouts, trajectory_len = 2 x horizon).
BOREL_EPISODES = 2
# CSRO's weight of the FOCAL distance-metric term (its configs' z_loss_weight).
CSRO_FOCAL_WEIGHT = 10.0


@dataclasses.dataclass(frozen=True)
class Declared:
    """One algorithm, declared as data: its run config's kind (``meta``: ``MetaConfig``,
    ``reda``: ``ReDAConfig``, ``prompt_dt``: Prompt-DT's), its encoder (an ``EncoderConfig``
    whose values are the algorithm's defaults) with the ``Settings`` fields that set which of
    its fields (``encoder_settings``: ``{dotted path in the encoder config: settings field}``;
    a path into another kind's config is skipped, ``config.set_paths``), its policy head
    (``SACConfig`` fields) with ``head_settings`` likewise, ``MetaConfig`` fields it fixes
    (``meta``), and its ablations: ``{name: {dotted path of the run config: value}}``.
    ``belief_options``: the policy-context settings (``policy_context``,
    ``history_episodes``, ``reward_relabelling``) apply."""

    kind: str = "meta"
    encoder: Optional[EncoderConfig] = None
    encoder_settings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    head: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    head_settings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ablations: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    belief_options: bool = True
    window_episodes: int = 1            # the encoder's window is this many x Settings.window


# Settings fields every encoder takes (the width: in whichever kind's config it has); those of
# the recurrent VAE.
_SHARED = {"latent_dim": "latent_dim", "gru.hidden": "encoder_hidden",
           "transformer.hidden": "encoder_hidden", "mlp.hidden": "encoder_hidden",
           "window": "window", "contexts_per_task": "contexts_per_task",
           "meta_batch": "encoder_meta_batch", "learning_rate": "encoder_lr",
           "temperature": "temperature"}
_VAE = {"gru.kl_weight": "kl_weight", "gru.vae_posteriors": "vae_posteriors",
        "gru.vae_transitions": "vae_transitions"}
_SAC_BC = {"rl_weight": "rl_weight", "bc_weight": "bc_weight"}
_GRU_VAE = EncoderConfig(gru=GRUConfig(vae_weight=1.0))
# The comparison's defaults that are a method's own (each declared once, here):
# R2PGO's contrastive term (eq. 4-5), CSRO's CLUB weight (its configs: 25 for the point robot,
# Hopper and Walker), TD3+BC's SAC+BC lambda.
R2PGO_ENCODER = EncoderConfig(gru=GRUConfig(vae_weight=1.0, infonce_prefix="random"),
                              infonce_weight=1.0, alpha=5.0)
CSRO_ENCODER = EncoderConfig(mlp=SetConfig(pooling="mean", transition_output="tanh",
                                           club_weight=25.0), focal_weight=CSRO_FOCAL_WEIGHT)
SAC_BC = SACConfig(rl_weight=2.5, bc_weight=1.0)

DECLARED: Dict[str, Declared] = {
    "r2pgo": Declared(
        encoder=R2PGO_ENCODER,
        encoder_settings={**_SHARED, **_VAE, "infonce_weight": "infonce_weight",
                          "num_negatives": "num_negatives", "alpha": "kernel_alpha",
                          "gru.infonce_prefix": "infonce_prefix"},
        head={"head": "hyper"}, head_settings=_SAC_BC,
        ablations={"no_weighted_negatives": {"encoder.alpha": 0.0},
                   "no_hypernetwork": {"policy.head": "concat"}}),
    "bc": Declared(head={"head": "none", "rl_weight": 0.0}, head_settings={"bc_weight": "bc_weight"},
                   belief_options=False),
    "om_bc": Declared(encoder=_GRU_VAE, encoder_settings={**_SHARED, **_VAE},
                      head={"head": "concat", "rl_weight": 0.0},
                      head_settings={"bc_weight": "bc_weight"}),
    "om_sac": Declared(encoder=_GRU_VAE, encoder_settings={**_SHARED, **_VAE},
                       head={"head": "concat"}, head_settings=_SAC_BC),
    "focal": Declared(encoder=EncoderConfig(mlp=SetConfig(pooling="mean"), focal_weight=1.0),
                      encoder_settings=_SHARED, head={"head": "concat"}, head_settings=_SAC_BC),
    "corro": Declared(encoder=EncoderConfig(mlp=SetConfig(pooling="mean", corro_weight=1.0)),
                      encoder_settings={**_SHARED, "num_negatives": "num_negatives",
                                        "mlp.corro_negatives": "corro_negatives"},
                      head={"head": "concat"}, head_settings=_SAC_BC),
    "borel": Declared(
        encoder=EncoderConfig(gru=GRUConfig(vae_weight=1.0,
                                            input_embeddings=BOREL_INPUT_EMBEDDINGS,
                                            belief="mean_logvar",
                                            context_episodes=BOREL_EPISODES)),
        encoder_settings={**_SHARED, **_VAE}, window_episodes=BOREL_EPISODES,
        head={"head": "concat", "rl_weight": 1.0, "bc_weight": 0.0},      # plain SAC
        meta={"policy_context": "history"},
        ablations={"reward_relabelling": {"reward_relabelling": relabel.BOREL_FRACTION}}),
    "csro": Declared(encoder=CSRO_ENCODER,
                     encoder_settings={**_SHARED, "mlp.club_weight": "club_weight"},
                     head={"head": "concat"}, head_settings=_SAC_BC,
                     ablations={"no_club": {"encoder.mlp.club_weight": 0.0}}),
    "prompt_dt": Declared(kind="prompt_dt", belief_options=False),
    "reda": Declared(
        kind="reda",
        encoder=EncoderConfig(transformer=TransformerConfig(), infonce_weight=1.0),
        encoder_settings={**_SHARED, "num_negatives": "num_negatives"},
        head={"head": "concat"}, head_settings=_SAC_BC,
        ablations={"no_model": {"augment": False}, "no_adversary": {"adversary_mode": "random"},
                   "no_uncertainty": {"lambda_uncertainty": 0.0},
                   "no_task_reward": {"lambda_task": 0.0}}),
}
ALGORITHMS: Dict[str, Tuple[str, ...]] = {name: tuple(d.ablations)
                                          for name, d in DECLARED.items()}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and schedules shared by every algorithm of a comparison (defaults: the papers' /
    peer codebases' values where they agree; sources in README / research/NOTES.md).

    Every field is declared once, with its help text and bounds (``jaxomrl.config.setting``);
    ``experiments/train.py`` generates its flags from them (``cli.define_flags``). Fields whose
    default is None are derived: ``window`` from the family's horizon (``make``),
    ``encoder_meta_batch`` from ``meta_batch``, the VAE subsample means the full grid.

    Exposing a learner's hyperparameter is one field here: its default is the learner config's,
    its ``to`` paths say where it goes in the algorithm configs (``MetaConfig`` / ``ReDAConfig``;
    ``config.route``, applied by ``make_config`` / ``make_reda_config`` wherever a config has
    the path). The fields above the routed ones are set by ``make_config``'s own rules, which
    differ per algorithm."""

    hidden: Tuple[int, ...] = setting(SACConfig.hidden, "Actor / critic hidden sizes.")
    hyper_hidden: Tuple[int, ...] = setting(SACConfig.hyper_hidden, "Hypernetwork hidden sizes.")
    latent_dim: int = setting(EncoderConfig.latent_dim, "Task-embedding size.", lower=1)
    encoder_hidden: int = setting(WIDTH, "Encoder width (GRU state size).",
                                  lower=1)
    window: Optional[int] = setting(
        None, "Episode-prefix length the encoder trains on (default: the family's horizon, at "
        "most 64; BOReL's two-episode contexts are twice as long).", lower=1)
    infonce_prefix: str = setting(
        R2PGO_ENCODER.gru.infonce_prefix, "R2PGO: the contrastive embedding of a context is the GRU's belief after a "
        "uniformly drawn prefix (random; the paper's z_t) or after the whole context (last).",
        choices=("last", "random"))
    vae_posteriors: Optional[int] = setting(
        None, "VAE: posteriors per context that decode (a uniform subsample; default: all W+1, "
        "each decoding every transition).", lower=1)
    vae_transitions: Optional[int] = setting(
        None, "VAE: transitions each subsampled posterior decodes (with --vae_posteriors).",
        lower=1)
    contexts_per_task: int = setting(EncoderConfig.contexts_per_task,
                                     "Encoder: context episodes per task and step.", lower=1)
    encoder_meta_batch: Optional[int] = setting(
        None, "Tasks per encoder step (default: --meta_batch).", lower=1)
    encoder_steps: int = setting(MetaConfig.encoder_steps, "Encoder gradient steps (ReDA: adversarial encoder "
                                 "steps).", lower=1)
    encoder_lr: float = setting(EncoderConfig.learning_rate, "Encoder learning rate.",
                                lower=0.0)
    kl_weight: float = setting(GRUConfig.kl_weight, "Weight of the VAE's KL terms.",
                               lower=0.0)
    infonce_weight: float = setting(R2PGO_ENCODER.infonce_weight,
                                    "R2PGO: weight of the InfoNCE term.", lower=0.0)
    kernel_alpha: float = setting(
        R2PGO_ENCODER.alpha, "R2PGO eq. 4: alpha of the similarity kernel exp(-alpha |c_i - c_j|^2) on task "
        "attributes that draws the negatives (0: uniform).", lower=0.0)
    num_negatives: int = setting(EncoderConfig.num_negatives,
                                 "Contrastive negatives per anchor.", lower=1)
    club_weight: float = setting(
        CSRO_ENCODER.mlp.club_weight, "CSRO: weight of the CLUB bound on I(z; s, a) (CSRO's configs: 25 for the point "
        "robot, Hopper and Walker, 10 for Half-Cheetah-Vel, 50 for Ant / Humanoid).", lower=0.0)
    corro_negatives: str = setting(
        SetConfig.corro_negatives, "CORRO: negatives from reward noise (noise; for task sets "
        "whose tasks differ in reward) or from its conditional VAE of (s', r) given (s, a) "
        "(generative; tasks that differ in dynamics).", choices=("noise", "generative"))
    temperature: float = setting(EncoderConfig.temperature, "InfoNCE temperature.", lower=0.0)
    policy_steps: int = setting(MetaConfig.policy_steps, "Policy gradient steps.", lower=1)
    batch_size: int = setting(SACConfig.batch_size, "Policy transitions per step (all tasks).",
                              lower=1)
    meta_batch: int = setting(MetaConfig.meta_batch, "Tasks per policy step (and encoder step, "
                              "by default).", lower=1)
    lr: float = setting(SACConfig.actor_lr, "Actor and critic learning rate.", lower=0.0)
    rl_weight: float = setting(SAC_BC.rl_weight, "SAC+BC lambda (TD3+BC's alpha).", lower=0.0)
    bc_weight: float = setting(SAC_BC.bc_weight, "Behaviour-cloning weight.", lower=0.0)
    eval_episodes: int = setting(MetaConfig.eval_episodes, "Consecutive online episodes per "
                                 "task.", lower=1)
    eval_contexts: int = setting(MetaConfig.eval_contexts, "Context episodes per task of the "
                                 "offline / off-policy protocols.", lower=1)
    carry_context: bool = setting(MetaConfig.carry_context, "Online protocol: the context carries over from one "
                                  "episode to the next.")
    policy_context: str = setting(
        MetaConfig.policy_context, "What the policy's z is while it trains: the belief after a prefix of another "
        "episode of the same task (task), after its own episode up to the transition "
        "(history, BOReL's hyper-state; what an online agent has) or either, half the rows "
        "each (mixed).", choices=POLICY_CONTEXTS)
    history_episodes: Optional[int] = setting(
        None, "Episodes of one behaviour checkpoint the data's beliefs span for the policy "
        "(2: a second episode's after the first, as an agent's second online episode; "
        "default: the encoder's own horizon). Recurrent encoders only.", lower=1)
    normalize_obs: bool = setting(MetaConfig.normalize_obs, "The policy sees observations standardised by the "
                                  "training data's per-dimension mean and std (TD3+BC).")
    # ReDA (defaults: those of ReDAConfig / DynamicsConfig, defined there once)
    num_models: int = setting(DynamicsConfig.ensemble_size,
                              "ReDA: dynamics models per task (appendix B.5).", lower=1)
    model_hidden: Tuple[int, ...] = setting(DynamicsConfig.hidden, "ReDA: model hidden sizes.")
    model_rounds: int = setting(ReDAConfig.model_rounds, "ReDA: model-training rounds (each "
                                "--model_eval_every steps + held-out eval), at most: the phase "
                                "ends once every model has early-stopped.", lower=1)
    model_eval_every: int = setting(DynamicsConfig.eval_every,
                                    "ReDA: SGD steps per model round.", lower=1)
    starts_per_task: int = setting(ReDAConfig.starts_per_task,
                                   "ReDA: adversarial rollouts per task and step.", lower=1)
    adversary_rollout: int = setting(
        ReDAConfig.adversary_rollout, "ReDA: model steps per adversarial rollout (the "
        "adversarial contexts' length; 0: the encoder's --window; ReDA's code: 5).", lower=0)
    lambda_uncertainty: float = setting(ReDAConfig.lambda_uncertainty,
                                        "ReDA: lambda_1 (eq. 6).", lower=0.0)
    adversary_support_quantile: float = setting(
        ReDAConfig.support_quantile, "ReDA: an adversarial rollout in a task's models ends at "
        "the first step whose u exceeds this quantile of the task's u on its own training data "
        "(MOReL's halt; 0: never, the paper's).", lower=0.0, upper=1.0)
    model_uncertainty: str = setting(
        DynamicsConfig.uncertainty, "ReDA: u of eq. 6 and of the meta-policy's model rows: the "
        "largest member std of s' (aleatoric, the paper's) or the members' disagreement on s'.",
        choices=UNCERTAINTIES)
    model_holdout_metric: str = setting(
        DynamicsConfig.holdout_metric, "ReDA: held-out score the models' early stopping "
        "follows: Gaussian NLL (mean and variance) or the mean's MSE (MBPO).",
        choices=("nll", "mse"))
    lambda_task: float = setting(ReDAConfig.lambda_task, "ReDA: lambda_2 (eq. 6).", lower=0.0)
    policy_model_fraction: float = setting(
        ReDAConfig.policy_model_fraction, "ReDA: fraction of the meta-policy's rows that are "
        "one-step model transitions (reward penalised by lambda_uncertainty x u; 0: real data "
        "only, ReDA's Algorithm 1).", lower=0.0, upper=1.0)
    adversarial_weight: float = setting(
        ReDAConfig.adversarial_weight, "ReDA: weight of the adversarial-context InfoNCE term of "
        "the encoder (the real-context term has weight 1).", lower=0.0)
    model_structure: str = setting(
        ReDAConfig.model_structure, "ReDA: the next-state models: one ensemble per task (the "
        "paper's) or one task-conditioned ensemble on every task's data, the task's one-hot an "
        "input.", choices=MODEL_STRUCTURES)
    adversarial_contrast: str = setting(
        ReDAConfig.adversarial_contrast, "ReDA: what the adversarial contexts are contrasted "
        "with in the encoder's adversarial InfoNCE and in R of eq. 5: real contexts (positives "
        "of their task, negatives of the others) or other adversarial contexts (eq. 3 / 7 as "
        "printed: positives from the same task's models, negatives from the other tasks').",
        choices=CONTRASTS)

    # Routed to the learner configs (config.route), defaults those of the learner configs.
    tau: float = setting(SACConfig.tau, "Polyak rate of the target critics (policy and ReDA's "
                         "adversary).", lower=0.0, upper=1.0, to=("policy.tau", "adversary.tau"))
    discount: float = setting(SACConfig.discount, "Discount factor of the policy and of ReDA's "
                              "adversary.", lower=0.0, upper=1.0,
                              to=("policy.discount", "adversary.discount"))
    init_alpha: float = setting(SACConfig.init_alpha, "Entropy temperature of the policy "
                                "learner: its start if learned, its value with --learn_alpha="
                                "false (0: no entropy terms, TD3+BC's objective).", lower=0.0,
                                to=("policy.init_alpha",))
    learn_alpha: bool = setting(SACConfig.learn_alpha, "The policy learner's entropy "
                                "temperature is learned (SAC's target entropy -|A|).",
                                to=("policy.learn_alpha",))
    cql_weight: float = setting(SACConfig.cql_weight, "Weight of CQL's conservative critic term "
                                "in the policy learner (0: off; BOReL's CQL option).", lower=0.0,
                                to=("policy.cql_weight",))
    normalize_z: bool = setting(MetaConfig.normalize_z, "The policy sees task embeddings "
                                "standardised by the training embeddings' per-dimension mean "
                                "and std (VariBAD's norm_latent_for_policy).",
                                to=("normalize_z",))    # ReDA's meta: via make_config
    policy_top_fraction: float = setting(
        MetaConfig.policy_top_fraction, "The policy's actor learns only at the transitions of "
        "each training task's best episodes by return, this fraction of them (percentile "
        "behaviour cloning; SAC+BC's RL term at the same states); the critics learn from every "
        "transition (1: all, the papers').", lower=0.0, upper=1.0,
        to=("policy_top_fraction",))    # ReDA's meta: as normalize_z
    reward_relabelling: Optional[float] = setting(
        None, "Reward relabelling (BOReL's, jaxomrl.data.relabel) for every spec with a "
        "context encoder but ReDA: this fraction of each training task's episodes replaced by "
        "other tasks' episodes with rewards recomputed for it, for the encoder and the policy "
        "(default: none, or BOReL's 0.32 for borel/reward_relabelling; needs the family's "
        "relabel_reward).", lower=0.0, upper=1.0)
    nonprior_episodes: int = setting(
        MetaConfig.nonprior_episodes, "CSRO's non-prior context protocol: episodes the agent "
        "collects its own context in (uniformly random actions for the first half of their "
        "steps) before the evaluated episode, whose context is then held fixed (0: off).",
        lower=0, to=("nonprior_episodes",))  # ReDA: as normalize_z

    # Prompt-DT (defaults: PromptDTConfig's, Prompt-DT's own)
    rtg_scale: Optional[float] = setting(
        None, "Prompt-DT: returns-to-go are divided by it (default: the family's horizon; "
        "Prompt-DT's code: 500 for Half-Cheetah-Vel).", lower=0.0)
    dt_width: int = setting(PromptDTConfig.width, "Prompt-DT: transformer width.", lower=1,
                            to=("dt.width",))
    dt_layers: int = setting(PromptDTConfig.num_layers, "Prompt-DT: transformer blocks.",
                             lower=1, to=("dt.num_layers",))
    dt_heads: int = setting(PromptDTConfig.num_heads, "Prompt-DT: attention heads.", lower=1,
                            to=("dt.num_heads",))
    dt_dropout: float = setting(PromptDTConfig.dropout, "Prompt-DT: dropout rate.", lower=0.0,
                                upper=1.0, to=("dt.dropout",))
    dt_context: int = setting(PromptDTConfig.context, "Prompt-DT: K, the steps of a segment "
                              "(and of the policy's own history, K - 1, and the current).",
                              lower=1, to=("dt.context",))
    dt_prompt_length: int = setting(PromptDTConfig.prompt_length, "Prompt-DT: prompt steps "
                                    "(the end of one episode of the task).", lower=1,
                                    to=("dt.prompt_length",))
    dt_lr: float = setting(PromptDTConfig.learning_rate, "Prompt-DT: AdamW learning rate.",
                           lower=0.0, to=("dt.learning_rate",))
    dt_warmup: int = setting(PromptDTConfig.warmup_steps, "Prompt-DT: linear learning-rate "
                             "warm-up steps.", lower=0, to=("dt.warmup_steps",))
    dt_batch_size: int = setting(PromptDTConfig.batch_size, "Prompt-DT: segments per task and "
                                 "step.", lower=1, to=("dt.batch_size",))

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


def _from_settings(mapping: Mapping[str, str], values: Dict[str, Any]) -> Dict[str, Any]:
    return {field: values[name] for field, name in mapping.items()}


def make_config(spec: str, s: Settings) -> MetaConfig:
    """The ``MetaConfig`` of a spec (ReDA: its meta-policy's), built from its declaration:
    the declared encoder and head with the ``Settings`` fields they take, then the spec's
    ablations, then the routed settings (``config.route``)."""
    name, ablations = parse_spec(spec)
    d = DECLARED[name]
    values = dataclasses.asdict(s)
    values["encoder_meta_batch"] = (s.meta_batch if s.encoder_meta_batch is None
                                    else s.encoder_meta_batch)
    policy = dataclasses.replace(
        SACConfig(hidden=tuple(s.hidden), hyper_hidden=tuple(s.hyper_hidden), actor_lr=s.lr,
                  critic_lr=s.lr, batch_size=s.batch_size),
        **d.head, **_from_settings(d.head_settings, values))
    fields = dict(policy_steps=s.policy_steps, meta_batch=s.meta_batch,
                  eval_episodes=s.eval_episodes, carry_context=s.carry_context,
                  eval_contexts=s.eval_contexts, normalize_obs=s.normalize_obs)
    if d.belief_options:
        fields.update(policy_context=s.policy_context, history_episodes=s.history_episodes)
    if d.encoder is not None:
        if s.window is None:
            raise ValueError("Settings.window None is derived from the family's horizon by "
                             "registry.make (or with_family); set it to build a config "
                             "directly")
        values["window"] = d.window_episodes * s.window
        fields.update(encoder=set_paths(d.encoder, _from_settings(d.encoder_settings, values)),
                      encoder_steps=s.encoder_steps)
    fields.update(d.meta)
    config = MetaConfig(policy=policy, **fields)
    if d.kind == "meta":
        for a in ablations:
            config = set_paths(config, d.ablations[a])
    if s.reward_relabelling is not None and d.belief_options and d.kind == "meta":
        config = dataclasses.replace(config, reward_relabelling=s.reward_relabelling)
    return route(config, s)


def make_reda_config(spec: str, s: Settings) -> ReDAConfig:
    name, ablations = parse_spec(spec)
    d = DECLARED[name]
    if d.kind != "reda":
        raise ValueError(f"{spec!r} is not a ReDA spec")
    models = dict(hidden=tuple(s.model_hidden), ensemble_size=s.num_models,
                  eval_every=s.model_eval_every, holdout_metric=s.model_holdout_metric)
    config = ReDAConfig(
        meta=make_config(spec, s),
        dynamics=DynamicsConfig(target="next_state", uncertainty=s.model_uncertainty, **models),
        reward_model=DynamicsConfig(target="reward", **models),
        model_rounds=s.model_rounds,
        adversary=SACConfig(hidden=tuple(s.hidden), batch_size=s.batch_size, actor_lr=s.lr,
                            critic_lr=s.lr),
        adversarial_steps=s.encoder_steps, starts_per_task=s.starts_per_task,
        adversary_rollout=s.adversary_rollout,
        support_quantile=s.adversary_support_quantile,
        num_positives=s.contexts_per_task, lambda_uncertainty=s.lambda_uncertainty,
        lambda_task=s.lambda_task, policy_model_fraction=s.policy_model_fraction,
        policy_uncertainty=s.lambda_uncertainty, adversarial_weight=s.adversarial_weight,
        adversarial_contrast=s.adversarial_contrast, model_structure=s.model_structure)
    for a in ablations:
        config = set_paths(config, d.ablations[a])
    return route(config, s)


def make_prompt_dt_config(spec: str, s: Settings) -> PromptDTRunConfig:
    if DECLARED[parse_spec(spec)[0]].kind != "prompt_dt":
        raise ValueError(f"{spec!r} is not a Prompt-DT spec")
    if s.rtg_scale is None:
        raise ValueError("Settings.rtg_scale None is derived from the family's horizon by "
                         "registry.make (or with_family); set it to build a config directly")
    return route(PromptDTRunConfig(
        dt=PromptDTConfig(rtg_scale=s.rtg_scale, meta_batch=s.meta_batch),
        steps=s.policy_steps, eval_episodes=s.eval_episodes, carry_context=s.carry_context,
        eval_contexts=s.eval_contexts), s)


MAX_DEFAULT_WINDOW = 64


def with_family(settings: Settings, family: TaskFamily) -> Settings:
    """``settings`` with the fields derived from the family filled in: ``window`` None -> the
    horizon, at most ``MAX_DEFAULT_WINDOW``; ``rtg_scale`` None -> the horizon."""
    derived = {}
    if settings.window is None:
        derived["window"] = min(family.horizon, MAX_DEFAULT_WINDOW)
    if settings.rtg_scale is None:
        derived["rtg_scale"] = float(family.horizon)
    return dataclasses.replace(settings, **derived)



def read_config(spec: str, config: Dict) -> Dict:
    """A run's ``run.json`` config in today's form (``Algorithm.read_config``): parsed by its
    config class (fields renamed since read under their new names, fields added since at their
    defaults) and written back."""
    return dataclasses.asdict(_kind(spec)[0].from_dict(config))


def _kind(spec: str):
    """``(config class, config from settings, builder)`` of a spec's algorithm."""
    return _KINDS[DECLARED[parse_spec(spec)[0]].kind]


def config_of(spec: str, settings: Settings):
    """The run config of any spec (``MetaConfig``, ``ReDAConfig`` or ``PromptDTRunConfig``);
    derived settings must be filled in (``with_family``)."""
    return _kind(spec)[1](spec, settings)


def make(spec: str, settings: Settings, family: TaskFamily, num_train_tasks: int) -> Algorithm:
    settings = with_family(settings, family)
    algorithm = _kind(spec)[2](spec, config_of(spec, settings), family, num_train_tasks)
    return algorithm._replace(read_config=functools.partial(read_config, spec))


def _reda(spec: str, cfg: ReDAConfig, family: TaskFamily, num_train_tasks: int) -> Algorithm:
    """ReDA's three phases, or for ``reda/no_model`` (``augment=False``: no models, no adversary)
    the offline-meta recipe with ReDA's encoder (two phases), its run config ReDA's."""
    if cfg.augment:
        return make_reda(spec, cfg, family, num_train_tasks)
    base = make_algorithm(spec, cfg.meta, family, num_train_tasks)
    return base._replace(config=dataclasses.asdict(cfg))


# Each kind of run config: (config class, config from settings, builder).
_KINDS = {
    "meta": (MetaConfig, make_config, make_algorithm),
    "reda": (ReDAConfig, make_reda_config, _reda),
    "prompt_dt": (PromptDTRunConfig, make_prompt_dt_config, make_prompt_dt_algorithm),
}


def from_run_config(spec: str, config: Dict, family: TaskFamily, num_train_tasks: int,
                    **meta_overrides) -> Algorithm:
    """The algorithm of a run from its ``run.json`` config, with fields of its ``MetaConfig``
    (Prompt-DT: of its run config) replaced (e.g. ``eval_episodes``)."""
    cls, _, build = _kind(spec)
    cfg = cls.from_dict(config)
    if isinstance(cfg, ReDAConfig):          # ReDA's evaluation fields are its meta config's
        cfg = dataclasses.replace(cfg, meta=dataclasses.replace(cfg.meta, **meta_overrides))
    else:
        cfg = dataclasses.replace(cfg, **meta_overrides)
    algorithm = build(spec, cfg, family, num_train_tasks)
    return algorithm._replace(read_config=functools.partial(read_config, spec))
