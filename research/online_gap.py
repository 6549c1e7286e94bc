"""Where an online episode loses against a fixed data context, step window by step window.

    python research/online_gap.py --workdir=runs/cheetah_vel --algo=r2pgo --own=x_velocity

For a finished run with an encoder, on the dataset's *training* tasks (``--split``; the diagnosis
never needs the unseen tasks) and every seed, one episode per task under three contexts:

* ``online``: zero-shot, the belief inferred from the agent's own history (the online protocol);
* ``offline``: the belief after one episode of the task's training data, held fixed (the
  offline-context protocol);
* ``data_then_own``: the same data episode first, then the agent's own steps added to it.

The per-step reward is split into the tracking term ``-|own - attribute|`` (``--own``: an info key
in the task attribute's units; cheetah_vel: ``x_velocity`` against the target velocity) and the
rest (the control cost), each summed over the windows of ``--windows``, with the signed mean of
``own - attribute`` per window and the return per tercile of the task attribute. A gap in the
first window is the time to identify the task; a gap later on is a belief the policy acts worse
on although it has seen the task for long. Without ``--own`` (a family whose attribute is not a
target of the agent's own behaviour, e.g. gravity) the return is split by window only.

Whether the online belief names its task: ``identified[a,b)`` is the fraction of (task, step) in
the window whose online embedding is nearest (Euclidean) to that task's own offline-context
embedding among every task's (same seed); ``collapse`` the largest share of tasks whose last
online embedding is nearest to one and the same task (1/T when each names its own, 1 when all
name one). A belief that drifts to one task whatever the task is the agent reading its own
behaviour as that task's (the context shift ReDA §1 describes). Prints the table and writes
``--out`` (JSON).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np
from absl import flags, logging

from jaxomrl.eval import report
from jaxomrl.eval.adaptation import context_from_data, online_rollout
from jaxomrl.experiment import cli
from jaxomrl.experiment.programs import evaluation_keys
from jaxomrl.experiment.runs import has_encoder, restore, split_inputs
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "experiments/train.py workdir (one subdirectory per spec).")
flags.DEFINE_list("algo", None, "Specs (default: every finished run with an encoder).")
flags.DEFINE_enum("split", "train", ["train", "val", "test"], "Tasks to diagnose.")
flags.DEFINE_string("own", None, "Info key of the agent's own behaviour in the task "
                    "attribute's units (cheetah_vel: x_velocity); without it the return is "
                    "split by window only.")
flags.DEFINE_list("windows", ["0", "5", "20", "50", "100"], "Window starts (steps); the last "
                  "window runs to the horizon.")
flags.DEFINE_string("out", None, "JSON output (default: <workdir>/online_gap.json).")
flags.mark_flags_as_required(["workdir"])
cli.require_int_lists("windows", lower=0)


def decompose(reward: np.ndarray, own: Optional[np.ndarray], attribute: np.ndarray,
              windows: Sequence[Tuple[int, int]]) -> Dict[str, List[float]]:
    """``reward, own [S, T, H]`` (seeds, tasks, steps) and ``attribute [T]``: per seed ``[S]``,
    the mean over tasks of the return, of its tracking term ``-|own - attribute|`` and of the
    rest, each also per window ``[a, b)``, the signed mean of ``own - attribute`` per window,
    and the return per tercile of the attribute (``return_tercile0``: the lowest third).
    ``own`` None: the return per window (``return[a,b)``) instead of the tracking terms."""
    per_seed = lambda x: x.sum(-1).mean(-1).tolist()            # [S, T, h] -> [S]
    row = {"return": per_seed(reward)}
    if own is None:
        for a, b in windows:
            row[f"return[{a},{b})"] = per_seed(reward[..., a:b])
    else:
        error = own - attribute[None, :, None]
        track = -np.abs(error)
        rest = reward - track
        row.update(tracking=per_seed(track), rest=per_seed(rest))
        for a, b in windows:
            row[f"tracking[{a},{b})"] = per_seed(track[..., a:b])
            row[f"rest[{a},{b})"] = per_seed(rest[..., a:b])
            row[f"signed[{a},{b})"] = error[..., a:b].mean((-1, -2)).tolist()
    for i, part in enumerate(np.array_split(np.argsort(attribute), 3)):
        row[f"return_tercile{i}"] = per_seed(reward[:, part])
    return row


def identification(z: np.ndarray, z_reference: np.ndarray,
                   windows: Sequence[Tuple[int, int]]) -> Dict[str, List[float]]:
    """``z [S, T, H, L]`` (a context's embeddings at every step) against ``z_reference [S, T, L]``
    (every task's offline-context embedding): per seed, ``identified[a,b)`` (the fraction of
    tasks and steps of the window whose embedding is nearest to its own task's reference) and
    ``collapse`` (the largest share of tasks whose last embedding is nearest to one task)."""
    d = np.linalg.norm(z[:, :, :, None, :] - z_reference[:, None, None, :, :], axis=-1)
    nearest = d.argmin(-1)                                       # [S, T, H]
    own = nearest == np.arange(z.shape[1])[None, :, None]
    row = {f"identified[{a},{b})": own[..., a:b].mean((-1, -2)).tolist() for a, b in windows}
    last = nearest[..., -1]
    row["collapse"] = [np.bincount(s, minlength=z.shape[1]).max() / z.shape[1] for s in last]
    return row


def rollouts(spec, run_dir, identity, ds, data, eval_data, split: str, own: Optional[str]):
    """``{context: (reward, own or None, z) [S, T, H(, L)]}`` of one episode per task and seed
    (module docstring), the policy deterministic as in the protocols."""
    family = ds.make_family()
    algorithm, outputs = restore(spec, run_dir, identity, family, ds, data)
    tasks, task_data = eval_data["tasks"][split], eval_data["data"][split]
    record = (own,) if own else ()

    def one(outputs, key):
        policy, context = algorithm.policy(outputs)
        k_on, k_ctx, k_off = jax.random.split(key, 3)
        start = context_from_data(context, task_data, k_ctx, family.horizon)
        runs = {"online": dict(), "offline": dict(initial_context=start, freeze_from=0),
                "data_then_own": dict(initial_context=start)}
        out = {}
        for name, kwargs in runs.items():
            _, trace = online_rollout(family, tasks, policy, context,
                                      k_on if name == "online" else k_off, 1, record=record,
                                      **kwargs)
            out[name] = (trace["reward"], trace[own] if own else None, trace["z"])
        return out

    keys = jax.vmap(lambda k: jax.random.fold_in(k, 3))(evaluation_keys(identity["seeds"]))
    out = jax.jit(jax.vmap(one))(outputs, keys)
    return {name: tuple(None if x is None else np.asarray(x) for x in v)
            for name, v in out.items()}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    runs, ds, identities, data, eval_data = split_inputs(FLAGS.workdir, FLAGS.algo, FLAGS.split)
    family = ds.make_family()
    if FLAGS.own:
        cli.require_info_keys(family, [FLAGS.own], "own")
    starts: List[int] = sorted({int(w) for w in FLAGS.windows})
    if starts[-1] >= family.horizon:
        raise cli.UsageError(f"--windows: starts must be below the horizon {family.horizon}")
    windows = list(zip(starts, starts[1:] + [family.horizon]))
    rows = {"train": ds.is_train, "val": ds.is_val, "test": ds.is_test}[FLAGS.split]
    attribute = np.asarray(ds.attributes[rows, 0])
    results = {}
    for spec, run_dir in runs.items():
        if not has_encoder(identities[spec]):
            continue
        traces = rollouts(spec, run_dir, identities[spec], ds, data, eval_data, FLAGS.split,
                          FLAGS.own)
        reference = traces["offline"][2][:, :, 0]          # the held embedding of every task
        results[spec] = {name: {**decompose(reward, own, attribute, windows),
                                **identification(z, reference, windows)}
                         for name, (reward, own, z) in traces.items()}
        if FLAGS.own:
            cols = ["return", "tracking", "rest"] + [f"tracking[{a},{b})" for a, b in windows]
            what = f"tracking = -|{FLAGS.own} - attribute|; "
        else:
            cols = ["return"] + [f"return[{a},{b})" for a, b in windows]
            what = ""
        cols += ([f"return_tercile{i}" for i in range(3)]
                 + [f"identified[{a},{b})" for a, b in windows] + ["collapse"])
        print(f"\n### {spec}: one episode per {FLAGS.split} task (mean over seeds and tasks; "
              f"{what}mean ± std over seeds)\n")
        print(report.markdown_table(
            results[spec],
            cols, {c: c for c in cols}, digits=2, row_header="context"))
    out = FLAGS.out or os.path.join(FLAGS.workdir, "online_gap.json")
    atomic_write_text(out, json.dumps({"split": FLAGS.split, "own": FLAGS.own,
                                       "windows": windows, "attribute": attribute.tolist(),
                                       "runs": results}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir)
