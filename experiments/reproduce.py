"""One command per paper table: a recipe (``jaxomrl.experiment.recipes``) collected, trained,
chosen on the validation tasks and evaluated once on the test tasks, beside the paper's numbers.

    python experiments/reproduce.py --list
    python experiments/reproduce.py --recipe=r2pgo_cheetah_vel --scale=cpu

Stages, into ``<workdir>/<recipe>/<scale>/``:

1. ``data/``: the recipe's collection (``collect.py``'s pipeline; resumed, or reused when
   complete);
2. ``runs/<candidate>/<spec>``: every method under each of its option sets (``train.py``
   processes, one per core, or Ray tasks with ``--engine=ray`` / ``--ray_address``; runs that
   train an identical phase -- a method's option sets, an ablation of the policy -- share it
   through ``shared_phases/``, the others starting once the first has trained it,
   ``sharing.share_schedule``),
   evaluated during training on the training and validation tasks only;
3. ``selection.json``: each method's option set with the best validation score
   (``Recipe.selection``), the runs it names linked under ``chosen/``;
4. ``evaluation/``: ``evaluate.py`` on the chosen runs in the validation and test tasks -- the
   only time the test tasks are read -- with its tables and figures;
5. ``table.md`` / ``results.json``: this run beside the paper's numbers (mean ± sample std over
   seeds, n, a 95 % bootstrap interval, the IQM over seeds and tasks; ``jaxomrl.eval.stats``)
   and a verdict on every ordering the paper claims (a Welch interval of the difference).

``recipe.json`` holds the recipe, scale, seeds and overrides; the same command resumes a killed
run from where it stopped (every stage resumes or reuses its outputs), another one is refused
naming what differs; one command at a time in a directory (another running one is named).
Ctrl-C stops the training processes at their next checkpoint. ``timing.json`` adds up every
call's wall-clock per stage.
``--render=<dir>`` writes a finished reproduction's ``table.md`` and ``results.json`` again
from the scores its ``results.json`` keeps (statistics recomputed; nothing trains); for a
committed one (``experiments/results/recipes/<recipe>/<scale>``) also its section of the results
page, ``experiments/README.md``, between the page's markers for it.
``--set=name=value,...`` overrides ``algos.Settings`` fields of every method (checked against
their bounds); ``--collect_set`` the collection's settings.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from absl import flags, logging

from jaxomrl.eval import stats
from jaxomrl.experiment import cli, guards, jobs as jobs_lib, processes
from jaxomrl.experiment import collect as collect_lib
from jaxomrl.experiment import recipes as recipes_lib
from jaxomrl.eval.stats import task_scores
from jaxomrl.experiment.run_dir import identity_diff
from jaxomrl.errors import JaxomrlError
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_bool("list", False, "List every recipe with its scales, expected wall-clock on 2 "
                  "cores and last committed result, then exit.")
flags.DEFINE_string("recipe", None, "Recipe name (--list).")
flags.DEFINE_enum("scale", "cpu", list(recipes_lib.SCALES), "paper: the papers' sizes (an "
                  "accelerator); cpu: about an hour on 2 cores; tiny: seconds (tests).")
flags.DEFINE_string("workdir", "runs/reproduce", "Root directory: <workdir>/<recipe>/<scale>.")
flags.DEFINE_integer("seeds", None, "Seeds (default: the scale's).")
flags.DEFINE_list("set", [], "name=value overrides of algos.Settings fields for every method.")
flags.DEFINE_list("collect_set", [], "name=value overrides of the collection's settings.")
flags.DEFINE_string("render", None, "A finished reproduction's directory: its table.md and "
                    "results.json written again from its results.json's scores.")
flags.DEFINE_integer("workers", 0, "train.py processes side by side (0: one per core).")
jobs_lib.define_engine_flags()
_PHYSICS = cli.define_physics_flag()
cli.require_ints(1, "seeds")
cli.require_ints(0, "workers")

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "recipes")   # committed tables: <recipe>/<scale>/
PAGE = os.path.join(HERE, "README.md")                # the results page that shows them


def _parse(items: List[str], what: str) -> Dict[str, Any]:
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise cli.UsageError(f"--{what}: {item!r} is not name=value")
        out[name] = _literal(text)
    return out


def _literal(text: str) -> Any:
    """``128:128`` -> (128, 128); numbers, true / false, none; else the string."""
    if ":" in text:
        return tuple(_literal(t) for t in text.split(":"))
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


class Reproduction:
    """One recipe at one scale in ``root``: its stages, resumable."""

    def __init__(self, recipe: recipes_lib.Recipe, scale: str, root: str,
                 seeds: Optional[int] = None, overrides=None, collect_overrides=None,
                 physics: str = "auto", workers: int = 0,
                 engine: jobs_lib.Engine = jobs_lib.Engine()):
        self.recipe, self.scale_name = recipe, scale
        self.scale = recipe.scale(scale)
        self.dir = os.path.join(root, recipe.name, scale)
        self.seeds = seeds or self.scale.seeds
        self.overrides = dict(overrides or {})
        self.collect_overrides = dict(collect_overrides or {})
        self.physics, self.workers, self.engine = physics, workers, engine
        recipe.validate()
        for m in recipe.methods_at(scale):       # overrides within the settings' bounds
            for c in m.candidate_names():
                recipe.settings(scale, m.spec, c, self.overrides)
        self.collect_config = recipe.collect_config(scale, self.collect_overrides, physics)
        self.timing: Dict[str, float] = {}

    # ------------------------------------------------------------------------ identity
    def identity(self) -> Dict[str, Any]:
        return {"recipe": _numbers_only(dataclasses.asdict(self.recipe)),
                "scale": self.scale_name, "seeds": self.seeds, "overrides": self.overrides,
                "collect_overrides": self.collect_overrides}

    def claim_directory(self) -> None:
        """Writes ``recipe.json``, or refuses a directory holding another reproduction."""
        path = os.path.join(self.dir, "recipe.json")
        mine = json.loads(json.dumps(self.identity()))
        if os.path.exists(path):
            with open(path) as f:
                theirs = json.load(f)
            try:      # written by an older version: in today's form (added fields' defaults)
                theirs["recipe"] = json.loads(json.dumps(_numbers_only(dataclasses.asdict(
                    recipes_lib.from_json(theirs["recipe"])))))
            except (TypeError, ValueError, KeyError):
                pass
            diff = identity_diff(theirs, mine)
            if diff:
                raise JaxomrlError(f"{self.dir} holds another reproduction ({'; '.join(diff[:5])}"
                                   "); use another --workdir")
            return
        os.makedirs(self.dir, exist_ok=True)
        atomic_write_text(path, json.dumps(mine, indent=1))

    def _timed(self, stage: str, fn, *args):
        t0 = time.time()
        self._write_timing(running=(stage, t0))
        try:
            return fn(*args)
        finally:
            self.timing[stage] = self.timing.get(stage, 0.0) + time.time() - t0
            self._write_timing()

    def _write_timing(self, running=None) -> None:
        """``timing.json``: every call's seconds per stage and their sums. A call killed during
        a stage (``running``: the stage and when it began) counts that stage until the next
        call began."""
        path = os.path.join(self.dir, "timing.json")
        calls = []
        if os.path.exists(path):
            with open(path) as f:
                calls = json.load(f)["calls"]
        if not calls or calls[-1].get("pid") != os.getpid():
            calls.append({"pid": os.getpid(), "started": time.time(), "seconds": {}})
        calls[-1]["seconds"] = dict(self.timing)
        calls[-1]["running"] = list(running) if running else None
        total = {}
        for i, c in enumerate(calls):
            seconds = dict(c["seconds"])
            if c.get("running") and i + 1 < len(calls):        # killed during this stage
                stage, began = c["running"]
                seconds[stage] = seconds.get(stage, 0.0) + calls[i + 1]["started"] - began
            for k, v in seconds.items():
                total[k] = total.get(k, 0.0) + v
        atomic_write_text(path, json.dumps({"machine": _machine(), "total_seconds": total,
                                            "total_minutes": sum(total.values()) / 60,
                                            "calls": calls}, indent=1))

    # ------------------------------------------------------------------------ stages
    def run(self) -> str:
        with guards.directory_lock(self.dir, "reproducing"):
            self.claim_directory()
            self._timed("collect", self.collect)
            self._timed("train", self.train)
            chosen = self._timed("select", self.select)
            self._timed("evaluate", self.evaluate, chosen)
            return self._timed("table", self.table, chosen)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.dir, "data")

    def collect(self) -> None:
        print(f"[reproduce] collecting into {self.data_dir}", flush=True)
        collect_lib.collect(self.collect_config, self.data_dir)

    def jobs(self) -> List[Tuple[str, str, List[str], Optional[int]]]:
        """``(spec, candidate, train.py command, index of the job it waits for)`` in the order
        of ``sharing.share_schedule``: of the jobs that train an identical phase (the encoder
        of a method's option sets, of R2PGO's hypernetwork ablation) the first trains it and
        the others start after it and take it, so no phase trains twice side by side. Before
        that, every method's first option set comes before its others (the table's order)."""
        share_dir = os.path.join(self.dir, "shared_phases")
        common = [sys.executable, os.path.join(HERE, "train.py"), f"--family={self.recipe.family}",
                  f"--data={self.data_dir}", f"--seeds={self.seeds}", *jobs_lib.CHILD_FLAGS,
                  "--summary=false", f"--share_dir={share_dir}", f"--physics={self.physics}"]
        common += [cli.flag_text(k, v) for k, v in self.recipe.train.items()]
        first, later = [], []
        for m in self.recipe.methods_at(self.scale_name):
            for i, c in enumerate(m.candidate_names()):
                values = self.recipe.setting_values(self.scale_name, m.spec, c, self.overrides)
                cmd = common + [f"--workdir={os.path.join(self.dir, 'runs', c)}",
                                f"--algo={m.spec}"]
                cmd += [cli.flag_text(k, v) for k, v in values.items()]
                (first if i == 0 else later).append((m.spec, c, cmd))
        listed = first + later
        by_name = {f"{spec} ({c})": (spec, c, cmd) for spec, c, cmd in listed}
        return [(*by_name[name], after)
                for name, after in self._share_schedule(listed, share_dir)]

    def _share_schedule(self, listed, share_dir) -> List[Tuple[str, Optional[int]]]:
        """``sharing.share_schedule`` of the jobs ``(spec, candidate, command)``, named
        ``"spec (candidate)"``, from their algorithms as ``train.py`` builds them."""
        from jaxomrl import algos
        from jaxomrl.data import dataset as dataset_lib
        from jaxomrl.data.sampler import describe_data
        from jaxomrl.experiment.run_config import RunConfig
        from jaxomrl.experiment.sharing import share_schedule
        path = os.path.join(self.data_dir, "train.npz")
        ds, ood = dataset_lib.load_collection(path, family=self.recipe.family)
        family = ds.make_family(self.physics)
        n_train = int(ds.is_train.sum())
        chunk = self.recipe.train.get("chunk_steps")
        runs = {}
        for spec, c, _ in listed:
            algorithm = algos.make(spec, self.recipe.settings(self.scale_name, spec, c,
                                                              self.overrides), family, n_train)
            config = RunConfig(workdir=self.run_dir(spec, c),
                               seeds=tuple(range(self.seeds)), share_dir=share_dir,
                               **({"chunk_steps": chunk} if chunk else {}))
            runs[f"{spec} ({c})"] = (algorithm, config)
        return share_schedule(runs, describe_data(path, ds, ood))

    def run_dir(self, spec: str, candidate: str) -> str:
        return os.path.join(self.dir, "runs", candidate, spec.replace("/", "-"))

    def train(self) -> None:
        jobs = self.jobs()
        todo = [i for i, (s, c, _, _) in enumerate(jobs)
                if not os.path.exists(os.path.join(self.run_dir(s, c), "results.json"))]
        if not todo:
            return
        workers = self.workers or os.cpu_count() or 1
        print(f"[reproduce] training {len(todo)} runs as {self.engine.name} jobs, {workers} at a "
              "time: "
              + ", ".join(f"{jobs[i][0]} ({jobs[i][1]})" for i in todo), flush=True)
        position = {i: k for k, i in enumerate(todo)}      # a finished job is waited for by none
        after = [None if jobs[i][3] is None else position.get(jobs[i][3]) for i in todo]
        codes = self.engine.run([jobs[i][2] for i in todo], workers, after=after)
        failed = [f"{jobs[i][0]} ({jobs[i][1]})" for i, code in zip(todo, codes) if code]
        if failed or any(code is None for code in codes):
            raise JaxomrlError(f"training failed for {', '.join(failed) or 'a run'} (messages "
                               "above); rerun the same command to resume")

    def select(self) -> Dict[str, str]:
        """``{spec: chosen candidate}`` by the validation score, written to ``selection.json``
        with every candidate's score; the chosen runs are linked under ``chosen/``."""
        key = self.recipe.selection
        scores, chosen = {}, {}
        for m in self.recipe.methods_at(self.scale_name):
            scores[m.spec] = {}
            for c in m.candidate_names():
                with open(os.path.join(self.run_dir(m.spec, c), "results.json")) as f:
                    metrics = json.load(f)["metrics"]
                if key not in metrics:
                    raise JaxomrlError(f"{m.spec} ({c}): its training-time evaluation has no "
                                       f"{key!r} (the data have no validation tasks?)")
                scores[m.spec][c] = metrics[key]["mean"]
            chosen[m.spec] = max(m.candidate_names(), key=lambda c: scores[m.spec][c])
        atomic_write_text(os.path.join(self.dir, "selection.json"), json.dumps(
            {"metric": key, "scores": scores, "chosen": chosen}, indent=1))
        link_dir = os.path.join(self.dir, "chosen")
        os.makedirs(link_dir, exist_ok=True)
        for spec, c in chosen.items():
            link = os.path.join(link_dir, spec.replace("/", "-"))
            target = os.path.relpath(self.run_dir(spec, c), link_dir)
            if os.path.islink(link) and os.readlink(link) != target:
                os.remove(link)
            if not os.path.islink(link):
                os.symlink(target, link)
        return chosen

    def evaluate(self, chosen: Dict[str, str]) -> None:
        """``evaluate.py`` on the chosen runs in the validation and test tasks."""
        splits = "val,test" if self.recipe.collect_split == "all" else "train"
        out = os.path.join(self.dir, "evaluation")
        done = os.path.join(out, "chosen.json")
        if os.path.exists(done) and os.path.exists(os.path.join(out, "results.json")):
            with open(done) as f:
                if json.load(f) == chosen:
                    return
        cmd = [sys.executable, os.path.join(HERE, "evaluate.py"),
               f"--workdir={os.path.join(self.dir, 'chosen')}", f"--out={out}",
               f"--splits={splits}", f"--physics={self.physics}",
               f"--algo={','.join(chosen)}"]
        codes = processes.run_commands([cmd], 1)
        if codes[0]:
            raise JaxomrlError("evaluation failed (messages above); rerun the same command")
        atomic_write_text(done, json.dumps(chosen))

    def table(self, chosen: Dict[str, str]) -> str:
        with open(os.path.join(self.dir, "evaluation", "results.json")) as f:
            evaluation = json.load(f)
        with open(os.path.join(self.dir, "selection.json")) as f:
            selection = json.load(f)
        with open(os.path.join(self.data_dir, "summary.json")) as f:
            summary = json.load(f)
        result = summarise(self.recipe, self.scale_name, evaluation, selection, summary)
        result.update(scale=self.scale_name, seeds=self.seeds, overrides=self.overrides,
                      collect_overrides=self.collect_overrides, command=self.command(),
                      settings={**self.scale.settings, **self.overrides})
        text = markdown(self.recipe, result)
        atomic_write_text(os.path.join(self.dir, "table.md"), text)
        atomic_write_text(os.path.join(self.dir, "results.json"), json.dumps(result, indent=1))
        return text

    def command(self) -> str:
        parts = ["python experiments/reproduce.py", f"--recipe={self.recipe.name}",
                 f"--scale={self.scale_name}"]
        if self.seeds != self.scale.seeds:
            parts.append(f"--seeds={self.seeds}")
        if self.overrides:
            parts.append("--set=" + ",".join(f"{k}={_text(v)}" for k, v in self.overrides.items()))
        if self.collect_overrides:
            parts.append("--collect_set=" + ",".join(f"{k}={_text(v)}"
                                                     for k, v in self.collect_overrides.items()))
        return " ".join(parts)


def _numbers_only(recipe: Dict[str, Any]) -> Dict[str, Any]:
    """A recipe's JSON form without what does not change its numbers: the scales' expected
    wall-clock (``minutes``, ``measured``), which a run may update, and the notes."""
    out = {k: v for k, v in recipe.items() if k != "notes"}
    for name in recipes_lib.SCALES:
        out[f"{name}_scale"] = {k: v for k, v in out[f"{name}_scale"].items()
                                if k not in ("minutes", "measured")}
    return out


def _text(v: Any) -> str:
    return ":".join(str(x) for x in v) if isinstance(v, tuple) else str(v)


def _machine() -> str:
    import platform
    return f"{platform.machine()}, {os.cpu_count()} cpus, {platform.processor() or 'cpu'}"


# ---------------------------------------------------------------------------- the table
def cell_statistics(cell: Dict[str, Any]) -> Dict[str, Any]:
    """A table cell's statistics from its ``values`` (one per seed) and, where kept, its
    ``per_task`` scores ``[seeds, tasks]`` (``jaxomrl.eval.stats``): mean, sample std, n, the
    bootstrap interval of the mean, the IQM over (seed, task) pairs and its interval."""
    summary = stats.summarise(cell.get("per_task") or cell["values"])
    j = summary.to_json()
    return {"mean": j["mean"], "std": j["std"], "n": j["n"], "interval": [j["low"], j["high"]],
            "iqm": j["iqm"], "iqm_interval": [j["iqm_low"], j["iqm_high"]]}


def claim_verdicts(recipe: recipes_lib.Recipe, rows: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every ordering the paper claims that this run has both sides of: the Welch interval of
    the difference of seed means and the verdict (``stats.compare``)."""
    claims = []
    for c in recipe.claims:
        if c.better not in rows or c.worse not in rows:
            continue
        a = rows[c.better]["columns"][c.column].get("values")
        b = rows[c.worse]["columns"][c.column].get("values")
        entry = {"claim": f"{c.better} {'below' if c.lower_is_better else 'above'} {c.worse} "
                          f"in {c.column}"}
        entry.update(stats.compare(a, b, c.lower_is_better).to_json() if a and b
                     else {"verdict": "not run"})
        claims.append(entry)
    return claims


def _per_task(algorithm: Dict[str, Any], key: str) -> Optional[List[List[float]]]:
    """``[seeds, tasks]`` scores of column ``key`` (``<split>_<metric>/ep<k>`` or a metric)
    from evaluate.py's per-seed x per-task x per-episode arrays, None if not kept."""
    scores = task_scores(algorithm.get("per_seed_task_episode", {})).get(key)
    return None if scores is None else scores.tolist()


def summarise(recipe: recipes_lib.Recipe, scale: str, evaluation: Dict[str, Any],
              selection: Dict[str, Any], summary: Dict[str, Any]) -> Dict[str, Any]:
    """Per method and column: this run's per-seed (and per-task) scores, their statistics
    (:func:`cell_statistics`) and the paper's number; every claim's verdict; the options each
    method ran with."""
    algorithms = evaluation["algorithms"]
    rows = {}
    for m in recipe.methods:
        if m.spec not in algorithms:          # not run at this scale
            continue
        per_seed = algorithms[m.spec]["summary"]
        candidate = selection["chosen"][m.spec]
        row = {"spec": m.spec, "candidate": candidate,
               "validation_scores": selection["scores"][m.spec],
               "options": recipe.method_options(scale, m.spec, candidate), "columns": {}}
        for column, key in recipe.columns.items():
            cell = {"paper": next(([n.mean, n.std] for n in recipe.paper_numbers
                                   if n.method == m.label and n.column == column), None)}
            if key in per_seed:
                cell.update(values=per_seed[key]["per_seed"])
                per_task = _per_task(algorithms[m.spec], key)
                if per_task is not None:
                    cell["per_task"] = per_task
                cell.update(cell_statistics(cell))
            row["columns"][column] = cell
        rows[m.label] = row
    claims = claim_verdicts(recipe, rows)
    is_test = np.asarray(summary.get("split", ["test" if t else "train"
                                               for t in summary["is_test"]])) == "test"
    best = np.asarray(summary["best_return"], np.float64)
    data = {"best_checkpoint_test": float(best[is_test].mean()) if is_test.any() else None}
    return {"recipe": recipe.name, "version": recipe.version, "rows": rows, "claims": claims,
            "selection_metric": selection["metric"], "data": data,
            "test_tasks": int(is_test.sum()),
            "validation_tasks": int(np.sum(np.asarray(summary.get("split", [])) == "val"))}


def _settings_text(values: Dict[str, Any]) -> str:
    return " ".join(cli.flag_text(k, v) for k, v in values.items())


def _cell(cell: Dict[str, Any], value: str = "mean") -> str:
    """``mean ± std [interval]`` (``value="iqm"``: ``iqm [interval]``) of a stored cell
    (:func:`cell_statistics`'s), in ``stats.cell`` / ``stats.iqm_cell``'s form."""
    if "mean" not in cell:
        return "—"
    nan = lambda v: float("nan") if v is None else v
    summary = stats.Summary(cell["mean"], nan(cell["std"]), cell["n"],
                            *map(nan, cell["interval"]), cell["iqm"],
                            *map(nan, cell["iqm_interval"]))
    return (stats.cell if value == "mean" else stats.iqm_cell)(summary, 1)


def markdown(recipe: recipes_lib.Recipe, result: Dict[str, Any]) -> str:
    n = next((c["n"] for r in result["rows"].values() for c in r["columns"].values()
              if "n" in c), 0)
    lines = [f"# {recipe.paper} {recipe.table}: {recipe.task_set}",
             "",
             f"Recipe `{recipe.name}` v{recipe.version}, scale `{result['scale']}`: "
             f"`{result['command']}`",
             "",
             f"This run: mean ± sample std over n = {n} seeds [95 % stratified-bootstrap "
             f"interval of the mean], on "
             f"{result['test_tasks']} test tasks (task seed {recipe.task_seed}) evaluated once, "
             "after every choice. Each method's options were chosen by "
             f"`{result['selection_metric']}` on {result['validation_tasks']} validation tasks. "
             "Paper: its mean ± std (its own data and scale).",
             ""]
    cols = list(recipe.columns)
    header = "| method | options (validation score) | " + " | ".join(
        f"{c}: this run | {c}: paper" for c in cols) + " |"
    lines += [header, "|---|---|" + "---:|---:|" * len(cols)]
    for label, row in result["rows"].items():
        opts = ", ".join(f"{'**' + c + '**' if c == row['candidate'] else c} {v:.1f}"
                         for c, v in row["validation_scores"].items())
        cells = []
        for c in cols:
            cell = row["columns"][c]
            paper = cell["paper"]
            cells += [_cell(cell), "—" if paper is None else
                      f"{paper[0]:.1f}" + ("" if paper[1] is None else f" ± {paper[1]:.1f}")]
        lines.append(f"| {label} | {opts} | " + " | ".join(cells) + " |")
    lines += ["", "Interquartile mean over every (seed, test task) score [95 % bootstrap "
                  "interval]:", "", "| method | " + " | ".join(cols) + " |",
              "|---|" + "---:|" * len(cols)]
    lines += [f"| {label} | " + " | ".join(_cell(row["columns"][c], "iqm") for c in cols) + " |"
              for label, row in result["rows"].items()]
    best = result["data"]["best_checkpoint_test"]
    if best is not None:
        lines += ["", f"The data's best behaviour checkpoint on the test tasks: {best:.1f} "
                      "(mean over tasks)."]
    lines += ["", "## What each method ran with", "",
              f"Every method: `{_settings_text(result['settings'])}`.", "",
              "| method | spec | its own options (the chosen option set's included) |",
              "|---|---|---|"]
    lines += [f"| {label} | `{row['spec']}` | {_settings_text(row['options']) or '—'} |"
              for label, row in result["rows"].items()]
    lines += ["", "## The paper's orderings", "", "| claim | difference [95 % Welch interval] | "
              "verdict |", "|---|---:|---|"]
    for c in result["claims"]:
        low, high = c.get("interval", (None, None))
        diff = ("—" if "difference" not in c else f"{c['difference']:.1f}" +
                ("" if low is None or high is None else f" [{low:.1f}, {high:.1f}]"))
        lines.append(f"| {c['claim']} | {diff} | {c['verdict']} |")
    lines += ["", "## What each choice was made on", "", "| setting | value | made on | note |",
              "|---|---|---|---|"]
    lines += [f"| {c.setting} | {c.value} | {c.made_on} | {c.note} |" for c in recipe.choices]
    if recipe.notes:
        lines += ["", recipe.notes]
    return "\n".join(lines) + "\n"


def render(directory: str) -> str:
    """:func:`markdown` of a finished reproduction again, its statistics recomputed from the
    scores its ``results.json`` keeps (per task from ``evaluation/results.json`` where it is
    there); writes ``table.md`` and ``results.json``."""
    try:
        with open(os.path.join(directory, "results.json")) as f:
            result = json.load(f)
        with open(os.path.join(directory, "recipe.json")) as f:
            recipe = recipes_lib.from_json(json.load(f)["recipe"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise cli.UsageError(f"--render: {directory} holds no finished reproduction ({e})") from e
    current = recipes_lib.RECIPES.get(recipe.name)
    if current is not None and current.version == recipe.version:
        recipe = dataclasses.replace(recipe, notes=current.notes)
    evaluation = {}
    if os.path.exists(os.path.join(directory, "evaluation", "results.json")):
        with open(os.path.join(directory, "evaluation", "results.json")) as f:
            evaluation = json.load(f)["algorithms"]
    for row in result["rows"].values():
        for column, cell in row["columns"].items():
            if "values" not in cell:
                continue
            if row["spec"] in evaluation:   # the per-task scores where evaluate.py kept them
                per_task = _per_task(evaluation[row["spec"]], recipe.columns[column])
                if per_task is not None:
                    cell["per_task"] = per_task
            cell.update(cell_statistics(cell))
    result["claims"] = claim_verdicts(recipe, result["rows"])
    text = markdown(recipe, result)
    atomic_write_text(os.path.join(directory, "table.md"), text)
    atomic_write_text(os.path.join(directory, "results.json"), json.dumps(result, indent=1))
    if os.path.abspath(directory) == os.path.join(RESULTS, recipe.name, result["scale"]):
        update_results_page(recipe.name, result["scale"], text)   # a committed result
    return text


def update_results_page(recipe: str, scale: str, text: str, page: str = PAGE) -> bool:
    """Puts ``text`` (a ``table.md``: its title dropped, its sections two levels down) between
    the results page's markers ``<!-- reproduce <recipe>/<scale> -->`` and ``<!-- /reproduce
    <recipe>/<scale> -->``; returns whether the page has them."""
    begin, end = f"<!-- reproduce {recipe}/{scale} -->", f"<!-- /reproduce {recipe}/{scale} -->"
    with open(page) as f:
        current = f.read()
    if begin not in current or end not in current:
        return False
    body = re.sub(r"^## ", "#### ", text.split("\n", 2)[2].strip(), flags=re.M)
    head, rest = current.split(begin, 1)
    atomic_write_text(page, head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1])
    return True


def last_result(recipe: recipes_lib.Recipe, scale: str) -> Optional[str]:
    """The committed result of a recipe's scale (``experiments/results/recipes``), one line."""
    path = os.path.join(RESULTS, recipe.name, scale, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    held = sum(bool(c.get("held")) for c in result["claims"])
    firm = sum(bool(c.get("held") and c.get("distinguishable")) for c in result["claims"])
    timing = os.path.join(RESULTS, recipe.name, scale, "timing.json")
    minutes = ""
    if os.path.exists(timing):
        with open(timing) as f:
            minutes = f" ({json.load(f)['total_minutes']:.0f} min)"
    first = next(iter(recipe.columns))
    cells = ", ".join(f"{label} {row['columns'][first]['mean']:.1f}"
                      for label, row in result["rows"].items()
                      if "mean" in row["columns"][first])
    return (f"{first}: {cells}; the paper's orderings held {held}/{len(result['claims'])} "
            f"({firm} distinguishable){minutes}")


def list_recipes() -> str:
    out = []
    for recipe in recipes_lib.RECIPES.values():
        text = recipes_lib.describe(recipe).splitlines()
        for i, scale in enumerate(recipes_lib.SCALES):
            last = last_result(recipe, scale)
            text[i + 1] += f"; last committed result: {last or 'none'}"
        out.append("\n".join(text))
    return "\n".join(out)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.list:
        print(list_recipes())
        return
    if FLAGS.render:
        print(render(FLAGS.render))
        return
    if not FLAGS.recipe:
        raise cli.UsageError("give --recipe (see --list)")
    try:
        recipe = recipes_lib.get(FLAGS.recipe)
        reproduction = Reproduction(recipe, FLAGS.scale, FLAGS.workdir, FLAGS.seeds,
                                    _parse(FLAGS.set, "set"),
                                    _parse(FLAGS.collect_set, "collect_set"),
                                    _PHYSICS.value, FLAGS.workers,
                                    jobs_lib.engine_from_flags())
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    cli.writable_dir(reproduction.dir, "workdir")
    print(reproduction.run())
    print(f"wrote {os.path.join(reproduction.dir, 'table.md')}")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir)
