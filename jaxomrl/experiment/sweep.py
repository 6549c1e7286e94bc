"""A sweep: ``train.py`` specs × setting overrides × seed groups as jobs on an engine
(``jaxomrl.experiment.jobs``), and the table gathered from their runs.

Layout under the sweep's directory ``root``::

    <root>/<combination>/<spec>                a run (combination: ``name=value+...``, or
    <root>/<combination>/seeds<a>-<b>/<spec>   ``default``; seed groups when there are several)
    <root>/shared_phases/                      phases shared by every job (an encoder the
                                               overrides leave unchanged trains once)
    <root>/sweep.json, sweep.md                the gathered table

A job is one spec of one combination and seed group: ``train.py --algo=<spec>`` with the fixed
flags, the combination's and the group's. Jobs that would train an identical phase wait for the
first of them (``sharing.schedule_by_shares`` over what ``train.py --plan`` reports), so on Ray
they wait through task dependencies. Finished jobs are reused, killed ones resume.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from jaxomrl.errors import JaxomrlError
from jaxomrl.eval import stats
from jaxomrl.experiment.jobs import CHILD_FLAGS, Engine
from jaxomrl.experiment.sharing import schedule_by_shares
from jaxomrl.io import atomic_write_text

DEFAULT_COMBINATION = "default"


class SweepError(JaxomrlError):
    """A sweep that cannot run as asked (a grid without values, a job that failed)."""


def parse_assignments(items: Sequence[str], what: str) -> Dict[str, List[str]]:
    """``["name=value", ...]`` -> ``{name: [values in order]}`` (a name may repeat: the grid's
    values). Values are flag values as ``train.py`` takes them (``hidden=64,64``)."""
    out: Dict[str, List[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name or not value:
            raise SweepError(f"--{what}={item!r}: write name=value (a train.py flag)")
        if value in out.setdefault(name, []):
            raise SweepError(f"--{what}: {name}={value} given twice")
        out[name].append(value)
    return out


def combinations(grid: Mapping[str, Sequence[str]]) -> List[Dict[str, str]]:
    """Every combination of the grid's values, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def combination_name(combination: Mapping[str, str]) -> str:
    if not combination:
        return DEFAULT_COMBINATION
    return "+".join(f"{k}={v}" for k, v in combination.items()).replace("/", "_")


@dataclasses.dataclass(frozen=True)
class Job:
    """One spec of one combination and seed group."""
    spec: str
    combination: Dict[str, str]
    seed_offset: int
    workdir: str        # train.py's --workdir (the spec's run is <workdir>/<spec>)

    @property
    def name(self) -> str:
        return f"{self.spec} [{combination_name(self.combination)}, seeds from " \
               f"{self.seed_offset}]"

    @property
    def run_dir(self) -> str:
        return os.path.join(self.workdir, self.spec.replace("/", "-"))


@dataclasses.dataclass(frozen=True)
class Sweep:
    """``train_script``: ``experiments/train.py``; ``fixed``: its flags for every job
    (``name -> value``, without ``--``); ``grid``: the overrides' values; ``seeds`` per job
    (vmapped in it) and ``seed_groups`` jobs of them, from ``seed_offset``."""
    root: str
    train_script: str
    specs: Tuple[str, ...]
    fixed: Dict[str, str]
    grid: Dict[str, List[str]]
    seeds: int = 3
    seed_groups: int = 1
    seed_offset: int = 0

    def __post_init__(self):
        if not self.specs:
            raise SweepError("no specs to sweep (--algo)")
        clash = sorted(set(self.fixed) & set(self.grid))
        reserved = sorted((set(self.fixed) | set(self.grid)) & {
            "algo", "workdir", "seeds", "seed_offset", "share_dir", "plan", "engine",
            "ray_address", "workers"})
        if clash or reserved:
            raise SweepError(f"flags both fixed and swept: {clash}" if clash else
                             f"the sweep sets {reserved} itself")
        if self.seeds < 1 or self.seed_groups < 1:
            raise SweepError("--seeds and --seed_groups must be >= 1")

    @property
    def share_dir(self) -> str:
        return os.path.join(self.root, "shared_phases")

    def workdir(self, combination: Mapping[str, str], offset: int) -> str:
        d = os.path.join(self.root, combination_name(combination))
        if self.seed_groups > 1:
            d = os.path.join(d, f"seeds{offset}-{offset + self.seeds - 1}")
        return d

    def groups(self) -> List[Tuple[Dict[str, str], int]]:
        return [(c, self.seed_offset + g * self.seeds) for c in combinations(self.grid)
                for g in range(self.seed_groups)]

    def command(self, combination: Mapping[str, str], offset: int, specs: Sequence[str],
                *extra: str) -> List[str]:
        flags = {**self.fixed, **combination}
        return [sys.executable, self.train_script, f"--algo={','.join(specs)}",
                f"--workdir={self.workdir(combination, offset)}", f"--seeds={self.seeds}",
                f"--seed_offset={offset}", f"--share_dir={self.share_dir}",
                *[f"--{k}={v}" for k, v in flags.items()], "--summary=false", *extra]

    def plan(self) -> List[Tuple[Job, bool, list]]:
        """Every job with whether it has finished and the shares it could take or give, as
        ``train.py --plan`` reports them (one call per combination and seed group; it also
        refuses a run directory that holds other settings, before anything trains)."""
        out = []
        for combination, offset in self.groups():
            proc = subprocess.run(self.command(combination, offset, self.specs, "--plan"),
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SweepError(f"[{combination_name(combination)}] "
                                 + (proc.stderr.strip().splitlines() or ["train.py failed"])[-1])
            runs = json.loads(proc.stdout.strip().splitlines()[-1])["runs"]
            for spec in self.specs:
                job = Job(spec, dict(combination), offset, self.workdir(combination, offset))
                out.append((job, runs[spec]["finished"], runs[spec]["shares"]))
        return out

    def run(self, engine: Engine, workers: int) -> List[Job]:
        """Trains every unfinished job on ``engine``; returns every job. Raises naming the
        jobs that failed or were not started (the others are kept; rerun to resume)."""
        planned = self.plan()
        jobs = [job for job, _, _ in planned]
        todo = {job.name: (job, shares) for job, finished, shares in planned if not finished}
        if not todo:
            return jobs
        schedule = schedule_by_shares({name: shares for name, (_, shares) in todo.items()})
        print(f"[sweep] {len(schedule)} jobs on {engine.name}: " + ", ".join(
            name + (f" (after {schedule[a][0]})" if a is not None else "")
            for name, a in schedule), flush=True)
        commands = [self.command(todo[name][0].combination, todo[name][0].seed_offset,
                                 [todo[name][0].spec], *CHILD_FLAGS) for name, _ in schedule]
        codes = engine.run(commands, workers, after=[a for _, a in schedule])
        bad = [f"{name} ({'not started or lost' if code is None else f'exit {code}'})"
               for (name, _), code in zip(schedule, codes) if code != 0]
        if bad:
            raise SweepError("jobs failed: " + "; ".join(bad) + " (messages above); the "
                             "others are kept: rerun the same command to resume")
        return jobs


def gather(jobs: Sequence[Job], columns: Optional[Sequence[str]] = None
           ) -> Dict[str, Any]:
    """The table of a sweep's finished runs: one row per spec and combination, its seed
    groups' seeds together; every column (default: the validation tasks' metrics, else the
    training tasks') a :class:`jaxomrl.eval.stats.Summary` over seeds of the task means."""
    rows: Dict[Tuple[str, str], Dict[str, List[np.ndarray]]] = {}
    seeds: Dict[Tuple[str, str], List[int]] = {}
    for job in jobs:
        path = os.path.join(job.run_dir, "results.json")
        if not os.path.exists(path):
            raise SweepError(f"{job.name}: no results.json in {job.run_dir} (not finished)")
        with open(path) as f:
            result = json.load(f)
        key = (job.spec, combination_name(job.combination))
        scores = stats.task_scores({k: np.asarray(v) for k, v in result["per_task"].items()})
        for name, value in scores.items():
            rows.setdefault(key, {}).setdefault(name, []).append(value)
        seeds.setdefault(key, []).extend(result["seeds"])
    if columns is None:
        names = sorted({n for r in rows.values() for n in r})
        split = "val_" if any(n.startswith("val_") for n in names) else "train_"
        columns = [n for n in names if n.startswith(split)]
    table = []
    for (spec, combination), scores in rows.items():
        missing = [c for c in columns if c not in scores]
        if missing:
            raise SweepError(f"{spec} [{combination}]: no {missing} in its results")
        table.append({"spec": spec, "combination": combination, "seeds": seeds[(spec,
                                                                                   combination)],
                      "columns": {c: stats.summarise(np.concatenate(scores[c], axis=0)).to_json()
                                  for c in columns}})
    return {"columns": list(columns), "rows": table}


def render(table: Mapping[str, Any]) -> str:
    """``sweep.md``: the gathered table, one row per spec and combination."""
    head = "| spec | combination | " + " | ".join(table["columns"]) + " |"
    lines = [head, "|" + "---|" * (2 + len(table["columns"]))]
    for row in table["rows"]:
        cells = [stats.cell(stats.Summary(**{k: (np.nan if v is None else v)
                                             for k, v in row["columns"][c].items()}))
                 for c in table["columns"]]
        lines.append(f"| {row['spec']} | {row['combination']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", stats.CAPTION + "."]) + "\n"


def write(root: str, table: Mapping[str, Any]) -> str:
    atomic_write_text(os.path.join(root, "sweep.json"), json.dumps(table, indent=1))
    text = render(table)
    atomic_write_text(os.path.join(root, "sweep.md"), text)
    return text
