"""Task-encoder update throughput: R2PGO's recurrent VAE + InfoNCE step at a run's sizes.

Times ``jit(vmap(lax.scan(update)))`` of the encoder learner that ``experiments/train.py
--algo=r2pgo`` builds for ``--family`` (the registry's ``Settings`` defaults, the window
derived from the family's horizon), seeds vmapped as the runner does, on synthetic data of the
family's shapes (``--transitions_per_task`` per task, episodes of the horizon). The main job's
sizes are the defaults: the point robot (window 20), 40 training tasks, 16 tasks x 8 contexts
per step, 3 seeds.

    python benchmarks/encoder_throughput.py
    python benchmarks/encoder_throughput.py --baseline_src=/path/to/an/older/checkout

``--baseline_src``: the same measurement, in the same run, of another checkout's ``jaxomrl``
(the ratio today / baseline). ``--in_sequence`` (default) adds this checkout's exact VAE with the
seeds run one after another (``lax.map``), as the runner runs GRU-VAE encoders on a CPU.
``--subsample=E,K`` adds the VAE on a subsample of E posteriors
x K transitions per context (VariBAD's ELBO subsampling) beside the exact objective. Each
measurement runs in its own subprocess. Prints a table and, on its last line, one JSON object.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

from absl import app, flags
from worker import measure

FLAGS = flags.FLAGS
flags.DEFINE_string("family", "point_robot_sparse", "Task family whose sizes are used.")
flags.DEFINE_string("algo", "r2pgo", "Algorithm whose encoder is timed (a GRU-VAE one: r2pgo, "
                    "om_bc, borel).")
flags.DEFINE_integer("seeds", 3, "Seeds vmapped in one program (the main job's 3).")
flags.DEFINE_integer("num_tasks", 40, "Training tasks (the point robot's 40).")
flags.DEFINE_integer("transitions_per_task", 6000, "Transitions per task.")
flags.DEFINE_integer("steps", 50, "Updates per timed call.")
flags.DEFINE_integer("repeats", 3, "Timed repeats (best is reported).")
flags.DEFINE_list("subsample", [], "E,K: also time the VAE on E posteriors x K transitions.")
flags.DEFINE_string("baseline_src", None, "Another checkout's root: also time its jaxomrl.")
flags.DEFINE_bool("in_sequence", True, "Also time the seeds run one after another (lax.map), "
                  "as the runner runs GRU-VAE encoder phases on a CPU (Phase.seeds_in_sequence).")
flags.DEFINE_string("worker", None, "Internal: run one measurement.")


def worker() -> dict:
    import dataclasses
    import jax
    import jax.numpy as jnp
    import numpy as np
    import jaxomrl
    from jaxomrl import envs
    from jaxomrl.algos import registry
    from jaxomrl.data.sampler import TaskData
    from jaxomrl.learners.encoder import make_encoder_learner
    from jaxomrl.types import Transition

    family = envs.make(FLAGS.family)
    settings = registry.with_family(registry.Settings(), family)
    if FLAGS.worker == "subsample":
        e, k = (int(x) for x in FLAGS.subsample)
        settings = dataclasses.replace(settings, vae_posteriors=e, vae_transitions=k)
    cfg = registry.make_config(FLAGS.algo, settings).encoder
    obs_dim, act_dim = family.obs_dim, family.action_dim
    t, n, h = FLAGS.num_tasks, FLAGS.transitions_per_task, family.horizon
    r = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(r.normal(size=s).astype(np.float32))
    tr = Transition(obs=f(t, n, obs_dim), action=jnp.tanh(f(t, n, act_dim)), reward=f(t, n),
                    next_obs=f(t, n, obs_dim), terminated=jnp.zeros((t, n), bool),
                    truncated=jnp.zeros((t, n), bool))
    step = np.arange(n)
    data = TaskData(transitions=tr, episode=jnp.asarray(np.tile(step // h, (t, 1))),
                    timestep=jnp.asarray(np.tile(step % h, (t, 1))),
                    checkpoint=jnp.zeros((t, n), jnp.int32),
                    attributes=f(t, family.attr_dim))
    learner = make_encoder_learner(cfg, obs_dim, act_dim)

    def run(states, data, key):
        def one(state, k):
            def body(s, kk):
                s, m = learner.update(s, data, kk)
                return s, m["loss"]
            return jax.lax.scan(body, state, jax.random.split(k, FLAGS.steps))
        keys = jax.random.split(key, FLAGS.seeds)
        if FLAGS.worker == "in_sequence":        # as the runner runs it on a CPU now
            return jax.lax.map(lambda a: one(*a), (states, keys))
        return jax.vmap(one)(states, keys)

    states = jax.jit(jax.vmap(learner.init))(jax.random.split(jax.random.PRNGKey(0),
                                                              FLAGS.seeds))
    fn = jax.jit(run)
    t0 = time.perf_counter()
    states, out = fn(states, data, jax.random.PRNGKey(0))
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    states, out = fn(states, data, jax.random.PRNGKey(1))
    jax.block_until_ready(out)
    best = float("inf")
    for i in range(FLAGS.repeats):
        t0 = time.perf_counter()
        states, out = fn(states, data, jax.random.PRNGKey(2 + i))
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    vae = getattr(cfg, "gru", None) or cfg    # the GRU's config (a checkout before the kinds: all)
    return {"steps_per_s": FLAGS.steps / best, "first_call_s": first,
            "window": cfg.window, "contexts": (cfg.meta_batch or t) * cfg.contexts_per_task,
            "vae_grid": ([vae.vae_posteriors, vae.vae_transitions] if vae.vae_posteriors
                         else [cfg.window + 1, cfg.window]),
            "jaxomrl": os.path.dirname(jaxomrl.__file__), "jax": jax.__version__}


def _child(kind: str, src: str = None) -> dict:
    return measure(__file__, [f"--worker={kind}", *sys.argv[1:]], src)


def main(argv):
    del argv
    if FLAGS.worker:
        print(json.dumps(worker()))
        return
    if FLAGS.subsample and len(FLAGS.subsample) != 2:
        raise app.UsageError("--subsample is E,K")
    rows = [("this checkout, exact VAE", _child("exact"))]
    if FLAGS.in_sequence:
        rows.append(("this checkout, exact VAE, seeds in sequence", _child("in_sequence")))
    if FLAGS.subsample:
        rows.append((f"this checkout, VAE on {FLAGS.subsample[0]} x {FLAGS.subsample[1]} "
                     "subsample", _child("subsample")))
    if FLAGS.baseline_src:
        rows.append((f"baseline ({FLAGS.baseline_src}), exact VAE",
                     _child("exact", FLAGS.baseline_src)))
    base = rows[0][1]["steps_per_s"]
    print(f"{FLAGS.algo} encoder on {FLAGS.family} sizes: window {rows[0][1]['window']}, "
          f"{rows[0][1]['contexts']} contexts per step, {FLAGS.seeds} seeds vmapped "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(f"{'measurement':58s} {'steps/s':>9s} {'seed-steps/s':>13s} {'first call s':>13s}")
    for name, m in rows:
        print(f"{name:58s} {m['steps_per_s']:9.2f} {m['steps_per_s'] * FLAGS.seeds:13.2f} "
              f"{m['first_call_s']:13.1f}")
    result = {"family": FLAGS.family, "algo": FLAGS.algo, "seeds": FLAGS.seeds,
              "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "rows": [dict(m, name=name) for name, m in rows]}
    if FLAGS.baseline_src:
        result["speedup_vs_baseline"] = base / rows[-1][1]["steps_per_s"]
        print(f"this checkout / baseline: {result['speedup_vs_baseline']:.2f}x")
        if FLAGS.in_sequence:
            result["in_sequence_vs_baseline"] = (rows[1][1]["steps_per_s"]
                                                 / rows[-1][1]["steps_per_s"])
            print(f"this checkout, seeds in sequence / baseline (vmapped, as its runner ran "
                  f"them): {result['in_sequence_vs_baseline']:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
