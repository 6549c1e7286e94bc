"""Update throughput of one training phase of any algorithm, as ``experiments/train.py`` runs it.

Builds the spec's algorithm from a collection and train.py's flags (the same ``Settings``), runs
its earlier phases' ``init`` and ``output`` without training them (throughput does not depend on
trained values), and times the runner's own jitted chunk program of the phase
(``experiment.programs.Programs.chunk``: ``jit(vmap(lax.scan(update)))`` over the seeds): the first
call (compilation included), then the best of ``--repeats`` calls after a warm-up. Seeds vmapped,
or one after another for phases hinting ``seeds_in_sequence`` (``--sequential_seeds``, the
runner's choice on a CPU).

    python benchmarks/phase_throughput.py --data=runs/point_robot_data \
        --family=point_robot_sparse --algo=prompt_dt --phase=policy \
        --dt_width=32 --dt_layers=2 --dt_batch_size=4 --dt_warmup=300 --dt_lr=3e-4
    python benchmarks/phase_throughput.py ... --baseline_src=/path/to/an/older/checkout

``--baseline_src``: the same measurement, in the same run, of another checkout's ``jaxomrl``
(its rows interleaved with this checkout's, ``--rounds`` times; the ratio of the medians).
Each measurement runs in its own subprocess. Prints a table and, on its last line, one JSON
object.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys

from absl import app, flags
from worker import measure, time_phase

from jaxomrl import algos
from jaxomrl.experiment import cli

FLAGS = flags.FLAGS
_PHYSICS = cli.define_physics_flag()
flags.DEFINE_string("data", None, "train.npz of a collection, or its directory.")
flags.DEFINE_string("family", None, "Task family the dataset must come from.")
flags.DEFINE_string("algo", "r2pgo", "One algorithm spec (as train.py's --algo).")
flags.DEFINE_string("phase", None, "The phase to time (default: the last).")
flags.DEFINE_integer("seeds", 3, "Seeds vmapped in one program (the main job's 3).")
flags.DEFINE_integer("steps", 50, "Updates per timed call.")
flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (best is reported).")
flags.DEFINE_integer("rounds", 1, "Measurements per checkout, interleaved with the baseline's.")
flags.DEFINE_string("baseline_src", None, "Another checkout's root: also time its jaxomrl.")
flags.DEFINE_bool("sequential_seeds", True, "Phases hinting seeds_in_sequence run their seeds "
                  "one after another, as the runner does on a CPU (False: vmapped).")
flags.DEFINE_bool("worker", False, "Internal: run one measurement.")
cli.define_flags(algos.Settings)
flags.mark_flags_as_required(["data", "family"])


def worker() -> dict:
    import jax
    import jaxomrl
    from jaxomrl.data import dataset as dataset_lib
    from jaxomrl.data.sampler import run_data
    try:
        from jaxomrl.experiment.programs import Programs
    except ImportError:                                               # older checkouts
        from jaxomrl.experiment import runner
        Programs = getattr(runner, "Programs", None) or runner._Programs

    path = FLAGS.data if FLAGS.data.endswith(".npz") else os.path.join(FLAGS.data, "train.npz")
    ds, ood = dataset_lib.load_collection(path, family=FLAGS.family)
    family = ds.make_family(_PHYSICS.value)
    data, _ = run_data(ds, ood)
    algorithm = algos.make(FLAGS.algo, cli.from_flags(algos.Settings), family,
                           int(ds.is_train.sum()))
    names = [ph.name for ph in algorithm.phases]
    target = names.index(FLAGS.phase) if FLAGS.phase else len(names) - 1
    try:
        programs = Programs(algorithm, FLAGS.sequential_seeds)
    except TypeError:                                                  # older checkouts
        programs = Programs(algorithm)
    steps_per_s, first = time_phase(programs, data, target, FLAGS.seeds, FLAGS.steps,
                                    FLAGS.repeats)
    return {"steps_per_s": steps_per_s, "first_call_s": first, "phase": names[target],
            "jaxomrl": os.path.dirname(jaxomrl.__file__), "jax": jax.__version__}


def _child(src: str = None) -> dict:
    # the baseline runs in its own checkout: the data by its absolute path (absl takes a
    # repeated flag's last value)
    return measure(__file__, ["--worker", *sys.argv[1:], f"--data={os.path.abspath(FLAGS.data)}"],
                   src)


def main(argv):
    del argv
    if FLAGS.worker:
        print(json.dumps(worker()))
        return
    sources = [("this checkout", None)]
    if FLAGS.baseline_src:
        sources.append((f"baseline ({FLAGS.baseline_src})", FLAGS.baseline_src))
    rows = {name: [] for name, _ in sources}
    for _ in range(FLAGS.rounds):
        for name, src in sources:
            rows[name].append(_child(src))
    first = rows["this checkout"][0]
    print(f"{FLAGS.algo}, phase {first['phase']}, on {FLAGS.family} data: {FLAGS.seeds} seeds "
          f"(sequential_seeds={FLAGS.sequential_seeds}), {FLAGS.steps} updates per call "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(f"{'measurement':58s} {'steps/s':>9s} {'seed-steps/s':>13s} {'first call s':>13s}")
    for name, ms in rows.items():
        for m in ms:
            print(f"{name:58s} {m['steps_per_s']:9.2f} {m['steps_per_s'] * FLAGS.seeds:13.2f} "
                  f"{m['first_call_s']:13.1f}")
    result = {"family": FLAGS.family, "algo": FLAGS.algo, "phase": first["phase"],
              "seeds": FLAGS.seeds, "sequential_seeds": FLAGS.sequential_seeds,
              "steps": FLAGS.steps, "cpu_count": os.cpu_count(),
              "machine": platform.machine(),
              "rows": [dict(m, name=name) for name, ms in rows.items() for m in ms]}
    if FLAGS.baseline_src:
        med = {name: statistics.median(m["steps_per_s"] for m in ms) for name, ms in rows.items()}
        a, b = med.values()
        result["speedup_vs_baseline"] = a / b
        print(f"this checkout / baseline (medians): {a / b:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
