"""Every policy checkpoint of a completed collection on every task, with mode or sampled actions.

    python research/checkpoint_returns.py --data=runs/cheetah_vel_data --out=modes.json

The collection evaluates its checkpoints with the actions its data were rolled out with
(sampled, by default: ``summary.json``'s ``evaluated_returns``, the "data's best checkpoint").
This evaluates them again both ways on the same keys (``jaxomrl.experiment.collect.
evaluate_checkpoints``), so a learner evaluated with its mode actions can be set beside the
experts' mode returns too. Prints the best checkpoint's mean return (seen / unseen tasks) and,
with ``--bins``, per bin of the first task attribute; writes ``--out`` (JSON: both ``[T, K + 1]``
matrices, the attributes and the split).
"""
from __future__ import annotations

import json

import numpy as np
from absl import flags

from jaxomrl.experiment import cli
from jaxomrl.experiment.collect import evaluate_checkpoints
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Completed collection directory (its sac_checkpoints/).")
flags.DEFINE_string("out", None, "JSON output.")
flags.DEFINE_list("bins", [], "Bin edges of the first task attribute for the printed table "
                  "(e.g. 0,0.5,1,1.5,2,2.5,3 for Half-Cheetah-Vel's target velocity).")
flags.mark_flags_as_required(["data", "out"])


def main(_):
    edges = [float(b) for b in FLAGS.bins]
    if edges and (len(edges) < 2 or np.any(np.diff(edges) <= 0)):
        raise cli.UsageError(f"--bins must be at least two increasing edges, got {FLAGS.bins}")
    result = {"data": FLAGS.data}
    for mode in ("sampled", "mode"):
        returns, tasks, is_test = evaluate_checkpoints(FLAGS.data, deterministic=mode == "mode")
        result[mode] = np.round(returns, 3).tolist()
        best = returns.max(axis=1)
        attr = np.asarray(tasks.attributes)[:, 0]
        line = (f"{mode} actions: best checkpoint {best[~is_test].mean():.2f} (seen), "
                f"{best[is_test].mean():.2f} (unseen)" if is_test.any() else
                f"{mode} actions: best checkpoint {best.mean():.2f}")
        if edges:
            line += "; by bin (seen): " + " ".join(
                f"[{lo:g}, {hi:g}) {best[~is_test & (attr >= lo) & (attr < hi)].mean():.1f}"
                for lo, hi in zip(edges[:-1], edges[1:])
                if np.any(~is_test & (attr >= lo) & (attr < hi)))
        print(line)
    result.update(attributes=np.asarray(tasks.attributes).tolist(), is_test=is_test.tolist())
    atomic_write_text(FLAGS.out, json.dumps(result))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main)
