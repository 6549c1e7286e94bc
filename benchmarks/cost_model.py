"""What a paper table costs at a recipe's scale, from measured per-phase update rates, and how
its runs spread over 1, 8 and 64 devices.

    python benchmarks/cost_model.py --recipe=r2pgo_walker_rand_params --scale=paper \
        --data=runs/reproduce/r2pgo_walker_rand_params/cpu/data --rates=runs/rates.json

1. The recipe's runs at ``--scale``: every method under each of its option sets, as
   ``reproduce.py`` trains them (``Recipe.settings``), the scale's seeds vmapped in each.
2. Their phases, a phase that several runs train identically (the same digest,
   ``sharing.phase_digests``: an encoder under a method's option sets, R2PGO's hypernetwork
   ablation) counted once, as ``reproduce.py`` trains it once.
3. Each distinct phase's seconds per update on this machine: ``phase_throughput.py``'s
   measurement (``worker.time_phase``: the runner's jitted chunk over the seeds, best of
   ``--repeats`` calls of ``--steps`` updates after a warm-up). The rates are kept in
   ``--rates`` (JSON), so a killed measurement resumes and other recipes reuse them.
4. Device-hours: the sum of steps x seconds per update. The spread over ``--devices``: list
   scheduling of the phases (a phase starts when the phase before it in its run, or the shared
   one it takes, has finished; among ready phases the one with the longest chain after it goes
   first), one phase per device; and the same with each run's seeds split over as many devices
   as it has seeds (``--shard_seeds``, or a run over several hosts), at the measured rate per
   seed (ideal scaling: an upper bound on the gain).

Not counted: compilation (minutes per run), the evaluations during and after training, the
collection; the phases' update rates are the whole training cost otherwise (the runner's loop
adds checkpoints and log rows per chunk). A rate depends on the machine: the table names it.
The data's size does not enter an update's cost (a batch is gathered from it), so any
collection of the recipe's family serves. Prints a table and, on its last line, one JSON
object.
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import os
import platform
import sys
from typing import Any, Dict, List, Optional, Tuple

from absl import app, flags
from worker import time_phase

from jaxomrl import algos
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data.sampler import run_data
from jaxomrl.experiment import recipes as recipes_lib
from jaxomrl.experiment.programs import Programs, sequential_seeds
from jaxomrl.experiment.run_config import RunConfig
from jaxomrl.experiment.sharing import phase_digests

FLAGS = flags.FLAGS
flags.DEFINE_string("recipe", None, "Recipe name (reproduce.py --list).")
flags.DEFINE_enum("scale", "paper", recipes_lib.SCALES, "The recipe's scale.")
flags.DEFINE_string("data", None, "A collection of the recipe's family (its directory or "
                    "train.npz): the shapes the updates are measured on.")
flags.DEFINE_string("rates", None, "JSON file of measured rates, read and extended (default: "
                    "none kept).")
flags.DEFINE_integer("steps", 20, "Updates per timed call.")
flags.DEFINE_integer("repeats", 2, "Timed calls per phase (the best is used).")
flags.DEFINE_list("devices", ["1", "8", "64"], "Device counts to spread the runs over.")
flags.mark_flags_as_required(["recipe", "data"])

@dataclasses.dataclass
class Unit:
    """One phase to train: its key (digest, or run and phase), the first run that trains it
    (its method and option set), its steps, the unit before it in its run, its measured
    seconds per update and the algorithm that measures it."""
    key: str
    run: str
    spec: str
    candidate: str
    phase: str
    steps: int
    after: Optional[str]
    seconds_per_update: float = float("nan")
    algorithm: Any = dataclasses.field(default=None, repr=False)


def units(recipe: recipes_lib.Recipe, scale: str, family, n_train: int, seeds: int,
          chunk_steps: int) -> Tuple[Dict[str, Unit], Dict[str, List[str]]]:
    """Every distinct phase of the recipe's runs (shared ones once), and each run's chain of
    unit keys."""
    out, chains = {}, {}
    identity = {"seeds": list(range(seeds)), "chunk_steps": chunk_steps, "description": {}}
    for m in recipe.methods_at(scale):
        for c in m.candidate_names():
            run = f"{m.spec} ({c})"
            algorithm = algos.make(m.spec, recipe.settings(scale, m.spec, c), family, n_train)
            digests = phase_digests(algorithm, identity) + [None]     # the last: never shared
            chain, before = [], None
            for ph, digest in zip(algorithm.phases, digests):
                key = digest or f"{run}/{ph.name}"
                out.setdefault(key, Unit(key, run, m.spec, c, ph.name, ph.num_steps, before,
                                         algorithm=algorithm))
                chain.append(key)
                before = key
            chains[run] = chain
    return out, chains


def measure_rate(algorithm, data, phase: str, seeds: int) -> float:
    """Seconds per update of ``algorithm``'s phase ``phase`` with ``seeds`` seeds, on this
    machine, as the runner runs it (seeds one after another where the runner does so)."""
    names = [ph.name for ph in algorithm.phases]
    programs = Programs(algorithm, sequential_seeds(RunConfig(workdir="",
                                                              seeds=tuple(range(seeds)))))
    steps_per_s, _ = time_phase(programs, data, names.index(phase), seeds, FLAGS.steps,
                                FLAGS.repeats)
    return 1.0 / steps_per_s


def schedule(units_: Dict[str, Unit], devices: int, width: Dict[str, int]) -> float:
    """Makespan (seconds) of list scheduling the units on ``devices`` devices: a unit is ready
    when the unit before it is done; among ready units the longest remaining chain first; a
    unit takes ``width[key]`` devices at once (its seeds split over them) and
    ``steps x seconds / width`` seconds."""
    duration = {k: u.steps * u.seconds_per_update / width[k] for k, u in units_.items()}
    after = {k: [] for k in units_}
    for k, u in units_.items():
        if u.after:
            after[u.after].append(k)
    tail: Dict[str, float] = {}

    def chain(k):                      # the longest path from k to the end
        if k not in tail:
            tail[k] = duration[k] + max((chain(n) for n in after[k]), default=0.0)
        return tail[k]
    ready = [(-chain(k), k) for k, u in units_.items() if u.after is None]
    heapq.heapify(ready)
    running: List[Tuple[float, str]] = []
    free, now = devices, 0.0
    while ready or running:
        waiting = []
        while ready:
            prio, k = heapq.heappop(ready)
            w = min(width[k], devices)
            if w <= free:
                free -= w
                heapq.heappush(running, (now + duration[k] * width[k] / w, k))
            else:
                waiting.append((prio, k))
        for item in waiting:
            heapq.heappush(ready, item)
        now, k = heapq.heappop(running)
        free += min(width[k], devices)
        for n in after[k]:
            heapq.heappush(ready, (-chain(n), n))
    return now


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}"


def main(argv):
    del argv
    recipe = recipes_lib.get(FLAGS.recipe)
    scale = recipe.scale(FLAGS.scale)
    path = FLAGS.data if FLAGS.data.endswith(".npz") else os.path.join(FLAGS.data, "train.npz")
    ds, ood = dataset_lib.load_collection(path, family=recipe.family)
    family = ds.make_family()
    data, _ = run_data(ds, ood)
    seeds = scale.seeds
    units_, chains = units(recipe, FLAGS.scale, family, int(ds.is_train.sum()), seeds,
                           recipe.train.get("chunk_steps", 500))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    rates = {}
    if FLAGS.rates and os.path.exists(FLAGS.rates):
        with open(FLAGS.rates) as f:
            rates = json.load(f)
    rate_key = {k: f"{FLAGS.recipe}/{FLAGS.scale}/{seeds} seeds/{k}" for k in units_}
    for k, u in units_.items():
        name = rate_key[k]
        if name not in rates:
            print(f"measuring {u.run}: {u.phase} ...", file=sys.stderr, flush=True)
            rates[name] = {"seconds_per_update": measure_rate(u.algorithm, data, u.phase, seeds),
                           "machine": machine, "run": u.run, "phase": u.phase}
            if FLAGS.rates:
                with open(FLAGS.rates, "w") as f:
                    json.dump(rates, f, indent=1, sort_keys=True)
        u.seconds_per_update = rates[name]["seconds_per_update"]
    total = sum(u.steps * u.seconds_per_update for u in units_.values())
    one = {k: 1 for k in units_}
    split = {k: seeds for k in units_}
    spread = {int(d): (schedule(units_, int(d), one), schedule(units_, int(d), split))
              for d in FLAGS.devices}
    measured_on = sorted({rates[rate_key[k]]["machine"] for k in units_})
    print(f"{recipe.name} at scale {FLAGS.scale}: {len(chains)} runs of {seeds} seeds, "
          f"{len(units_)} distinct phases; rates measured on {', '.join(measured_on)}")
    print("| run | phase | steps | s / update | device-hours |")
    print("|---|---|---:|---:|---:|")
    for u in units_.values():
        print(f"| {u.run} | {u.phase} | {u.steps} | {u.seconds_per_update:.4f} | "
              f"{_hours(u.steps * u.seconds_per_update)} |")
    print(f"\ntotal: {_hours(total)} device-hours")
    print("| devices | wall-clock h, one run per device | wall-clock h, seeds split too |")
    print("|---:|---:|---:|")
    for d, (a, b) in spread.items():
        print(f"| {d} | {_hours(a)} | {_hours(b)} |")
    print(json.dumps({
        "recipe": recipe.name, "version": recipe.version, "scale": FLAGS.scale, "seeds": seeds,
        "machine": measured_on, "runs": chains,
        "units": [{f.name: getattr(u, f.name) for f in dataclasses.fields(u)
                   if f.name != "algorithm"} for u in units_.values()],
        "device_hours": total / 3600,
        "wall_clock_hours": {str(d): {"one_run_per_device": a / 3600,
                                      "seeds_split": b / 3600}
                             for d, (a, b) in spread.items()}}))


if __name__ == "__main__":
    app.run(main)
