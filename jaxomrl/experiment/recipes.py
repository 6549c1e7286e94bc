"""Recipes: every task set of the papers' tables as one declared, versioned experiment.

A :class:`Recipe` is data: the task family and its split (a task seed fixed in the recipe), the
collection (a preset of ``jaxomrl.experiment.collect`` and overrides of it), every method of the
table with its settings and the option sets chosen among on the validation tasks, the
evaluation columns, the paper's numbers with their table and row, the claims whose ordering the
table checks, and three :class:`Scale`\\ s:

* ``paper``: the papers' sizes (for an accelerator);
* ``cpu``: about an hour per task set on a 2-core CPU;
* ``tiny``: seconds, for tests.

Every choice a recipe makes is a :class:`Choice` saying what it was made on: the validation tasks,
the training tasks, the paper's value, or an earlier study (and whether test tasks were in view
there). The test tasks are evaluated once, at the end (``experiments/reproduce.py``); nothing in
a recipe reads them.

    from jaxomrl.experiment import recipes
    recipe = recipes.get("r2pgo_cheetah_vel")
    scale = recipe.scale("cpu")
    settings = recipe.settings("cpu", "r2pgo", candidate="history")   # an algos.Settings

``dataclasses.asdict(recipe)`` is its JSON form and :func:`from_json` its inverse (a run's
``recipe.json``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from jaxomrl import config as config_lib
from jaxomrl.algos.registry import Settings, parse_spec
from jaxomrl.experiment import collect as collect_lib

SCALES = ("paper", "cpu", "tiny")
# What a choice was made on (Choice.made_on).
MADE_ON = ("validation tasks", "training tasks", "the paper's value", "peer code's value",
           "earlier study, test tasks in view", "fixed before any run")


def _tuples(values: Any) -> Any:
    """Lists (JSON's) as tuples, inside dicts too: a recipe equals its JSON round trip."""
    if isinstance(values, dict):
        return {k: _tuples(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return tuple(_tuples(v) for v in values)
    return values


def _normalise(obj: Any, *names: str) -> None:
    for name in names:
        object.__setattr__(obj, name, _tuples(getattr(obj, name)))


@dataclasses.dataclass(frozen=True)
class Choice:
    """One setting a recipe fixes and what it was chosen on (one of ``MADE_ON``)."""

    setting: str
    value: str
    made_on: str
    note: str = ""

    def __post_init__(self):
        if self.made_on not in MADE_ON:
            raise ValueError(f"choice {self.setting}: made_on must be one of {MADE_ON}, got "
                             f"{self.made_on!r}")


@dataclasses.dataclass(frozen=True)
class Method:
    """A row of the table: ``spec`` (``jaxomrl.algos.registry``) with its own ``settings``
    (``algos.Settings`` fields) and, optionally, ``candidates``: named option sets of which the
    one with the best validation score (``Recipe.selection``) is reported. The first candidate
    is the method's default."""

    label: str
    spec: str
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    candidates: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _normalise(self, "settings", "candidates")

    def candidate_names(self) -> Tuple[str, ...]:
        return tuple(self.candidates) or ("default",)


@dataclasses.dataclass(frozen=True)
class Scale:
    """The sizes of one scale: the collection (``collect_preset`` of
    ``jaxomrl.experiment.collect.PRESETS`` with ``collect`` overrides), the ``settings``
    (``algos.Settings`` fields) of every method, ``method_settings`` of one method at this scale
    (a baseline's own schedule), the seeds, and the expected wall-clock on a 2-core CPU
    (``minutes``; ``measured``: from a run, else an estimate; None: unknown)."""

    collect_preset: str
    collect: Dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: int = 3
    minutes: Optional[float] = None
    measured: bool = False
    methods: Tuple[str, ...] = ()     # the specs run at this scale (empty: every method)
    method_settings: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _normalise(self, "collect", "settings", "methods", "method_settings")


@dataclasses.dataclass(frozen=True)
class PaperNumber:
    """The paper's ``mean ± std`` of ``method`` (a ``Method.label``) in ``column``."""

    method: str
    column: str
    mean: float
    std: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Claim:
    """An ordering the paper reports: ``better`` above ``worse`` in ``column`` (higher is
    better, or lower with ``lower_is_better``)."""

    column: str
    better: str
    worse: str
    lower_is_better: bool = False


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    version: int
    paper: str
    table: str
    task_set: str
    family: str
    task_seed: int
    collect_split: str
    methods: Tuple[Method, ...]
    # {column label: metric key of evaluate.py's results, e.g. "test_online/ep1"}
    columns: Dict[str, str]
    paper_numbers: Tuple[PaperNumber, ...]
    claims: Tuple[Claim, ...]
    choices: Tuple[Choice, ...]
    paper_scale: Scale
    cpu_scale: Scale
    tiny_scale: Scale
    selection: str = "val_online/ep1"      # the validation score candidates are chosen by
    train: Dict[str, Any] = dataclasses.field(default_factory=dict)   # train.py flags (runner)
    notes: str = ""

    def __post_init__(self):
        _normalise(self, "columns", "train")

    def scale(self, name: str) -> Scale:
        if name not in SCALES:
            raise ValueError(f"unknown scale {name!r}; known: {SCALES}")
        return getattr(self, f"{name}_scale")

    def methods_at(self, scale: str) -> Tuple[Method, ...]:
        """The methods run at ``scale`` (its ``methods``, else all), in the table's order."""
        chosen = self.scale(scale).methods
        return tuple(m for m in self.methods if not chosen or m.spec in chosen)

    def method(self, spec: str) -> Method:
        for m in self.methods:
            if m.spec == spec:
                return m
        raise ValueError(f"{self.name} has no method {spec!r}; it has "
                         f"{[m.spec for m in self.methods]}")

    def setting_values(self, scale: str, spec: str, candidate: Optional[str] = None,
                       overrides: Mapping[str, Any] = ()) -> Dict[str, Any]:
        """The ``algos.Settings`` fields a method runs with at ``scale``: the scale's, then
        :meth:`method_options`, then ``overrides`` (the command line's)."""
        return {**self.scale(scale).settings, **self.method_options(scale, spec, candidate),
                **dict(overrides)}

    def method_options(self, scale: str, spec: str,
                       candidate: Optional[str] = None) -> Dict[str, Any]:
        """What one method runs with beyond the scale's settings for every method: its own
        settings, the scale's for it (``Scale.method_settings``), then the candidate's (the
        first candidate by default)."""
        m = self.method(spec)
        names = m.candidate_names()
        candidate = candidate or names[0]
        if candidate not in names:
            raise ValueError(f"{self.name}/{spec}: no candidate {candidate!r}; it has {names}")
        return {**m.settings, **self.scale(scale).method_settings.get(spec, {}),
                **m.candidates.get(candidate, {})}

    def settings(self, scale: str, spec: str, candidate: Optional[str] = None,
                 overrides: Mapping[str, Any] = ()) -> Settings:
        """:meth:`setting_values` as a validated ``algos.Settings``."""
        return make_settings(self.setting_values(scale, spec, candidate, overrides))

    def collect_settings(self, scale: str, overrides: Mapping[str, Any] = ()) -> Dict[str, Any]:
        """The flat collection settings (``collect.config_from_settings``) at ``scale``."""
        s = self.scale(scale)
        return {**collect_lib.flat_settings(collect_lib.preset(self.family, s.collect_preset)),
                **s.collect, **dict(overrides)}

    def collect_config(self, scale: str, overrides: Mapping[str, Any] = (),
                       physics: Optional[str] = None) -> collect_lib.CollectConfig:
        """The collection's ``CollectConfig`` at ``scale`` (what ``collect.py`` builds from the
        same preset and flags)."""
        flat = self.collect_settings(scale, overrides)
        targets = {k: tuple(flat.pop(k)) for k in ("train_returns", "ood_returns")
                   if flat.get(k) is not None}
        flat.pop("split", None)
        if targets:
            flat["train_checkpoints"], flat["ood_checkpoints"] = [], None
        return collect_lib.config_from_settings(
            self.family, flat, split=self.collect_split, task_seed=self.task_seed, seed=0,
            deterministic=False, physics=physics or "auto", **targets)

    def validate(self) -> None:
        """Raises ``ValueError`` naming the problem unless every part of the recipe is usable at
        every scale: known specs, settings within their bounds, a collection config, columns
        and claims that name methods and columns of the table."""
        labels = [m.label for m in self.methods]
        if len(set(labels)) != len(labels) or len({m.spec for m in self.methods}) != len(labels):
            raise ValueError(f"{self.name}: methods must have distinct labels and specs")
        for m in self.methods:
            parse_spec(m.spec)
        for claim in self.claims:
            if claim.column not in self.columns or {claim.better, claim.worse} - set(labels):
                raise ValueError(f"{self.name}: claim {claim} names an unknown column or method")
        for n in self.paper_numbers:
            if n.column not in self.columns or n.method not in labels:
                raise ValueError(f"{self.name}: paper number {n} names an unknown column or "
                                 "method")
        for key in self.columns.values():
            if not key.startswith("test_"):
                raise ValueError(f"{self.name}: column {key!r}: the table reports test tasks")
        if not self.selection.startswith(("val_", "train_")):
            raise ValueError(f"{self.name}: selection {self.selection!r} must read validation "
                             "or training tasks")
        for scale in SCALES:
            unknown = ({*self.scale(scale).methods, *self.scale(scale).method_settings}
                       - {m.spec for m in self.methods})
            if unknown:
                raise ValueError(f"{self.name} [{scale}]: methods {sorted(unknown)} are not "
                                 "the table's")
            for m in self.methods:
                for c in m.candidate_names():
                    try:
                        self.settings(scale, m.spec, c)
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"{self.name} [{scale}] {m.spec}/{c}: {e}") from e
            try:
                self.collect_config(scale)
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"{self.name} [{scale}] collection: {e}") from e


def make_settings(values: Mapping[str, Any]) -> Settings:
    """``algos.Settings`` from field values (lists as tuples), refusing unknown fields and
    values outside a field's declared bounds or choices (``config.setting``)."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown settings {unknown}")
    settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    config_lib.check_bounds(settings)
    return settings


def from_json(values: Dict[str, Any]) -> Recipe:
    return config_lib.from_json(Recipe, values)


# ------------------------------------------------------------------------------- the recipes
RECIPES: Dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


def _rows(text: str) -> Dict[str, Tuple[Optional[Tuple[float, float]], ...]]:
    """A paper table's rows ``label | mean±std | ...`` as ``{label: ((mean, std) or None for
    "-", not reported, ...)}``."""
    rows = {}
    for line in text.strip().splitlines():
        label, *cells = [c.strip() for c in line.split("|")]
        rows[label] = tuple(None if c == "-" else tuple(float(x) for x in c.split("±"))
                            for c in cells)
    return rows


def _numbers(text: str, columns: Tuple[str, ...]) -> Tuple[PaperNumber, ...]:
    """``PaperNumber``s of a table's rows (:func:`_rows`) in ``columns``."""
    return tuple(PaperNumber(label, column, *cell) for label, cells in _rows(text).items()
                 for column, cell in zip(columns, cells) if cell is not None)


def _rounded(total: int, unit: int) -> int:
    """``total`` rounded down to a multiple of ``unit`` (at least one unit)."""
    return max(unit, total // unit * unit)


# --- R2PGO table 1 (Half-Cheetah-Vel, Walker-Rand-Params, Hopper-Rand-Params): online episodes
# on the unseen tasks, 5 seeds per method (R2PGO paper, table 1).
R2PGO_COLUMNS = tuple(f"Episode {e}" for e in range(1, 6))
R2PGO_TABLE_1 = {
    "cheetah_vel": ("Half-Cheetah-Vel", """
R2PGO | -32.3±1.5 | -28.9±1.2 | - | - | -
BOReL | -40.8±2.1 | -41.7±3.4 | - | - | -
FOCAL | -185.6±19.3 | -80.5±5.7 | -87.5±5.0 | -91.9±4.9 | -94.9±4.8
CORRO | -333.6±48.4 | -48.0±6.4 | -55.2±17.1 | -71.8±20.5 | -62.8±14.9
CSRO | -193.0±24.0 | -38.9±1.6 | -37.9±1.8 | -37.7±2.0 | -37.5±1.9"""),
    "walker_rand_params": ("Walker-Rand-Params", """
R2PGO | 520.9±29.0 | 545.3±23.5 | - | - | -
BOReL | 283.1±55.3 | 321.7±49.7 | - | - | -
FOCAL | 270.4±9.8 | 318.6±29.9 | 316.7±24.0 | 347.1±28.3 | 334.6±49.2
CORRO | 190.7±13.9 | 412.5±41.6 | 391.9±45.2 | 409.2±51.7 | 405.2±34.1
CSRO | 270.2±43.1 | 317.2±26.5 | 317.5±18.8 | 317.3±34.4 | 328.3±23.5"""),
    "hopper_rand_params": ("Hopper-Rand-Params", """
R2PGO | 539.7±22.0 | 539.1±26.8 | - | - | -
BOReL | 377.5±56.2 | 404.3±65.0 | - | - | -
FOCAL | 371.9±32.6 | 421.7±48.0 | 412.3±58.3 | 424.5±53.4 | 425.9±50.6
CORRO | 196.7±8.0 | 422.7±25.4 | 437.5±30.6 | 437.8±25.2 | 436.1±26.8
CSRO | 385.1±29.6 | 424.8±21.5 | 426.4±11.7 | 433.2±19.1 | 434.9±28.1"""),
}
R2PGO_METHODS = (("R2PGO", "r2pgo"), ("BOReL", "borel"), ("FOCAL", "focal"), ("CORRO", "corro"),
                 ("CSRO", "csro"))
# R2PGO's ablations (its fig. 3): without the hypernetwork-generated last layer (APG), without
# the kernel-weighted negatives (RCTR's uniform negatives); each takes R2PGO's option sets.
R2PGO_ABLATIONS = (("R2PGO w/o hypernetwork", "r2pgo/no_hypernetwork"),
                   ("R2PGO w/o weighted negatives", "r2pgo/no_weighted_negatives"))

# The options R2PGO's recipe uses, offered to every method with a context encoder: the policy's
# z from the belief of its own history (what the online agent has) or from another episode of
# the task; each method's choice between them is made on the validation tasks.
POLICY_CONTEXTS = {"task": {"policy_context": "task"},
                   "history": {"policy_context": "history"}}
# Settings of every method of an R2PGO recipe (each recipe's cpu scale adds its sizes).
R2PGO_SHARED = {"reward_relabelling": 0.32, "policy_top_fraction": 0.25, "rl_weight": 0.0}
# Task sets whose tasks share one reward function (they differ in physics): no relabelling, and
# CORRO's negatives from its generative model (its configs for these sets; reward noise, the
# default, where the reward changes).
SAME_REWARD = ("walker_rand_params", "hopper_rand_params")


# R2PGO eq. 4's kernel exp(-alpha |p_i - p_j|^2): alpha 1 on Half-Cheetah-Vel (1-D velocity),
# and on the Rand-Params sets (24 / 42 log multipliers) the same width relative to the tasks'
# spread, alpha = 1 / the median squared distance between training tasks' attributes (1.1 on
# Half-Cheetah-Vel, 0.047 Hopper, 0.028 Walker, task seed 9173), rounded.
KERNEL_ALPHA = {"cheetah_vel": 1.0, "hopper_rand_params": 0.05, "walker_rand_params": 0.03}


def _shared(family: str) -> Dict[str, Any]:
    """The settings every method of ``family``'s recipe shares, at every scale."""
    shared = dict(R2PGO_SHARED)
    if family in SAME_REWARD:
        del shared["reward_relabelling"]
        shared["kernel_alpha"] = KERNEL_ALPHA[family]
    return shared
R2PGO_CHOICES = (
    Choice("reward_relabelling", "0.32 for every method (Half-Cheetah-Vel)", "the paper's value",
           "BOReL's relabelled fraction (Dorfman et al. 2021), given to every method with a "
           "context encoder; none on the Rand-Params sets, whose tasks share one reward"),
    Choice("policy_context", "task or history, per method", "validation tasks",
           "zero-shot online episode 1 on the validation tasks, mean over seeds; BOReL's "
           "policy always conditions on its history (its design)"),
    Choice("cql_weight", "0 or 5, BOReL's", "validation tasks",
           "BOReL's policy is plain offline SAC (its design) where the others clone the best "
           "episodes; its option of CQL's conservative critic stands for that (version 2)"),
    Choice("history_episodes", "2 (R2PGO)", "earlier study, test tasks in view",
           "Half-Cheetah-Vel rounds 8-9 on task seed 0 (its unseen tasks were on screen); "
           "BOReL's belief horizon"),
    Choice("policy_top_fraction", "0.25", "earlier study, test tasks in view",
           "Half-Cheetah-Vel round 6 on task seed 0: percentile BC lifts the policy learner's "
           "ceiling on mixed-quality data"),
    Choice("rl_weight", "0 (percentile BC)", "earlier study, test tasks in view",
           "Half-Cheetah-Vel round 6 on task seed 0"),
    Choice("kernel_alpha", "1 (Half-Cheetah-Vel), 0.05 (Hopper), 0.03 (Walker)",
           "training tasks", "Half-Cheetah-Vel round 1, seen tasks; on Rand-Params the same "
           "width relative to the training tasks' spread: 1 / their attributes' median "
           "squared distance"),
    Choice("corro_negatives", "generative on Rand-Params, noise on Half-Cheetah-Vel",
           "peer code's value", "CORRO's relabel type per task set (Yuan & Lu 2022, §4.2)"),
)


def _task_seed_choice(seed: int, note: str) -> Choice:
    return Choice("task_seed", str(seed), "fixed before any run", note)


# Task seeds of R2PGO's recipes, each a split no earlier run used: its test tasks were never
# evaluated before the recipe's run. Half-Cheetah-Vel's version 3 takes a new one: version 1
# read the test tasks of 9173, and version 2 added BOReL's CQL option after that score was seen.
R2PGO_TASK_SEEDS = {"cheetah_vel": (20261208, 3), "walker_rand_params": (9173, 2),
                    "hopper_rand_params": (9173, 2)}


def _r2pgo_methods(family: str) -> Tuple[Method, ...]:
    r2pgo = {"task": POLICY_CONTEXTS["task"],
             "history": dict(POLICY_CONTEXTS["history"], history_episodes=2)}
    out = []
    for label, spec in R2PGO_METHODS[:1] + R2PGO_ABLATIONS + R2PGO_METHODS[1:]:
        if spec == "borel":     # its plain SAC, or with CQL's critic term (CQL's code: 5)
            out.append(Method(label, spec, candidates={"sac": {}, "cql": {"cql_weight": 5.0}}))
        elif spec.startswith("r2pgo"):
            out.append(Method(label, spec, candidates=r2pgo))
        elif spec == "corro" and family in SAME_REWARD:
            out.append(Method(label, spec, settings={"corro_negatives": "generative"},
                              candidates=dict(POLICY_CONTEXTS)))
        else:
            out.append(Method(label, spec, candidates=dict(POLICY_CONTEXTS)))
    return tuple(out)


def _r2pgo_recipe(family: str, cpu: Scale, tiny_methods=("r2pgo", "focal")) -> Recipe:
    task_set, table = R2PGO_TABLE_1[family]
    task_seed, version = R2PGO_TASK_SEEDS[family]
    seed_note = ("a split no earlier run used: its test tasks were never evaluated before this "
                 "recipe's run")
    if version > 2:
        seed_note += ("; not 9173, whose test tasks version 1 read: version 2's BOReL CQL "
                      "option was added with those scores seen")
    claims = tuple(Claim(col, "R2PGO", other) for col in ("Episode 1", "Episode 2")
                   for other, _ in R2PGO_METHODS[1:])
    return Recipe(
        name=f"r2pgo_{family}", version=version, paper="R2PGO", table="table 1",
        task_set=task_set, family=family, task_seed=task_seed, collect_split="all",
        methods=_r2pgo_methods(family),
        columns={c: f"test_online/ep{i + 1}" for i, c in enumerate(R2PGO_COLUMNS)},
        paper_numbers=_numbers(table, R2PGO_COLUMNS), claims=claims,
        choices=R2PGO_CHOICES + (_task_seed_choice(task_seed, seed_note),),
        paper_scale=Scale("default", settings=dict(
            _shared(family), encoder_steps=20_000, policy_steps=200_000, eval_episodes=5,
            eval_contexts=16, nonprior_episodes=0), seeds=5),
        cpu_scale=cpu,
        tiny_scale=Scale("default", collect=TINY_COLLECT, settings=dict(_shared(family),
                                                                        **TINY_SETTINGS),
                         seeds=2, minutes=2.0, measured=True, methods=tiny_methods),
        train={"chunk_steps": 500},
        notes=("Version 2 adds R2PGO's two ablations, five online episodes at cpu scale and "
               "BOReL's CQL option (version 1: R2PGO and the four baselines, two episodes). "
               + ("Version 3 is version 2 on a new task seed (version 1's test tasks had "
                  "been read; version 2 never ran). " if version > 2 else "")
               + "BOReL's policy is plain "
               "SAC on its hyper-state, its own design: rl_weight and bc_weight do not apply to "
               "it; its beliefs span 2 episodes (BOReL's horizon)."))


# The tiny scale: a few hundred SAC steps on every task, a handful of updates per phase.
TINY_COLLECT = dict(collector="conditioned", horizon=20, num_train=4, num_val=2, num_test=2, hidden=(16, 16), batch_size=32,
                    num_envs=2, buffer_capacity=2_000, warmup_steps=40,
                    updates_per_iteration=1, sac_steps=80, checkpoint_every_steps=40,
                    train_checkpoints=(1, 2), ood_checkpoints=(0,), transitions_per_task=80,
                    ood_transitions_per_task=40, rollout_envs=2)
TINY_SETTINGS = dict(hidden=(16, 16), hyper_hidden=(8,), encoder_hidden=8, latent_dim=2,
                     window=8, encoder_steps=2, policy_steps=2, batch_size=32, meta_batch=4,
                     contexts_per_task=2, num_negatives=2, eval_episodes=2, eval_contexts=1,
                     nonprior_episodes=0, dt_width=8, dt_layers=1, dt_batch_size=2,
                     dt_warmup=1, dt_context=4, dt_prompt_length=2, model_hidden=(8,),
                     model_rounds=2, model_eval_every=2, starts_per_task=2, num_models=2)

# Half-Cheetah-Vel at CPU scale: the cpu collection (one agent conditioned on the target
# velocity) and round 9's training sizes with 3,000 encoder steps; CSRO's non-prior protocol,
# not a column of the table, is off.
R2PGO_CPU_SETTINGS = dict(hidden=(128, 128), window=200, vae_posteriors=16, vae_transitions=16,
                          encoder_steps=3000, policy_steps=30_000, eval_episodes=5,
                          nonprior_episodes=0)
register(_r2pgo_recipe("cheetah_vel", Scale(
    "cpu", settings=dict(_shared("cheetah_vel"), kernel_alpha=KERNEL_ALPHA["cheetah_vel"],
                         **R2PGO_CPU_SETTINGS), seeds=3, minutes=120.0, measured=False)))
# Rand-params task sets at CPU scale: a conditioned collector on 200-step episodes (the tasks'
# attributes are the log multipliers; research/results/rand_params_collectors.md compares it
# with per-task SAC on the same budget), the same training sizes.
_RAND_PARAMS_CPU = dict(split="all", collector="conditioned", horizon=200, hidden=(128, 128),
                        batch_size=256, num_envs=2, buffer_capacity=1_000_000,
                        warmup_steps=1_000, updates_per_iteration=50, train_reward="reward",
                        sac_steps=20_000, checkpoint_every_steps=1_000,
                        train_checkpoints=(1, 3, 6, 20), ood_checkpoints=(2, 4, 10, 15),
                        transitions_per_task=8_000, ood_transitions_per_task=8_000,
                        rollout_envs=10)
for _family in ("walker_rand_params", "hopper_rand_params"):
    # tiny: CORRO's generative negatives on both; R2PGO on Hopper's (the suite's time)
    register(_r2pgo_recipe(_family, Scale("default", collect=_RAND_PARAMS_CPU,
                                          settings=dict(_shared(_family), **R2PGO_CPU_SETTINGS),
                                          seeds=3),
                           tiny_methods=("r2pgo", "corro") if _family == "hopper_rand_params"
                           else ("corro",)))


# --- ReDA tables 1 (on-policy protocol) and 2 (off-policy protocol), 5 seeds (ReDA paper).
REDA_METHODS = (("OM-BC", "om_bc"), ("OM-SAC", "om_sac"), ("CORRO", "corro"),
                ("FOCAL", "focal"), ("PromptDT", "prompt_dt"), ("ReDA", "reda"))
REDA_COLUMNS = ("on-policy (table 1)", "off-policy (table 2)")
_REDA_TABLE_1 = """
Walker2d Gravity-1 | 835.7±158.9 | 1227.4±176.8 | 965.7±283.5 | 1260.2±292.1 | 1019.7±216.4 | 1720.8±321.3
Walker2d Gravity-3 | 1110.4±170.6 | 1180.1±175.7 | 1269.8±309.9 | 1584.6±361.4 | 1125.0±226.0 | 1611.6±288.0
Walker2d Gravity-5 | 657.4±265.8 | 1216.5±388.4 | 1412.5±387.7 | 2181.7±355.7 | 1082.8±277.7 | 2560.7±362.1
Walker2d Dof-Damping-1 | 2692.3±488.5 | 2995.4±287.9 | 2756.5±379.5 | 3409.2±343.9 | 2635.0±298.6 | 3769.2±364.2
Walker2d Dof-Damping-3 | 1734.5±309.0 | 1941.4±342.5 | 2232.0±332.4 | 1940.7±321.9 | 1935.1±342.3 | 3536.7±258.7
Walker2d Dof-Damping-5 | 998.8±231.3 | 1478.9±267.6 | 1647.5±423.3 | 2222.0±311.0 | 1136.0±281.2 | 2497.6±339.4
Ant Gravity-1 | 3155.4±347.4 | 2943.5±533.6 | 3154.4±698.3 | 3420.9±536.6 | 3137.1±437.9 | 3536.8±479.8
Ant Gravity-3 | 3673.5±471.3 | 3623.4±495.4 | 3845.0±502.3 | 3763.1±452.9 | 3665.7±437.9 | 4403.4±464.8
Ant Gravity-5 | 3273.5±417.4 | 3543.7±576.0 | 3451.1±549.6 | 3681.3±567.2 | 3114.1±476.4 | 3735.2±498.3
Ant Dof-Damping-1 | 1849.5±378.3 | 3243.6±395.4 | 3107.5±299.0 | 2387.7±380.5 | 2764.7±374.1 | 3409.2±332.1
Ant Dof-Damping-3 | 3119.1±382.9 | 3385.6±395.3 | 3289.4±375.4 | 3160.2±361.2 | 3378.4±358.5 | 3804.2±412.3
Ant Dof-Damping-5 | 2391.9±312.3 | 2422.7±379.4 | 2243.7±432.3 | 2461.6±356.9 | 2145.9±309.2 | 2547.7±366.7
Hopper Gravity-1 | 1002.0±266.6 | 1453.6±564.4 | 903.4±134.4 | 1148.6±344.4 | 1123.9±333.0 | 2069.6±436.5
Hopper Gravity-3 | 1403.0±405.5 | 1534.7±398.6 | 700.5±121.9 | 1562.5±348.3 | 1264.2±355.2 | 1784.0±415.8
Hopper Gravity-5 | 1086.7±184.8 | 1495.5±317.9 | 622.7±200.8 | 594.3±443.6 | 1001.6±232.7 | 1539.1±493.1
Hopper Dof-Damping-1 | 1228.3±233.3 | 1104.6±258.3 | 787.3±132.5 | 835.0±309.5 | 971.9±265.5 | 1419.6±296.7
Hopper Dof-Damping-3 | 1463.4±390.8 | 1455.6±388.1 | 768.2±191.1 | 1445.6±356.3 | 1223.7±377.4 | 1573.0±400.5
Hopper Dof-Damping-5 | 1047.3±291.4 | 1461.7±371.7 | 892.8±164.3 | 1356.0±239.2 | 1133.9±186.5 | 1552.3±326.5
HalfCheetah Gravity-1 | 4204.0±840.3 | 4641.7±745.6 | 5353.7±869.6 | 3651.9±505.9 | 5034.1±644.3 | 6772.0±649.5
HalfCheetah Gravity-3 | 3719.9±614.6 | 5419.6±682.0 | 5054.6±754.7 | 2950.0±391.7 | 3900.9±944.0 | 6130.8±856.4
HalfCheetah Gravity-5 | 2684.8±584.5 | 4398.2±778.3 | 4165.7±654.7 | 1863.9±633.4 | 3494.8±711.6 | 4549.0±753.9"""
_REDA_TABLE_2 = """
Walker2d Gravity-1 | 102.9±16.5 | 773.9±115.4 | 354.9±113.3 | 972.4±314.9 | 516.5±165.3 | 1349.8±374.2
Walker2d Gravity-3 | 887.5±197.7 | 1096.0±182.6 | 755.7±387.5 | 1331.1±384.5 | 996.6±204.1 | 1336.3±363.3
Walker2d Gravity-5 | 655.4±253.2 | 983.0±394.0 | 899.1±298.5 | 2318.6±312.3 | 1254.8±255.0 | 2421.0±398.7
Walker2d Dof-Damping-1 | 2566.4±358.6 | 2567.3±381.1 | 2138.2±432.6 | 2141.7±299.3 | 2594.3±315.6 | 3274.5±429.5
Walker2d Dof-Damping-3 | 1599.2±340.2 | 1611.1±415.6 | 1765.8±498.6 | 1619.0±362.0 | 1883.9±331.2 | 3236.0±322.7
Walker2d Dof-Damping-5 | 823.6±340.1 | 1798.6±345.6 | 1667.2±438.8 | 1943.4±353.4 | 1446.5±326.5 | 2243.7±352.2
Ant Gravity-1 | 2512.5±295.1 | 2673.2±464.3 | 1876.9±527.6 | 3240.3±346.8 | 2895.3±349.5 | 3392.5±343.9
Ant Gravity-3 | 2910.7±283.4 | 2982.0±422.7 | 1575.8±675.5 | 3442.5±337.2 | 3243.7±322.4 | 4128.6±348.3
Ant Gravity-5 | 3064.7±385.9 | 2764.7±445.5 | 1647.8±624.2 | 3437.4±357.1 | 3049.1±364.1 | 3529.1±337.4
Ant Dof-Damping-1 | 2319.5±373.3 | 3125.4±362.8 | 2469.4±446.6 | 2171.1±363.3 | 2638.5±332.6 | 3367.4±302.7
Ant Dof-Damping-3 | 2580.4±291.1 | 2848.9±399.0 | 2507.5±355.7 | 3022.2±318.5 | 2723.8±317.7 | 3727.2±356.4
Ant Dof-Damping-5 | 2380.7±228.1 | 2218.4±360.1 | 2174.6±289.0 | 2591.0±338.7 | 2441.0±206.5 | 2611.3±382.5
Hopper Gravity-1 | 1394.2±330.2 | 1322.9±455.2 | 925.6±107.1 | 1328.8±306.7 | 1305.5±346.4 | 1674.5±512.6
Hopper Gravity-3 | 1497.8±406.2 | 1429.3±348.3 | 671.3±223.9 | 1844.8±741.2 | 1574.3±366.7 | 1521.2±376.0
Hopper Gravity-5 | 1262.6±412.6 | 1318.6±331.5 | 754.8±208.7 | 750.1±299.9 | 1396.6±276.3 | 1489.6±319.9
Hopper Dof-Damping-1 | 1241.7±144.3 | 991.5±189.2 | 804.3±122.8 | 905.2±345.9 | 1112.9±164.6 | 1255.7±306.4
Hopper Dof-Damping-3 | 1161.4±279.9 | 1136.9±372.9 | 863.4±212.7 | 672.8±301.7 | 1284.7±244.3 | 1440.0±369.6
Hopper Dof-Damping-5 | 715.8±220.2 | 1387.3±416.6 | 637.6±275.7 | 722.9±295.3 | 910.4±264.2 | 1492.2±334.3
HalfCheetah Gravity-1 | 6024.0±768.2 | 3985.1±676.9 | 5244.7±766.6 | 3960.4±517.0 | 5755.3±582.9 | 6243.8±604.4
HalfCheetah Gravity-3 | 2112.9±601.1 | 4792.5±596.7 | 4865.2±710.8 | 2293.1±532.1 | 3211.5±660.6 | 5749.2±599.0
HalfCheetah Gravity-5 | 3006.2±684.3 | 4164.7±602.3 | 3654.6±677.0 | 2181.2±414.6 | 3243.8±601.1 | 4268.1±562.2"""


REDA_TABLE_1, REDA_TABLE_2 = _rows(_REDA_TABLE_1), _rows(_REDA_TABLE_2)
_REDA_ROBOTS = {"Walker2d": "walker2d", "Ant": "ant", "Hopper": "hopper",
                "HalfCheetah": "halfcheetah"}
_REDA_FIELDS = {"Gravity": "gravity", "Dof-Damping": "dof_damping"}
# Training checkpoints of a k-checkpoint task set (ReDA appendix B.2 / its code: {25},
# {5, 25, 45} or {5, 10, 25, 40, 45} of 50); the cpu collection has 20, spread alike.
_REDA_PAPER_CKPTS = {1: (25,), 3: (5, 25, 45), 5: (5, 10, 25, 40, 45)}
_REDA_CPU_CKPTS = {1: (10,), 3: (2, 10, 18), 5: (2, 4, 10, 16, 18)}
REDA_SETTINGS_CPU = dict(hidden=(128, 128), window=16, policy_steps=20_000,
                         meta_batch=3, eval_episodes=2, model_rounds=40,
                         learn_alpha=False, init_alpha=0.0, nonprior_episodes=0)
# Prompt-DT trains on its own schedule in every table: its code's 5,000 iterations of 10
# updates (Xu et al. 2022, github.com/mxu34/prompt-dt, pdt_main.py: max_iters,
# num_steps_per_iter); ReDA's 1,000 epochs of 1,000 updates are its SAC+BC meta-policy's, which
# it gives FOCAL and CORRO too (ReDA appendix B.4-B.5).
PROMPT_DT_PAPER_STEPS = 50_000
REDA_CHOICES = (
    Choice("model_structure", "per task (the paper's)", "the paper's value"),
    Choice("Prompt-DT's policy steps (paper)", f"{PROMPT_DT_PAPER_STEPS:,}",
           "peer code's value", "Prompt-DT's code: 5,000 iterations x 10 updates; the other "
           "methods' 600,000 are ReDA's SAC+BC meta-policy's (version 2; version 1 gave "
           "Prompt-DT those too)"),
    Choice("policy sizes, window, steps (cpu)", "128x128, 16, 2,000 / 20,000",
           "fixed before any run", "Gravity-1 task sets, before any result"),
    Choice("learn_alpha / init_alpha", "false / 0 (TD3+BC's objective)",
           "earlier study, test tasks in view", "Half-Cheetah-Vel round 5"),
)


def _reda_recipe(task_set: str) -> Recipe:
    robot, kind, k = task_set.split(" ")[0], task_set.split(" ")[1].rsplit("-", 1)[0], \
        int(task_set.rsplit("-", 1)[1])
    family = f"{_REDA_ROBOTS[robot]}_{_REDA_FIELDS[kind]}"
    numbers = tuple(PaperNumber(label, col, *row[i])
                    for col, row in ((REDA_COLUMNS[0], REDA_TABLE_1[task_set]),
                                     (REDA_COLUMNS[1], REDA_TABLE_2[task_set]))
                    for i, (label, _) in enumerate(REDA_METHODS))
    claims = tuple(Claim(col, "ReDA", label) for col in REDA_COLUMNS
                   for label, _ in REDA_METHODS[:-1])
    cpu_ckpts = _REDA_CPU_CKPTS[k]
    cpu_ood = tuple(c for c in range(21) if c not in cpu_ckpts)
    paper_ood = tuple(c for c in range(51) if c not in _REDA_PAPER_CKPTS[k])
    cpu_collect = dict(train_checkpoints=cpu_ckpts, ood_checkpoints=cpu_ood,
                       transitions_per_task=_rounded(40_000, 10 * k),
                       ood_transitions_per_task=_rounded(40_000, 10 * len(cpu_ood)))
    paper_collect = dict(collector="per_task", train_checkpoints=_REDA_PAPER_CKPTS[k],
                         ood_checkpoints=paper_ood,
                         transitions_per_task=_rounded(1_000_000 // 3, 10 * k),
                         ood_transitions_per_task=_rounded(50_000, 10 * len(paper_ood)))
    measured = task_set in ("HalfCheetah Gravity-1", "Walker2d Gravity-1")
    return Recipe(
        name="reda_" + task_set.lower().replace(" ", "_").replace("-", "_"), version=2,
        paper="ReDA", table="tables 1-2", task_set=task_set, family=family, task_seed=0,
        collect_split="all",
        methods=tuple(Method(label, spec) for label, spec in REDA_METHODS),
        columns={REDA_COLUMNS[0]: "test_online/ep1", REDA_COLUMNS[1]: "test_offpolicy_ctx/ep1"},
        paper_numbers=numbers, claims=claims, choices=REDA_CHOICES,
        paper_scale=Scale("default", collect=paper_collect, settings=dict(
            window=3, encoder_steps=150_000, policy_steps=600_000, eval_episodes=2,
            eval_contexts=16, nonprior_episodes=0), seeds=5,
            method_settings={"prompt_dt": {"policy_steps": PROMPT_DT_PAPER_STEPS}}),
        cpu_scale=Scale("cpu" if family in collect_lib.PRESETS["cpu"] else "default",
                        collect=dict(_GRAVITY_CPU_COLLECT, **cpu_collect),
                        settings=REDA_SETTINGS_CPU, seeds=3,
                        minutes=75.0 if measured else None, measured=False),
        tiny_scale=Scale("default", collect=dict(TINY_COLLECT, collector="per_task"),
                         settings=TINY_SETTINGS, seeds=2, minutes=2.0, measured=True,
                         methods=("om_sac", "reda")),
        train={"chunk_steps": 1000},
        notes=("The gravity / damping multipliers of ReDA (x0.5, x1, x1.5 seen; x0.8, x1.2 "
               "test) and validation tasks x0.7, x1.3 of this project's own. Episodes of 200 "
               "steps at cpu scale (the paper's: 1,000)."))


_GRAVITY_CPU_COLLECT = {
    k: v for k, v in collect_lib.flat_settings(collect_lib.PRESETS["cpu"]["halfcheetah_gravity"]
                                               ).items()
    if k not in ("train_checkpoints", "ood_checkpoints", "transitions_per_task",
                 "ood_transitions_per_task", "split")}
for _task_set in REDA_TABLE_1:
    register(_reda_recipe(_task_set))


# --- The point-robot comparison (R2PGO fig. 2's task set; every method of both papers): the
# README's main job's full table.
POINT_ROBOT_SPECS = ("prompt_dt", "borel", "borel/reward_relabelling", "r2pgo",
                     "r2pgo/no_hypernetwork", "om_bc", "om_sac", "r2pgo/no_weighted_negatives",
                     "csro", "focal", "corro", "bc")
_PR_LABELS = {"prompt_dt": "Prompt-DT", "borel": "BOReL",
              "borel/reward_relabelling": "BOReL (relabelled)", "r2pgo": "R2PGO",
              "r2pgo/no_hypernetwork": "R2PGO w/o hypernetwork", "om_bc": "OM-BC",
              "om_sac": "OM-SAC", "r2pgo/no_weighted_negatives": "R2PGO w/o weighted negatives",
              "csro": "CSRO", "focal": "FOCAL", "corro": "CORRO", "bc": "BC"}
POINT_ROBOT_CPU = dict(hidden=(64, 64), encoder_steps=1000, policy_steps=3000, eval_episodes=3,
                       eval_contexts=16, dt_width=32, dt_layers=2, dt_batch_size=4,
                       dt_warmup=300, dt_lr=3e-4)
register(Recipe(
    name="point_robot_comparison", version=1, paper="R2PGO", table="figure 2 (curves only)",
    task_set="Point-Robot-Sparse", family="point_robot_sparse", task_seed=0, collect_split="all",
    methods=tuple(Method(_PR_LABELS[s], s) for s in POINT_ROBOT_SPECS),
    columns={"Episode 1": "test_online/ep1", "offline context": "test_offline_ctx/ep1",
             "off-policy context": "test_offpolicy_ctx/ep1"},
    paper_numbers=(),
    claims=tuple(Claim("Episode 1", "R2PGO", o) for o in ("BOReL", "FOCAL", "CORRO", "CSRO")),
    choices=(Choice("sizes and steps (cpu)", "64x64, 1,000 / 3,000", "fixed before any run",
                    "the README main job's, set before its first result"),),
    paper_scale=Scale("default", settings=dict(encoder_steps=20_000, policy_steps=100_000,
                                               eval_episodes=5, eval_contexts=16), seeds=5),
    cpu_scale=Scale("default", settings=POINT_ROBOT_CPU, seeds=3, minutes=19.4, measured=True),
    tiny_scale=Scale("default", collect=dict(num_train=4, num_val=2, num_test=2, sac_steps=80,
                                             checkpoint_every_steps=40,
                                             warmup_steps=40, num_envs=2,
                                             train_checkpoints=(1, 2), ood_checkpoints=(0,),
                                             transitions_per_task=80,
                                             ood_transitions_per_task=40, rollout_envs=2),
                     settings=TINY_SETTINGS, seeds=2, minutes=4.0, methods=("r2pgo", "bc")),
    notes="R2PGO reports this task set as curves (figure 2), without numbers."))


# --- ReDA's didactic example (§5.1, figure 2): InvertedPendulum, gravity x1 / x2; each task's
# training data from one behaviour (return ~100 / ~50), its held-out contexts from the other's.
register(Recipe(
    name="reda_didactic", version=1, paper="ReDA", table="figure 2 (didactic example)",
    task_set="InvertedPendulum gravity x1 / x2", family="inverted_pendulum_gravity",
    task_seed=0, collect_split="train",
    methods=(Method("w/o model", "reda/no_model"), Method("ReDA", "reda"),
             Method("w/o adversary", "reda/no_adversary")),
    columns={"d(phi)": "test_dphi"},
    paper_numbers=(),
    claims=(Claim("d(phi)", "ReDA", "w/o model", lower_is_better=True),),
    choices=(Choice("data", "returns ~100 / ~50 per task", "the paper's value"),),
    paper_scale=Scale("default", collect=dict(
        horizon=200, sac_steps=20_000, checkpoint_every_steps=1_000, num_envs=8,
        hidden=(64, 64), batch_size=128, updates_per_iteration=4, warmup_steps=1_000,
        buffer_capacity=50_000, train_returns=(100.0, 50.0), ood_returns=(50.0, 100.0),
        transitions_per_task=6_000, ood_transitions_per_task=2_000, rollout_envs=10),
        settings=dict(hidden=(64, 64), window=8, encoder_steps=1_000_000, policy_steps=200,
                      model_rounds=30, model_hidden=(64, 64, 64),
                      meta_batch=2), seeds=5),
    cpu_scale=Scale("default", collect=dict(
        horizon=200, sac_steps=20_000, checkpoint_every_steps=1_000, num_envs=8,
        hidden=(64, 64), batch_size=128, updates_per_iteration=4, warmup_steps=1_000,
        buffer_capacity=50_000, train_returns=(100.0, 50.0), ood_returns=(50.0, 100.0),
        transitions_per_task=6_000, ood_transitions_per_task=2_000, rollout_envs=10),
        settings=dict(hidden=(64, 64), window=8, encoder_steps=6000, policy_steps=200,
                      model_rounds=30, model_hidden=(64, 64, 64),
                      meta_batch=2), seeds=3, minutes=10.0, measured=True),
    tiny_scale=Scale("default", collect=dict(
        horizon=20, sac_steps=80, checkpoint_every_steps=40, num_envs=2, hidden=(16, 16),
        batch_size=32, updates_per_iteration=1, warmup_steps=40, buffer_capacity=2_000,
        train_returns=(10.0, 5.0), ood_returns=(5.0, 10.0), transitions_per_task=80,
        ood_transitions_per_task=40, rollout_envs=2),
        settings=TINY_SETTINGS, seeds=2, minutes=4.0, methods=("reda/no_model", "reda")),
    train={"chunk_steps": 1000},
    notes="The test tasks are the training tasks; the contexts come from held-out behaviour."))


def describe(recipe: Recipe) -> str:
    """One line per scale for ``reproduce.py --list``."""
    lines = [f"{recipe.name} (v{recipe.version}): {recipe.paper} {recipe.table}, "
             f"{recipe.task_set}; {', '.join(m.label for m in recipe.methods)}"]
    for name in SCALES:
        s = recipe.scale(name)
        when = (("sized for an accelerator" if name == "paper" else "not yet timed")
                if s.minutes is None else
                f"{'' if s.measured else '~'}{s.minutes:g} min on 2 cores"
                + ("" if s.measured else " (estimate)"))
        lines.append(f"    {name:5s} seeds {s.seeds}, {when}")
    return "\n".join(lines)

