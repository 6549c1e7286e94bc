"""How far the beliefs an agent acts on online are from those its policy trained on.

    python experiments/context_shift.py --workdir=runs/cheetah_vel --algo=r2pgo,om_sac

For every finished run with an encoder, on the dataset's *training* tasks (``--split``; the
diagnosis never needs the unseen tasks) and every seed: the task embedding after ``t``
transitions (a) of data episodes of the task (``train.npz``, the contexts the policy trained on)
and (b) of the policy's own first online episode (zero-shot, deterministic). A linear regression
of the task attribute on the data embeddings at ``t`` (fitted on (a) only) is then applied to
both. ``data`` is its mean absolute error on (a), ``online`` on (b): a large ``online`` with a
small ``data`` means the online beliefs lie off the data's (shifted by the policy's own
behaviour), although ``online R2`` (a regression fitted on (b) itself) may show they still carry
the task. With ``--own=<info key>`` (a quantity of the agent's own behaviour in the attribute's
units; cheetah_vel: ``x_velocity``, the target being a velocity), ``online_own`` is the mean
|read-out - that quantity| after the same ``t`` steps and ``own_gap`` the agent's own
|quantity - attribute|: an ``online_own`` well below ``online`` means the online belief follows
what the agent does rather than the task. Prints a markdown table per run (mean ± std over
seeds) and writes ``--out`` (JSON).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import numpy as np
from absl import flags, logging
from sklearn.linear_model import LinearRegression

from jaxomrl.data.sampler import run_data
from jaxomrl.data.sampler import sample_episodes
from jaxomrl.eval import report
from jaxomrl.eval.adaptation import online_rollout
from jaxomrl.experiment import cli
from jaxomrl.experiment.runner import evaluation_keys
from jaxomrl.experiment.runs import find_runs, load_data, restore
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "experiments/train.py workdir (one subdirectory per spec).")
flags.DEFINE_list("algo", None, "Specs (default: every finished run with an encoder).")
flags.DEFINE_enum("split", "train", ["train", "test"], "Tasks to diagnose.")
flags.DEFINE_list("steps", ["1", "5", "20", "50", "100", "199"], "History lengths t.")
flags.DEFINE_integer("episodes", 8, "Data episodes per task.")
flags.DEFINE_string("own", None, "Info key of the agent's own behaviour in the attribute's "
                    "units (e.g. x_velocity for cheetah_vel): adds online_own and own_gap.")
flags.DEFINE_string("out", None, "JSON output (default: <workdir>/context_shift.json).")
flags.mark_flag_as_required("workdir")
cli.require_ints(1, "episodes")
cli.require_int_lists("steps", lower=0)


def beliefs(spec: str, run_dir: str, identity, ds, data, eval_data, split: str, episodes: int,
            own: Optional[str] = None):
    """``(data_z [S, T, E, H, D], online_z [S, T, H, D], own [S, T, H] or None)``: embeddings
    before each step of ``episodes`` data episodes per task and of the policy's first online
    episode, and the info ``own`` after each step of that episode."""
    family = ds.make_family()
    algorithm, outputs = restore(spec, run_dir, identity, family, ds, data)
    tasks, task_data = eval_data["tasks"][split], eval_data["data"][split]
    episodes_, _ = sample_episodes(task_data, jax.random.PRNGKey(0), episodes, family.horizon)

    def one(outputs, key):
        policy, context = algorithm.policy(outputs)
        _, trace = online_rollout(family, tasks, policy, context, key, 1,
                                  record=(own,) if own else ())

        def stream(tr):
            def body(c, t):
                return context.update(c, t), context.embed(c, t.obs)
            return jax.lax.scan(body, context.init(), tr)[1]
        return jax.vmap(jax.vmap(stream))(episodes_), trace["z"], trace[own] if own else None

    keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(evaluation_keys(identity["seeds"]))
    data_z, online_z, own_values = jax.jit(jax.vmap(one))(outputs, keys)
    return (np.asarray(data_z), np.asarray(online_z),
            None if own_values is None else np.asarray(own_values))


def shift_table(data_z, online_z, attribute, steps, own=None):
    """``{t: {"data": [S], "online": [S], "online_r2": [S]}}`` and, with ``own [S, T, H]``,
    ``"online_own"`` and ``"own_gap"`` (see the module docstring)."""
    out = {}
    for t in steps:
        rows = {"data": [], "online": [], "online_r2": []}
        if own is not None:
            rows.update(online_own=[], own_gap=[])
        for s, (dz, oz) in enumerate(zip(data_z, online_z)):
            x = dz[:, :, t].reshape(-1, dz.shape[-1])
            y = np.repeat(attribute, dz.shape[1])
            reg = LinearRegression().fit(x, y)
            online = reg.predict(oz[:, t])
            rows["data"].append(float(np.abs(reg.predict(x) - y).mean()))
            rows["online"].append(float(np.abs(online - attribute).mean()))
            rows["online_r2"].append(float(LinearRegression().fit(oz[:, t], attribute)
                                           .score(oz[:, t], attribute)))
            if own is not None:   # the quantity after the t steps the belief has seen
                reached = own[s][:, t - 1]
                rows["online_own"].append(float(np.abs(online - reached).mean()))
                rows["own_gap"].append(float(np.abs(reached - attribute).mean()))
        out[t] = rows
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    runs = find_runs(FLAGS.workdir, FLAGS.algo)
    ds, ood, identities = load_data(runs)
    data, eval_data = run_data(ds, ood)
    if FLAGS.split not in eval_data["tasks"]:
        raise cli.UsageError(f"--split={FLAGS.split}: the dataset has no such tasks")
    steps = sorted({int(t) for t in FLAGS.steps})
    family = ds.make_family()
    if steps[-1] >= family.horizon:
        raise cli.UsageError(f"--steps: history lengths must be below the horizon "
                             f"{family.horizon}")
    if FLAGS.own and steps[0] < 1:
        raise cli.UsageError("--own compares the belief after t >= 1 steps with the quantity "
                             "those steps reached: drop t = 0 from --steps")
    if FLAGS.own:
        cli.require_info_keys(family, [FLAGS.own], "own")
    rows = ~ds.is_test if FLAGS.split == "train" else ds.is_test
    attribute = ds.attributes[rows, 0]
    results = {}
    for spec, run_dir in runs.items():
        if identities[spec]["config"].get("encoder") is None:
            continue
        data_z, online_z, own = beliefs(spec, run_dir, identities[spec], ds, data, eval_data,
                                        FLAGS.split, FLAGS.episodes, FLAGS.own)
        table = shift_table(data_z, online_z, attribute, steps, own)
        results[spec] = {str(t): v for t, v in table.items()}
        print(f"\n### {spec}: |error| of the task attribute decoded linearly from the belief "
              f"after t steps ({FLAGS.split} tasks, decoder fitted on data beliefs)\n")
        print(report.markdown_table(
            {f"t = {t}": v for t, v in table.items()},
            ["data", "online", "online_r2"] + (["online_own", "own_gap"] if FLAGS.own else []),
            {"data": "data episodes", "online": "own online episode",
             "online_r2": "online R² (own fit)", "online_own": f"online vs own {FLAGS.own}",
             "own_gap": f"own {FLAGS.own} vs attribute"}, lower_is_better=["data", "online"],
            digits=3, row_header="history"))
    out = FLAGS.out or os.path.join(FLAGS.workdir, "context_shift.json")
    atomic_write_text(out, json.dumps({"split": FLAGS.split, "steps": steps,
                                       "attribute": attribute.tolist(), "runs": results},
                                      indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir)
