"""Two collections of one family on the same tasks: what each collector's checkpoints reach.

    python research/collector_comparison.py \
        --a=runs/reproduce/r2pgo_hopper_rand_params/cpu/data --a_name=conditioned \
        --b=runs/collectors/hopper_per_task --b_name="per-task SAC" \
        --out=research/results/rand_params_collectors/hopper.md

Reads each collection's ``summary.json`` (every checkpoint evaluated on every task, one episode in
each of its rollout environments) and matches tasks by their attributes. Writes, per shared task,
the evaluated return of the untrained policy, of every checkpoint in ``--checkpoints`` and of the
best checkpoint under both collectors; then, over every task of collection ``a``, the spread its
datasets' behaviour covers (the lowest and the highest return among its training checkpoints) and
the share of those tasks whose best checkpoint reaches ``--expert_fraction`` of the best task's.
Only training and validation tasks are shown (``--splits``): the diagnosis never needs the unseen
ones.
"""
import json
import os

import numpy as np
from absl import app, flags

flags.DEFINE_string("a", None, "First collection directory.")
flags.DEFINE_string("a_name", "a", "Its label.")
flags.DEFINE_string("b", None, "Second collection directory (a subset of a's tasks may do).")
flags.DEFINE_string("b_name", "b", "Its label.")
flags.DEFINE_list("checkpoints", ["1", "3", "6", "20"], "Checkpoints shown per task.")
flags.DEFINE_list("splits", ["train", "val"], "Task roles shown.")
flags.DEFINE_float("expert_fraction", 0.75, "Share of the best task's best return that counts as "
                   "expert behaviour.")
flags.DEFINE_string("out", None, "Markdown file to write (default: print).")
FLAGS = flags.FLAGS


def _load(path):
    with open(os.path.join(path, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(path, "collect_config.json")) as f:
        s["config"] = json.load(f)
    return s


def main(_):
    a, b = _load(FLAGS.a), _load(FLAGS.b)
    ra, rb = np.asarray(a["evaluated_returns"]), np.asarray(b["evaluated_returns"])
    att_a, att_b = np.asarray(a["task_attributes"]), np.asarray(b["task_attributes"])
    ck = [int(c) for c in FLAGS.checkpoints]
    lines = [f"# {a['family']}: {FLAGS.a_name} against {FLAGS.b_name}", "",
             f"Evaluated return (one episode in each rollout environment, stochastic policy) of "
             f"checkpoints {', '.join(map(str, ck))} and the best one, per task. "
             f"{FLAGS.a_name}: `{FLAGS.a}` ({a['collect_seconds_this_call'] / 60:.1f} min for "
             f"{len(ra)} tasks); {FLAGS.b_name}: `{FLAGS.b}` "
             f"({b['collect_seconds_this_call'] / 60:.1f} min for {len(rb)} tasks).", "",
             "| task | role | collector | untrained | " + " | ".join(f"ckpt {c}" for c in ck)
             + " | best (ckpt) |", "|---|---|---|" + "---:|" * (len(ck) + 2)]
    pairs = []
    for j in range(len(rb)):
        i = int(np.argmin(np.abs(att_a - att_b[j]).sum(axis=1)))
        if not np.allclose(att_a[i], att_b[j], atol=1e-5) or a["split"][i] not in FLAGS.splits:
            continue
        pairs.append((i, j))
        for name, r, row in ((FLAGS.a_name, ra, i), (FLAGS.b_name, rb, j)):
            best = int(np.argmax(r[row]))
            lines.append(f"| {i} | {a['split'][i]} | {name} | {r[row, 0]:.0f} | "
                         + " | ".join(f"{r[row, c]:.0f}" for c in ck)
                         + f" | {r[row, best]:.0f} ({best}) |")
    if pairs:
        ia, jb = zip(*pairs)
        best_a, best_b = ra[list(ia)].max(1), rb[list(jb)].max(1)
        diff = best_a - best_b
        lines += ["", f"Over these {len(pairs)} tasks, best checkpoint: {FLAGS.a_name} "
                  f"{best_a.mean():.0f} ± {best_a.std(ddof=1):.0f}, {FLAGS.b_name} "
                  f"{best_b.mean():.0f} ± {best_b.std(ddof=1):.0f} (mean ± sample std over "
                  f"tasks); difference {diff.mean():.0f} ± {diff.std(ddof=1):.0f}, higher for "
                  f"{FLAGS.a_name} on {int((diff > 0).sum())} of {len(pairs)}."]
    train_ck = [int(c) for c in a["config"].get("train_checkpoints", ck)]
    shown = [t for t, role in enumerate(a["split"]) if role in FLAGS.splits]
    low, high = ra[shown][:, train_ck].min(1), ra[shown][:, train_ck].max(1)
    top = ra[shown].max(1)
    lines += ["", f"Every {'/'.join(FLAGS.splits)} task of {FLAGS.a_name} ({len(shown)}): its "
              f"training checkpoints {train_ck} span returns from {low.mean():.0f} (median "
              f"{np.median(low):.0f}, max {low.max():.0f}) to {high.mean():.0f} (median "
              f"{np.median(high):.0f}, min {high.min():.0f}) per task; "
              f"{int((top >= FLAGS.expert_fraction * top.max()).sum())} of {len(shown)} tasks' "
              f"best checkpoint reach {FLAGS.expert_fraction:g} x the best task's "
              f"({top.max():.0f})."]
    text = "\n".join(lines) + "\n"
    if FLAGS.out:
        os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    flags.mark_flags_as_required(["a", "b"])
    app.run(main)
