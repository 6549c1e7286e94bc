"""How far the beliefs an agent acts on online are from those its policy trained on.

    python research/context_shift.py --workdir=runs/cheetah_vel --algo=r2pgo,om_sac

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
what the agent does rather than the task; ``online_signed`` / ``own_signed`` are the same
errors with their sign (read-out - attribute, quantity - attribute): a drift that way round.

With ``--relabelled=K`` (families with a ``relabel_reward``, e.g. cheetah_vel) the data episodes
of every task are also embedded with their rewards relabelled for ``K`` other tasks of the split
(the same states and actions, another task's rewards), and ``up`` / ``down`` are the slopes of
the read-out's change against the attribute's change for relabels to a higher / lower
attribute (least squares through 0): 1 means the belief follows the rewards, 0 that it ignores
them (reads the behaviour), a negative slope that it moves the wrong way. Prints a markdown
table per run (mean ± std over seeds) and writes ``--out`` (JSON).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import numpy as np
from absl import flags, logging
from sklearn.linear_model import LinearRegression

from jaxomrl.data.relabel import relabelled_rewards
from jaxomrl.data.sampler import sample_episodes
from jaxomrl.eval import report
from jaxomrl.eval.adaptation import online_rollout
from jaxomrl.experiment import cli
from jaxomrl.experiment.programs import evaluation_keys
from jaxomrl.experiment.runs import has_encoder, restore, split_inputs
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "experiments/train.py workdir (one subdirectory per spec).")
flags.DEFINE_list("algo", None, "Specs (default: every finished run with an encoder).")
flags.DEFINE_enum("split", "train", ["train", "val", "test"], "Tasks to diagnose.")
flags.DEFINE_list("steps", ["1", "5", "20", "50", "100", "199"], "History lengths t.")
flags.DEFINE_integer("episodes", 8, "Data episodes per task.")
flags.DEFINE_string("own", None, "Info key of the agent's own behaviour in the attribute's "
                    "units (e.g. x_velocity for cheetah_vel): adds online_own and own_gap.")
flags.DEFINE_integer("relabelled", 0, "Other tasks per task whose rewards the data episodes "
                     "are relabelled with (adds the up / down reward responses; 0: none).")
flags.DEFINE_string("out", None, "JSON output (default: <workdir>/context_shift.json).")
flags.mark_flag_as_required("workdir")
cli.require_ints(1, "episodes")
cli.require_ints(0, "relabelled")
cli.require_int_lists("steps", lower=0)


def relabel_targets(num_tasks: int, k: int, seed: int = 0) -> np.ndarray:
    """``[T, k]``: for every task, ``k`` distinct other tasks (drawn once, fixed seed)."""
    if not 0 < k < num_tasks:
        raise ValueError(f"--relabelled={k}: needs 0 < k < the split's {num_tasks} tasks")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(np.delete(np.arange(num_tasks), i), k, replace=False)
                     for i in range(num_tasks)])


def beliefs(spec: str, run_dir: str, identity, ds, data, eval_data, split: str, episodes: int,
            own: Optional[str] = None, relabel_to: Optional[np.ndarray] = None):
    """``(data_z [S, T, E, H, D], online_z [S, T, H, D], own [S, T, H] or None, relabelled_z
    [S, T, K, E, H, D] or None)``: embeddings before each step of ``episodes`` data episodes
    per task and of the policy's first online episode, the info ``own`` after each step of that
    episode, and (with ``relabel_to [T, K]``, tasks of the split) the data episodes' embeddings
    with their rewards relabelled for each of those tasks (``TaskFamily.relabel_reward``)."""
    family = ds.make_family()
    algorithm, outputs = restore(spec, run_dir, identity, family, ds, data)
    tasks, task_data = eval_data["tasks"][split], eval_data["data"][split]
    episodes_, _ = sample_episodes(task_data, jax.random.PRNGKey(0), episodes, family.horizon)
    relabelled_eps = None
    if relabel_to is not None:
        family.check_relabel_reward()
        targets = jax.tree_util.tree_map(lambda x: x[relabel_to], tasks)             # [T, K]

        def relabel(target, source, eps):                    # one task's episodes, K targets
            reward = jax.vmap(lambda t: relabelled_rewards(family, t, source, eps))(target)
            return jax.vmap(lambda r: eps.replace(reward=r))(reward)               # [K, E, H]
        relabelled_eps = jax.jit(jax.vmap(relabel))(targets, tasks, episodes_)

    def one(outputs, key):
        policy, context = algorithm.policy(outputs)
        _, trace = online_rollout(family, tasks, policy, context, key, 1,
                                  record=(own,) if own else ())

        def stream(tr):
            def body(c, t):
                return context.update(c, t), context.embed(c, t.obs)
            return jax.lax.scan(body, context.init(), tr)[1]
        relabelled = (None if relabelled_eps is None
                      else jax.vmap(jax.vmap(jax.vmap(stream)))(relabelled_eps))
        return (jax.vmap(jax.vmap(stream))(episodes_), trace["z"],
                trace[own] if own else None, relabelled)

    keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(evaluation_keys(identity["seeds"]))
    data_z, online_z, own_values, relabelled_z = jax.jit(jax.vmap(one))(outputs, keys)
    maybe = lambda x: None if x is None else np.asarray(x)
    return np.asarray(data_z), np.asarray(online_z), maybe(own_values), maybe(relabelled_z)


def response_slopes(change: np.ndarray, delta: np.ndarray) -> tuple:
    """``(up, down)``: least-squares slopes through 0 of ``change`` against ``delta`` (same
    shapes) over the entries with ``delta > 0`` and ``delta < 0`` (NaN where there are none)."""
    def slope(sel):
        d = delta[sel]
        return float(np.sum(change[sel] * d) / np.sum(d * d)) if d.size else float("nan")
    return slope(delta > 0), slope(delta < 0)


def shift_table(data_z, online_z, attribute, steps, own=None, relabelled_z=None,
                relabel_to=None):
    """``{t: {"data": [S], "online": [S], "online_r2": [S], "online_signed": [S]}}``; with
    ``own [S, T, H]`` also ``"online_own"``, ``"own_gap"``, ``"own_signed"``; with
    ``relabelled_z [S, T, K, E, H, D]`` and ``relabel_to [T, K]`` also ``"up"``, ``"down"``
    (see the module docstring)."""
    out = {}
    for t in steps:
        rows = {"data": [], "online": [], "online_r2": [], "online_signed": []}
        if own is not None:
            rows.update(online_own=[], own_gap=[], own_signed=[])
        if relabelled_z is not None:
            rows.update(up=[], down=[])
        for s, (dz, oz) in enumerate(zip(data_z, online_z)):
            x = dz[:, :, t].reshape(-1, dz.shape[-1])
            y = np.repeat(attribute, dz.shape[1])
            reg = LinearRegression().fit(x, y)
            online = reg.predict(oz[:, t])
            rows["data"].append(float(np.abs(reg.predict(x) - y).mean()))
            rows["online"].append(float(np.abs(online - attribute).mean()))
            rows["online_signed"].append(float(np.mean(online - attribute)))
            rows["online_r2"].append(float(LinearRegression().fit(oz[:, t], attribute)
                                           .score(oz[:, t], attribute)))
            if own is not None:   # the quantity after the t steps the belief has seen
                reached = own[s][:, t - 1]
                rows["online_own"].append(float(np.abs(online - reached).mean()))
                rows["own_gap"].append(float(np.abs(reached - attribute).mean()))
                rows["own_signed"].append(float(np.mean(reached - attribute)))
            if relabelled_z is not None:
                rz = relabelled_z[s][:, :, :, t]                                # [T, K, E, D]
                base = reg.predict(x).reshape(dz.shape[:2])                     # [T, E]
                moved = reg.predict(rz.reshape(-1, rz.shape[-1])).reshape(rz.shape[:3])
                delta = attribute[relabel_to] - attribute[:, None]              # [T, K]
                up, down = response_slopes(moved - base[:, None],
                                           np.broadcast_to(delta[..., None], moved.shape))
                rows["up"].append(up)
                rows["down"].append(down)
        out[t] = rows
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    runs, ds, identities, data, eval_data = split_inputs(FLAGS.workdir, FLAGS.algo, FLAGS.split)
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
    rows = {"train": ds.is_train, "val": ds.is_val, "test": ds.is_test}[FLAGS.split]
    attribute = ds.attributes[rows, 0]
    relabel_to = None
    if FLAGS.relabelled:
        try:
            family.check_relabel_reward()
            relabel_to = relabel_targets(len(attribute), FLAGS.relabelled)
        except ValueError as e:
            raise cli.UsageError(f"--relabelled: {e}") from e
    results = {}
    for spec, run_dir in runs.items():
        if not has_encoder(identities[spec]):
            continue
        data_z, online_z, own, relabelled_z = beliefs(
            spec, run_dir, identities[spec], ds, data, eval_data, FLAGS.split, FLAGS.episodes,
            FLAGS.own, relabel_to)
        table = shift_table(data_z, online_z, attribute, steps, own, relabelled_z, relabel_to)
        results[spec] = {str(t): v for t, v in table.items()}
        print(f"\n### {spec}: |error| of the task attribute decoded linearly from the belief "
              f"after t steps ({FLAGS.split} tasks, decoder fitted on data beliefs)\n")
        print(report.markdown_table(
            {f"t = {t}": v for t, v in table.items()},
            ["data", "online", "online_r2", "online_signed"]
            + (["online_own", "own_gap", "own_signed"] if FLAGS.own else [])
            + (["up", "down"] if FLAGS.relabelled else []),
            {"data": "data episodes", "online": "own online episode",
             "online_r2": "online R² (own fit)", "online_signed": "online, signed",
             "online_own": f"online vs own {FLAGS.own}",
             "own_gap": f"own {FLAGS.own} vs attribute", "own_signed": "own, signed",
             "up": "reward response, higher task", "down": "reward response, lower task"},
            lower_is_better=["data", "online"],
            digits=3, row_header="history"))
    out = FLAGS.out or os.path.join(FLAGS.workdir, "context_shift.json")
    atomic_write_text(out, json.dumps({"split": FLAGS.split, "steps": steps,
                                       "attribute": attribute.tolist(),
                                       "relabel_to": (None if relabel_to is None
                                                      else relabel_to.tolist()),
                                       "runs": results},
                                      indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.workdir)
