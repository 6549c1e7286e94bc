"""Evaluates finished training runs under every protocol and writes the papers' tables and figures.

    python experiments/evaluate.py --workdir=runs/point_robot_r2pgo --episodes=5

For every run under ``--workdir`` (the ``experiments/train.py`` workdir; one subdirectory per
spec, or ``--algo`` to choose), restores the trained parameters of every seed and evaluates, in the
seen (training) and unseen (test) tasks, in one jitted program vmapped over seeds:

* on-policy / online adaptation: ``--episodes`` consecutive episodes per task, the task inferred
  from the policy's own history (episode 1 = zero-shot);
* offline context: one episode of the task's training data, embedding held fixed;
* off-policy context: one episode of held-out behaviour checkpoints (``ood.npz``), held fixed;
* non-prior context (CSRO): the agent collects its own context (the run's ``nonprior_episodes``
  episodes, the first half of their steps random), then one episode with it held fixed;
* ReDA's d(phi) of every encoder (training-data vs held-out-checkpoint contexts).

Writes to ``--out`` (default ``<workdir>/evaluation``): ``results.json`` (per-seed x per-task x
per-episode returns and summaries), ``tables.md`` (mean ± sample std over seeds [95 % bootstrap
interval over seeds, stratified by task], best in bold, ``≈`` where not distinguishable from it,
the IQM over seeds and tasks; also printed; ``--render=<dir>`` writes it again from the
``results.json``), ``adaptation.png`` (return per adaptation episode), ``protocols.png`` (bars per
protocol), ``ablations.png`` (an algorithm beside its evaluated ablations), ``tsne.png`` (task
embeddings coloured by the task parameter; crosses: held-out checkpoint contexts),
``learning_curve_*.png`` (if the runs evaluated during training, ``train.py --eval_every``),
``adversarial.png`` for ReDA runs (the adversarial phase's diagnostics against encoder steps:
adversary return, r_adv, model uncertainty, states outside the data's range, InfoNCE on real vs
adversarial contexts). With ``--trace=x_velocity`` (a key of the family's step ``info``), also
``trace_x_velocity.png``: that quantity against time in the first online episode of
``--trace_tasks`` unseen tasks spread over the task attribute, for ``--trace_algos``, the task
attribute drawn as the target (for Half-Cheetah-Vel: forward velocity against the target
velocity), and in the tables and ``results.json`` the steps until it stays within
``--trace_tolerance`` of the target.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import jax
import numpy as np
from absl import flags, logging

from jaxomrl.data.sampler import EVAL_SPLITS, run_data
from jaxomrl.data.dataset import checkpoint_return_table
from jaxomrl.eval import report, stats
from jaxomrl.eval.adaptation import online_rollout
from jaxomrl.experiment import cli
from jaxomrl.experiment.runs import RunLookupError, find_runs, load_data, restore
from jaxomrl.eval.stats import scalar_metrics, seed_summary, task_scores
from jaxomrl.experiment.programs import evaluation_keys
from jaxomrl.experiment.run_dir import RESULTS_JSON
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
_PHYSICS = cli.define_physics_flag()
flags.DEFINE_string("workdir", None, "experiments/train.py workdir (one subdirectory per spec).")
flags.DEFINE_list("algo", None, "Specs to evaluate (default: every finished run in --workdir).")
flags.DEFINE_string("data", None, "train.npz or its directory (default: the runs' dataset).")
flags.DEFINE_integer("eval_episodes", None, "Consecutive online adaptation episodes per task "
                     "(default: the runs' own, train.py's --eval_episodes).")
flags.DEFINE_integer("eval_contexts", None, "Context episodes per task of the fixed-context "
                     "protocols (default: the runs' own, train.py's --eval_contexts).")
cli.renamed_flag("episodes", "eval_episodes")
cli.renamed_flag("contexts", "eval_contexts")
flags.DEFINE_list("splits", list(EVAL_SPLITS), "Task splits to evaluate in (train, val, test: "
                  "the test tasks are read here once, at the end; choices are made on val).")
flags.DEFINE_integer("tsne_contexts", 8, "Contexts per task and source in the t-SNE plot.")
flags.DEFINE_bool("from_training", False,
                  "Tables and figures from the runs' own end-of-training evaluation "
                  "(results.json: train.py's --eval_episodes / --eval_contexts and keys) instead "
                  "of evaluating again; no MJX rollouts, the t-SNE embeddings still computed. "
                  "--eval_episodes / --eval_contexts are then those of the runs.")
flags.DEFINE_string("out", None, "Output directory (default: <workdir>/evaluation).")
flags.DEFINE_string("trace", None, "A per-step info key of the family (e.g. x_velocity) to plot "
                    "against time in episode 1 with the task attribute as its target.")
flags.DEFINE_list("trace_algos", None, "Specs whose traces are drawn (default: all evaluated).")
flags.DEFINE_integer("trace_tasks", 4, "Unseen tasks in the trace figure (spread over the "
                     "task attribute).")
flags.DEFINE_float("trace_tolerance", 0.25, "Steps to target: the first step from which the "
                   "traced quantity stays within this distance of the target for 10 steps.")
flags.DEFINE_string("render", None, "An evaluation directory (--out of an earlier call): its "
                    "tables.md written again from its results.json; nothing is evaluated.")
flags.register_multi_flags_validator(
    ["workdir", "render"], lambda f: f["workdir"] is not None or f["render"] is not None,
    "--workdir is required (or --render)")
cli.require_ints(1, "eval_episodes", "eval_contexts", "tsne_contexts", "trace_tasks")
cli.require_finite("trace_tolerance", lower=0.0, strict=True)

SETTLE_STEPS = 10   # steps the traced quantity must stay near the target to count as reached

PROTOCOLS = {"online": "on-policy (online)", "offline_ctx": "offline context",
             "offpolicy_ctx": "off-policy context", "nonprior_ctx": "non-prior context"}
SPLITS = {"test": "unseen (test)", "val": "validation", "train": "seen"}


class EvaluationError(RunLookupError):
    pass


def _setting(config: Dict[str, Any], name: str):
    """``name``'s value in a run's (nested) algorithm config, None if absent."""
    if name in config:
        return config[name]
    for v in config.values():
        found = _setting(v, name) if isinstance(v, dict) else None
        if found is not None:
            return found
    return None


def _runs_setting(identities: Dict[str, Any], name: str) -> int:
    """The runs' own value of an evaluation setting (train.py's), which must agree."""
    values = {_setting(i["config"], name) for i in identities.values()}
    if len(values) != 1 or None in values:
        raise EvaluationError(f"the runs were trained with different --{name} {sorted(values)}: "
                              f"give --{name}")
    return int(values.pop())


def training_evaluation(spec: str, run_dir: str) -> Dict[str, np.ndarray]:
    """The run's own end-of-training evaluation (``results.json``'s ``per_task``), in
    :func:`evaluate_run`'s layout ``{metric: [S, T, K]}``."""
    path = os.path.join(run_dir, RESULTS_JSON)
    try:
        with open(path) as f:
            per_task = json.load(f)["per_task"]
    except (OSError, ValueError, KeyError) as e:
        raise EvaluationError(f"--from_training: {spec}: no evaluation in {path} ({e}); run "
                              "evaluate.py without --from_training") from e
    return {k: np.asarray(v) for k, v in per_task.items()}


def evaluate_run(spec: str, run_dir: str, identity: Dict[str, Any], family, ds, data, eval_data,
                 episodes: int, contexts: int, tsne_contexts: int, from_training: bool = False):
    """Per-seed evaluation arrays ``{metric: [S, T, K]}`` (with ``from_training``: the run's own,
    :func:`training_evaluation`) and the first seed's embeddings of every task's contexts
    (``{"data": [T, N, D], "ood": ...}``, None without an encoder)."""
    algorithm, outputs = restore(spec, run_dir, identity, family, ds, data,
                                 eval_episodes=episodes, eval_contexts=contexts)
    if from_training:
        evaluation = training_evaluation(spec, run_dir)
    else:
        evaluation = jax.jit(jax.vmap(algorithm.evaluate, in_axes=(0, 0, None)))(
            outputs, evaluation_keys(identity["seeds"]), eval_data)
        evaluation = {k: np.asarray(v) for k, v in jax.device_get(evaluation).items()}
    embeddings = None
    if algorithm.embed is not None:
        first = jax.tree_util.tree_map(lambda x: x[0], outputs)
        embed = jax.jit(algorithm.embed, static_argnums=3)
        key = jax.random.PRNGKey(0)
        embeddings = {}
        for source in ("data", "ood"):
            parts = [eval_data[source][s] for s in EVAL_SPLITS if s in eval_data[source]]
            if parts:
                embeddings[source] = np.concatenate(
                    [np.asarray(embed(first, jax.random.fold_in(key, i), p, tsne_contexts))
                     for i, p in enumerate(parts)])
    return evaluation, embeddings


def trace_run(spec: str, run_dir: str, identity: Dict[str, Any], family, ds, data, tasks,
              record: str) -> np.ndarray:
    """``[seeds, tasks, horizon]``: ``record`` (a step ``info`` key of ``family``) in the first
    online episode (zero-shot, deterministic policy) of ``tasks``, every seed in one jitted
    program."""
    algorithm, outputs = restore(spec, run_dir, identity, family, ds, data)
    if algorithm.policy is None:
        raise EvaluationError(f"{spec} does not expose its policy for traces")

    def one(outputs, key):
        policy, context = algorithm.policy(outputs)
        return online_rollout(family, tasks, policy, context, key, 1,
                              record=(record,))[1][record]

    keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(evaluation_keys(identity["seeds"]))
    return np.asarray(jax.jit(jax.vmap(one))(outputs, keys))


def steps_to_target(trace: np.ndarray, target: np.ndarray, tolerance: float) -> np.ndarray:
    """``[..., tasks]``: the first step from which ``trace [..., tasks, steps]`` stays within
    ``tolerance`` of ``target [tasks]`` for ``SETTLE_STEPS`` steps (the episode length if never)."""
    near = np.abs(trace - target[:, None]) <= tolerance
    window = min(SETTLE_STEPS, near.shape[-1])
    settled = np.lib.stride_tricks.sliding_window_view(near, window, axis=-1).all(-1)
    return np.where(settled.any(-1), settled.argmax(-1), near.shape[-1])


def trace_tasks_of(runs, identities, family, ds, data, eval_data, record: str, specs,
                   num_tasks: int, tolerance: float):
    """``(split, targets [N], {spec: {"trace": [S, N, H], "steps_to_target": [S, N]}})``:
    :func:`trace_run` of ``specs`` in ``num_tasks`` tasks of the evaluation's split (unseen;
    seen if there are none) spread over the task attribute (the target)."""
    cli.require_info_keys(family, [record], "trace", EvaluationError)
    split = next(s for s in ("test", "val", "train") if s in eval_data["tasks"])
    attribute = ds.attributes[{"test": ds.is_test, "val": ds.is_val,
                               "train": ds.is_train}[split], 0]
    order = np.argsort(attribute)
    pick = order[np.unique(np.round(np.linspace(0, len(order) - 1,
                                                min(num_tasks, len(order)))).astype(int))]
    targets = attribute[pick]
    tasks = jax.tree_util.tree_map(lambda x: x[pick], eval_data["tasks"][split])
    traced = {}
    for spec in specs:
        values = trace_run(spec, runs[spec], identities[spec], family, ds, data, tasks, record)
        traced[spec] = {"trace": values,
                        "steps_to_target": steps_to_target(values, targets, tolerance)}
    return split, targets, traced


def tables(per_seed: Dict[str, Dict[str, np.ndarray]], episodes: int) -> str:
    """The papers' layouts: protocols x seen/unseen (ReDA tables 1-2), return per adaptation
    episode (R2PGO fig. 2), d(phi) (ReDA eq. 8). ``per_seed[spec][column]``: ``[seeds,
    tasks]`` scores (``jaxomrl.eval.stats.task_scores``)."""
    out = []
    for split, split_name in SPLITS.items():
        cols = [f"{split}_online/ep1", f"{split}_online/ep{episodes}",
                f"{split}_offline_ctx/ep1", f"{split}_offpolicy_ctx/ep1",
                f"{split}_nonprior_ctx/ep1"]
        cols = [c for c in dict.fromkeys(cols) if any(c in r for r in per_seed.values())]
        if not cols:
            continue
        headers = {c: PROTOCOLS[c.split("/")[0][len(split) + 1:]] +
                   (f", ep {c.split('/ep')[1]}" if c.startswith(f"{split}_online") else "")
                   for c in cols}
        out.append(f"### Return by protocol, {split_name} tasks\n\n" +
                   report.markdown_table(per_seed, cols, headers))
    primary = next((s for s in ("test", "val") if any(f"{s}_online/ep1" in r
                                                       for r in per_seed.values())), "test")
    ep_cols = [f"{primary}_online/ep{e}" for e in range(1, episodes + 1)]
    if any(ep_cols[0] in r for r in per_seed.values()):
        out.append(f"### Online adaptation, {SPLITS[primary]} tasks: return per episode "
                   "(1 = zero-shot)\n\n" +
                   report.markdown_table(per_seed, ep_cols,
                                         {c: f"ep {i + 1}" for i, c in enumerate(ep_cols)}))
    dphi = [c for c in ("test_dphi", "val_dphi", "train_dphi")
            if any(c in r for r in per_seed.values())]
    if dphi:
        rows = {s: r for s, r in per_seed.items() if any(c in r for c in dphi)}
        out.append("### d(φ) (ReDA eq. 8; lower: held-out-checkpoint contexts closer to their "
                   "own task)\n\n" + report.markdown_table(
                       rows, dphi, {f"{s}_dphi": f"{n} tasks" for s, n in SPLITS.items()},
                       lower_is_better=dphi, digits=3))
    iqm_cols = [c for c in ep_cols if any(c in r for r in per_seed.values())]
    if iqm_cols:
        out.append(f"### Interquartile mean over (seed, task), {SPLITS[primary]} tasks, online "
                   "[95 % bootstrap interval]\n\n" + iqm_table(per_seed, iqm_cols))
    return "\n\n".join(out) + "\n"


def iqm_table(per_seed: Dict[str, Dict[str, np.ndarray]], columns: List[str]) -> str:
    """``iqm [interval]`` of every spec's ``[seeds, tasks]`` scores in ``columns``."""
    lines = ["| algorithm | " + " | ".join(f"ep {c.split('/ep')[1]}" for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for spec, cols in per_seed.items():
        lines.append(f"| {spec} | " + " | ".join(
            stats.iqm_cell(stats.summarise(cols[c])) if c in cols else "—" for c in columns)
            + " |")
    return "\n".join(lines)


def render(results: Dict[str, Any]) -> str:
    """``tables.md`` from an evaluation's ``results.json`` dictionary: the data's behaviour
    checkpoints, :func:`tables` and the steps-to-target table of a trace."""
    setup = results["setup"]
    algorithms = results["algorithms"]
    seeds = next(iter(algorithms.values()))["seeds"]
    fmt = lambda m: "-" if m is None else f"{m:.2f}"   # "-": no task of the split has it
    by_split = setup.get("data_checkpoint_returns_by_split") or {
        "": setup["data_checkpoint_returns"]}
    checkpoints = list(next(iter(by_split.values())))
    experts = ", ".join(f"checkpoint {k}: " + " / ".join(
        f"{fmt(t.get(k))} {name}".rstrip() for name, t in by_split.items())
        for k in checkpoints)
    text = (f"# {setup['family']}: {len(algorithms)} algorithms, seeds {seeds}\n\n"
            f"Data return of the behaviour checkpoints (mean over tasks): {experts}.\n\n"
            f"Cells: {stats.CAPTION}, n = {len(seeds)}.\n\n")
    per_seed = {s: task_scores(a["per_seed_task_episode"]) for s, a in algorithms.items()}
    text += tables(per_seed, setup["episodes"])
    trace = results.get("trace")
    if trace:
        targets = trace["targets"]
        cols = [f"task {i}" for i in range(len(targets))] + ["mean"]
        rows = {}
        for spec, v in trace["algorithms"].items():
            steps = np.asarray(v["steps_to_target"], np.float64)           # [S, N]
            rows[spec] = {f"task {i}": steps[:, i] for i in range(len(targets))}
            rows[spec]["mean"] = steps
        text += (f"\n### Steps until {trace['quantity']} stays within {trace['tolerance']:g} of "
                 f"the target ({SETTLE_STEPS} steps), online episode 1, "
                 f"{SPLITS[trace.get('split', 'test')]} tasks (lower is better)\n\n"
                 + report.markdown_table(
                     rows, cols, {f"task {i}": f"target {t:.2f}" for i, t in enumerate(targets)},
                     lower_is_better=cols, digits=1) + "\n")
    return text


# adversarial.png's panels: {title: {line label: metrics_adversarial.csv column}}
ADVERSARIAL_PANELS = {
    "adversary's return (eq. 6 over a rollout)": {"": "adv_return"},
    "mean r_adv per step": {"": "adv_reward"},
    "model uncertainty u": {"": "model_uncertainty"},
    "fraction of states outside the data's range": {"": "adv_outside_data"},
    "the same at the rollouts' last model step": {"": "adv_outside_last"},
    "encoder InfoNCE: real vs adversarial contexts": {"real": "infonce", "adv": "adv_infonce"},
    "InfoNCE accuracy: real vs adversarial": {"real": "infonce_accuracy",
                                              "adv": "adv_infonce_accuracy"},
}


def plots(out_dir: str, runs: Dict[str, str], evaluations, embeddings, ds, episodes: int,
          first_seed: int, splits=EVAL_SPLITS):
    written = []
    colour = report.colours(list(runs))
    split = next(s for s in ("test", "val", "train")
                 if any(f"{s}_online" in ev for ev in evaluations.values()))
    adapt = {s: ev[f"{split}_online"].mean(axis=1) for s, ev in evaluations.items()}
    written.append(report.plot_adaptation(
        adapt, os.path.join(out_dir, "adaptation.png"),
        f"{ds.family}: online adaptation ({SPLITS[split]} tasks)", colour))
    groups = {}
    for protocol, label in PROTOCOLS.items():
        name = f"{split}_{protocol}"
        vals = {s: ev[name][:, :, 0].mean(axis=1) for s, ev in evaluations.items() if name in ev}
        if vals:
            groups[label] = vals
    written.append(report.plot_bars(groups, os.path.join(out_dir, "protocols.png"),
                                    f"{ds.family}: return by protocol ({SPLITS[split]} tasks; "
                                    "online = episode 1)", colour=colour))
    # Ablation bars: every algorithm evaluated with some of its ablations, beside them.
    bases = {s.split("/")[0] for s in runs if "/" in s}
    family_of = {s: s.split("/")[0] for s in runs}
    if bases:
        ablation = {label: {s: v for s, v in vals.items() if family_of[s] in bases}
                    for label, vals in groups.items()}
        written.append(report.plot_bars(
            {k: v for k, v in ablation.items() if v}, os.path.join(out_dir, "ablations.png"),
            f"{ds.family}: ablations ({SPLITS[split]} tasks; online = episode 1)",
            colour=colour))
    emb = {s: e for s, e in embeddings.items() if e is not None}
    if emb:
        order = np.concatenate([np.flatnonzero(m) for s, m in
                                (("train", ds.is_train), ("val", ds.is_val), ("test", ds.is_test))
                                if s in splits])
        param = ds.attributes[order, 0]
        joined, markers = {}, None
        for s, e in emb.items():
            parts = [e["data"]] + ([e["ood"]] if "ood" in e else [])
            joined[s] = np.concatenate(parts, axis=1)
            markers = np.concatenate([np.zeros(p.shape[:2], bool) if i == 0 else
                                      np.ones(p.shape[:2], bool) for i, p in enumerate(parts)], 1)
        written.append(report.plot_tsne(
            joined, param, os.path.join(out_dir, "tsne.png"),
            f"{ds.family}: task embeddings (seed {first_seed}; dots: training-data contexts"
            + (", crosses: held-out checkpoints)" if "ood" in next(iter(emb.values())) else ")"),
            param_name="task attribute 0", markers=markers))
    # ReDA's adversarial phase, per run that has one: is the adversary working?
    panels = {}
    for title, curves in ADVERSARIAL_PANELS.items():
        for line, metric in curves.items():
            for s, d in runs.items():
                c = report.read_curve(os.path.join(d, "metrics_adversarial.csv"), metric)
                if c is not None and len(c[0]) >= 2:
                    panels.setdefault(title, {})[f"{s}: {line}" if line else s] = c
    if panels:
        written.append(report.plot_panels(
            panels, os.path.join(out_dir, "adversarial.png"),
            f"{ds.family}: ReDA's adversarial phase (mean ± std over seeds)",
            xlabel="adversarial encoder steps"))
    # Learning curves: training-time evaluation reads the validation tasks (train.py), runs
    # trained otherwise may have evaluated in the test tasks too.
    for protocol, title in (("offline_ctx", "offline context"), ("online", "online, episode 1")):
        for curve_split in (split, "val", "train"):
            metric, curves = f"{curve_split}_{protocol}/ep1", {}
            for s, d in runs.items():
                c = report.read_curve(os.path.join(d, "metrics_eval.csv"), metric)
                if c is not None and len(c[0]) >= 2:
                    curves[s] = c
            if curves:
                path = os.path.join(out_dir, f"learning_curve_{metric.split('/')[0]}.png")
                written.append(report.plot_curves(curves, path, f"{ds.family}: {title} "
                                                  f"({SPLITS[curve_split]} tasks) during "
                                                  "training", colour=colour))
                break
    return written


def evaluate(workdir: str, specs=None, data_path=None, episodes: Optional[int] = None,
             contexts: Optional[int] = None, tsne_contexts: int = 8, out_dir=None,
             verbose: bool = True, trace=None, trace_algos=None, trace_tasks: int = 4,
             trace_tolerance: float = 0.25, from_training: bool = False, physics=None,
             splits=EVAL_SPLITS) -> Dict[str, Any]:
    """Everything ``main`` does; returns the ``results.json`` dictionary. ``physics``: the
    simulator of an MJX family's evaluation (``envs.make``'s; default: C on CPUs).
    ``episodes`` / ``contexts`` None: the runs' own ``eval_episodes`` / ``eval_contexts``."""
    if min(episodes or 1, contexts or 1, tsne_contexts, trace_tasks) < 1:
        raise EvaluationError("--eval_episodes, --eval_contexts, --tsne_contexts and "
                              "--trace_tasks must be >= 1")
    unknown = sorted(set(splits) - set(EVAL_SPLITS))
    if unknown or not splits:
        raise EvaluationError(f"--splits {list(splits)}: choose among {list(EVAL_SPLITS)}")
    runs = find_runs(workdir, specs)
    unknown = sorted(set(trace_algos or ()) - set(runs))
    if trace and unknown:
        raise EvaluationError(f"--trace_algos {unknown}: not among the evaluated runs "
                              f"{list(runs)}")
    ds, ood, identities = load_data(runs, data_path)
    data, eval_data = run_data(ds, ood, tuple(splits))
    episodes = episodes or _runs_setting(identities, "eval_episodes")
    contexts = contexts or _runs_setting(identities, "eval_contexts")
    family = ds.make_family(physics)
    out_dir = out_dir or os.path.join(workdir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    evaluations, embeddings, per_seed = {}, {}, {}
    for spec, d in runs.items():
        if verbose:
            print(f"[{spec}] evaluating {len(identities[spec]['seeds'])} seeds", flush=True)
        evaluations[spec], embeddings[spec] = evaluate_run(
            spec, d, identities[spec], family, ds, data, eval_data, episodes, contexts,
            tsne_contexts, from_training)
        per_seed[spec] = {m: v.tolist() for m, v in scalar_metrics(evaluations[spec]).items()}
    if from_training:   # the runs' own episodes and contexts, the same for every run
        shapes = {s: (ev[k].shape[2] if k in ev else None,
                      _setting(identities[s]["config"], "eval_contexts"))
                  for s, ev in evaluations.items()
                  for k in [next(f"{split}_online" for split in ("test", "val", "train")
                                 if f"{split}_online" in ev)]}
        if len(set(shapes.values())) > 1:
            raise EvaluationError(f"--from_training: the runs were evaluated with different "
                                  f"episodes / contexts {shapes}; evaluate them again instead")
        episodes, contexts = next(iter(shapes.values()))
    traced = None
    if trace:
        trace_split, targets, traced = trace_tasks_of(
            runs, identities, family, ds, data, eval_data, trace, trace_algos or list(runs),
            trace_tasks, trace_tolerance)
    seeds = identities[next(iter(runs))]["seeds"]
    results = {
        "setup": {"family": ds.family, "episodes": episodes, "contexts": contexts,
                  "from_training": from_training,
                  "ood_data": ood is not None, "runs": runs,
                  "data_checkpoint_returns": {str(k): m for k, (m, _) in
                                              checkpoint_return_table(ds).items()},
                  "data_checkpoint_returns_by_split": {
                      SPLITS[s]: {str(k): m for k, (m, _) in
                                  checkpoint_return_table(ds, rows).items()}
                      for s, rows in (("test", ds.is_test), ("val", ds.is_val),
                                      ("train", ds.is_train)) if s in splits and rows.any()}},
        "algorithms": {s: {"seeds": identities[s]["seeds"],
                           "summary": {m: seed_summary(v) for m, v in per_seed[s].items()},
                           "per_seed_task_episode": {m: v.tolist()
                                                     for m, v in evaluations[s].items()}}
                       for s in runs},
    }
    if traced is not None:
        results["trace"] = {"quantity": trace, "targets": targets.tolist(),
                            "tolerance": trace_tolerance, "split": trace_split,
                            "algorithms": {s: {"trace": v["trace"].tolist(),
                                               "steps_to_target": v["steps_to_target"].tolist()}
                                           for s, v in traced.items()}}
    text = render(results)
    atomic_write_text(os.path.join(out_dir, "tables.md"), text)
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=1))
    results["figures"] = plots(out_dir, runs, evaluations, embeddings, ds, episodes,
                               first_seed=seeds[0], splits=splits)
    if traced is not None:
        results["figures"].append(report.plot_traces(
            {s: v["trace"] for s, v in traced.items()}, targets,
            os.path.join(out_dir, f"trace_{trace}.png"),
            f"{ds.family}: {trace} in online episode 1 (zero-shot), "
            f"{SPLITS[trace_split]} tasks; thin: seeds",
            ylabel=trace, colour=report.colours(list(runs))))
    if verbose:
        print("\n" + text)
        print("wrote " + ", ".join([os.path.join(out_dir, "results.json"),
                                    os.path.join(out_dir, "tables.md")] + results["figures"]))
    return results


def render_directory(directory: str) -> str:
    """Writes ``directory``'s ``tables.md`` again from its ``results.json`` (:func:`render`)."""
    try:
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
        text = render(results)
    except (OSError, ValueError, KeyError) as e:
        raise cli.UsageError(f"--render: {directory} holds no evaluation's results.json "
                             f"({e})") from e
    atomic_write_text(os.path.join(directory, "tables.md"), text)
    return text


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.render:
        print(render_directory(FLAGS.render))
        return
    evaluate(FLAGS.workdir, FLAGS.algo, FLAGS.data, FLAGS.eval_episodes, FLAGS.eval_contexts,
             FLAGS.tsne_contexts, FLAGS.out, trace=FLAGS.trace, trace_algos=FLAGS.trace_algos,
             trace_tasks=FLAGS.trace_tasks, trace_tolerance=FLAGS.trace_tolerance,
             from_training=FLAGS.from_training, physics=_PHYSICS.value,
             splits=tuple(FLAGS.splits))


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.out or FLAGS.workdir)
