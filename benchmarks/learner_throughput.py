"""Meta-policy update throughput: JAX (seeds vmapped in one jitted program) vs a PyTorch loop.

The update is one offline SAC+BC step of the task-conditioned meta-policy (twin critics, target
networks, learned temperature, TD3+BC-style actor loss) with R2PGO's hypernetwork head (or
``--head=concat``), at the same network sizes and batch in both frameworks. PyTorch runs seeds one
after another, as the peer codebases do; JAX runs S seeds as one ``jit(vmap(lax.scan(update)))``.
Each measurement runs in its own subprocess, so peak memory (the process's max RSS) is per
configuration.

    python benchmarks/learner_throughput.py --seeds=1,5,20 --updates=100

Prints a table and, on its last line, one JSON object. The PyTorch loop needs ``torch`` (an
optional dependency); without it the JAX programs are timed alone.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time

from absl import app, flags
from worker import best_seconds

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["1", "5", "20"], "Seed counts for the vmapped JAX program.")
flags.DEFINE_integer("updates", 100, "Updates per timed call (per seed).")
flags.DEFINE_integer("repeats", 3, "Timed repeats (best is reported).")
flags.DEFINE_list("hidden", ["256", "256"], "Hidden sizes of actor and critics.")
flags.DEFINE_integer("batch", 256, "Minibatch size.")
flags.DEFINE_integer("obs_dim", 17, "Observation size (HalfCheetah: 17).")
flags.DEFINE_integer("action_dim", 6, "Action size (HalfCheetah: 6).")
flags.DEFINE_integer("latent_dim", 5, "Task-embedding size.")
flags.DEFINE_enum("head", "hyper", ["hyper", "concat"], "Conditioning head.")
flags.DEFINE_enum("seed_axis", "vmap", ["vmap", "map"], "How the JAX program runs its seeds: "
                  "vmap (batched) or lax.map (one after another, in one program).")
flags.DEFINE_enum("torch_device", "auto", ["auto", "cpu", "cuda"], "Where the PyTorch loop runs "
                  "(auto: cuda when PyTorch sees a GPU; compare on the device JAX uses).")
flags.DEFINE_string("worker", None, "Internal: run one measurement (jax or torch).")
flags.DEFINE_integer("num_seeds", 1, "Internal: seeds of a jax worker.")


def _batch_np():
    import numpy as np
    r = np.random.default_rng(0)
    b, o, a, d = FLAGS.batch, FLAGS.obs_dim, FLAGS.action_dim, FLAGS.latent_dim
    f = lambda *s: r.normal(size=s).astype(np.float32)
    return dict(obs=f(b, o), action=np.tanh(f(b, a)), reward=f(b), next_obs=f(b, o),
                terminated=np.zeros(b, bool), z=f(b, d))


def jax_worker(num_seeds: int) -> dict:
    import jax
    import jax.numpy as jnp
    from jaxomrl.learners.sac import SACConfig, make_sac
    from jaxomrl.types import TaskBatch, Transition
    data = _batch_np()
    batch = Transition(obs=jnp.asarray(data["obs"]), action=jnp.asarray(data["action"]),
                       reward=jnp.asarray(data["reward"]), next_obs=jnp.asarray(data["next_obs"]),
                       terminated=jnp.asarray(data["terminated"]),
                       truncated=jnp.zeros(FLAGS.batch, bool))
    z = jnp.asarray(data["z"])
    cfg = SACConfig(hidden=tuple(int(h) for h in FLAGS.hidden), head=FLAGS.head,
                    rl_weight=2.5, bc_weight=1.0, batch_size=FLAGS.batch)
    sac = make_sac(cfg, FLAGS.obs_dim, FLAGS.action_dim, FLAGS.latent_dim)
    n = FLAGS.updates

    def run(state, key):
        def body(s, k):
            s, m = sac.update(s, TaskBatch(batch, z), k)
            return s, m["actor_loss"]
        return jax.lax.scan(body, state, jax.random.split(key, n))

    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    states = jax.jit(jax.vmap(sac.init))(keys)
    if FLAGS.seed_axis == "vmap":
        fn = jax.jit(jax.vmap(run))
    else:   # seeds one after another inside the one program
        fn = jax.jit(lambda s, k: jax.lax.map(lambda a: run(*a), (s, k)))
    # XLA's own count of the floating-point operations of one update of one seed (a scan's
    # body is counted once, so the count is of the unscanned update).
    one = jax.jit(lambda s, k: sac.update(s, TaskBatch(batch, z), k)[1]["actor_loss"])
    cost = one.lower(jax.tree_util.tree_map(lambda x: x[0], states), keys[0]).compile()
    cost = cost.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops_per_update = float(cost.get("flops", float("nan")))
    for _ in range(2):  # compile + warm-up
        states, out = fn(states, keys)
        jax.block_until_ready(out)
    best = float("inf")
    for r in range(FLAGS.repeats):
        t = time.perf_counter()
        states, out = fn(states, jax.random.split(jax.random.PRNGKey(r + 1), num_seeds))
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t)
    rate = num_seeds * n / best
    return {"framework": "jax", "seeds": num_seeds, "seed_updates_per_s": rate,
            "xla_flops_per_update": flops_per_update,
            "achieved_gflop_per_s": flops_per_update * rate / 1e9,
            "peak_rss_mib": _peak_rss_mib()}


def peak_worker(size: int = 2048, repeats: int = 10) -> dict:
    """The machine's f32 matrix-multiply rate through XLA: best of ``repeats`` [size, size] @
    [size, size] products (2 size^3 FLOPs each), after a warm-up."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    mm = jax.jit(jnp.dot)
    jax.block_until_ready(mm(a, b))
    best = best_seconds(lambda: jax.block_until_ready(mm(a, b)), repeats)
    return {"matmul_size": size, "f32_matmul_gflop_per_s": 2 * size ** 3 / best / 1e9}


def torch_worker() -> dict:
    import math
    import torch
    from torch import nn
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    hidden = [int(h) for h in FLAGS.hidden]
    o, a, d = FLAGS.obs_dim, FLAGS.action_dim, FLAGS.latent_dim

    def mlp(n_in, sizes):
        layers = []
        for h in sizes:
            layers += [nn.Linear(n_in, h), nn.ReLU()]
            n_in = h
        return nn.Sequential(*layers)

    class Head(nn.Module):
        def __init__(self, n_in, out):
            super().__init__()
            self.lower = mlp(n_in, hidden)
            self.out, self.h = out, hidden[-1]
            if FLAGS.head == "hyper":
                self.hyper = mlp(d, [64])
                self.gen = nn.Linear(64, self.h * out + out)
                nn.init.zeros_(self.gen.weight)
            else:
                self.lower = mlp(n_in + d, hidden)
                self.last = nn.Linear(self.h, out)

        def forward(self, x, z):
            if FLAGS.head == "hyper":
                theta = self.gen(self.hyper(z))
                w = theta[:, : self.h * self.out].view(-1, self.h, self.out)
                b = theta[:, self.h * self.out:]
                return torch.bmm(self.lower(x).unsqueeze(1), w).squeeze(1) + b
            return self.last(self.lower(torch.cat([x, z], -1)))

    class Actor(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = Head(o, 2 * a)

        def forward(self, s, z):
            mean, raw = self.net(s, z).chunk(2, -1)
            log_std = -5.0 + 3.5 * (torch.tanh(raw) + 1.0)
            eps = torch.randn_like(mean)
            u = mean + log_std.exp() * eps
            logp = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)
                    - 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)
            return torch.tanh(u), logp, torch.tanh(mean)

    class Critics(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.ModuleList([Head(o + a, 1) for _ in range(2)])

        def forward(self, s, act, z):
            x = torch.cat([s, act], -1)
            return torch.stack([q(x, z).squeeze(-1) for q in self.q])

    device = FLAGS.torch_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    data = {k: torch.as_tensor(v, device=device) for k, v in _batch_np().items()}
    n = FLAGS.updates
    best = float("inf")
    actor, critic = Actor().to(device), Critics().to(device)
    target = Critics().to(device)
    target.load_state_dict(critic.state_dict())
    log_alpha = torch.zeros((), requires_grad=True, device=device)
    opt_a = torch.optim.Adam(actor.parameters(), 3e-4)
    opt_c = torch.optim.Adam(critic.parameters(), 3e-4)
    opt_t = torch.optim.Adam([log_alpha], 3e-4)

    def update():
        s, act, r, s2, done, z = (data[k] for k in ("obs", "action", "reward", "next_obs",
                                                    "terminated", "z"))
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2, _ = actor(s2, z)
            y = r + 0.99 * (1 - done.float()) * (target(s2, a2, z).min(0).values - alpha * logp2)
        c_loss = ((critic(s, act, z) - y) ** 2).mean(-1).sum()
        opt_c.zero_grad()
        c_loss.backward()
        opt_c.step()
        pi, logp, mode = actor(s, z)
        q = critic(s, pi, z).min(0).values
        a_loss = 2.5 * (alpha * logp - q).mean() / q.abs().mean().detach() + \
            ((mode - act) ** 2).sum(-1).mean()
        opt_a.zero_grad()
        a_loss.backward()
        opt_a.step()
        t_loss = -log_alpha * (logp.detach() - a).mean()
        opt_t.zero_grad()
        t_loss.backward()
        opt_t.step()
        with torch.no_grad():
            for p, tp in zip(critic.parameters(), target.parameters()):
                tp.mul_(1 - 5e-3).add_(5e-3 * p)

    for _ in range(10):
        update()
    for _ in range(FLAGS.repeats):
        sync()
        t = time.perf_counter()
        for _ in range(n):
            update()
        sync()
        best = min(best, time.perf_counter() - t)
    return {"framework": "torch", "seeds": 1, "seed_updates_per_s": n / best,
            "torch": torch.__version__, "torch_device": device, "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _run_child(args):
    out = subprocess.run([sys.executable, __file__, *args, *sys.argv[1:]], check=True,
                         capture_output=True, text=True)
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])


def main(argv):
    del argv
    if FLAGS.worker == "jax":
        print(json.dumps(jax_worker(FLAGS.num_seeds)))
        return
    if FLAGS.worker == "torch":
        print(json.dumps(torch_worker()))
        return
    if FLAGS.worker == "peak":
        print(json.dumps(peak_worker()))
        return
    import jax
    machine = (f"{platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__} "
               f"({jax.devices()[0].platform})")
    peak = _run_child(["--worker=peak"])
    has_torch = importlib.util.find_spec("torch") is not None    # optional: the bench extra
    results = [_run_child(["--worker=torch"])] if has_torch else []
    for s in FLAGS.seeds:
        results.append(_run_child(["--worker=jax", f"--num_seeds={s}"]))
    torch_rate = results[0]["seed_updates_per_s"] if has_torch else float("nan")
    peak_rate = peak["f32_matmul_gflop_per_s"]
    print(f"machine: {machine}; "
          + (f"torch {results[0].get('torch')} ({results[0].get('torch_device')})" if has_torch
             else "torch not installed: no PyTorch loop to compare with (pip install torch)")
          + f"; head={FLAGS.head}, hidden={','.join(FLAGS.hidden)}, batch={FLAGS.batch}, "
          f"{FLAGS.updates} updates per call")
    print(f"f32 matmul peak (XLA, {peak['matmul_size']}^2): {peak_rate:,.1f} GFLOP/s")
    print(f"{'framework':10s} {'seeds':>5s} {'seed-updates/s':>15s} {'vs torch':>9s} "
          f"{'MFLOP/update':>13s} {'GFLOP/s':>8s} {'of peak':>8s} {'peak RSS MiB':>13s}")
    for r in results:
        r["speedup_vs_torch_loop"] = (r["seed_updates_per_s"] / torch_rate if has_torch
                                      else None)
        if r["framework"] == "jax":
            r["fraction_of_matmul_peak"] = r["achieved_gflop_per_s"] / peak_rate
            flop_cols = (f"{r['xla_flops_per_update'] / 1e6:13,.1f} "
                         f"{r['achieved_gflop_per_s']:8.1f} {r['fraction_of_matmul_peak']:8.2f}")
        else:
            flop_cols = f"{'':13s} {'':8s} {'':8s}"
        vs_torch = f"{r['speedup_vs_torch_loop']:9.2f}" if has_torch else f"{'-':>9s}"
        print(f"{r['framework']:10s} {r['seeds']:5d} {r['seed_updates_per_s']:15,.0f} "
              f"{vs_torch} {flop_cols} {r['peak_rss_mib']:13,.0f}")
    print(json.dumps({"machine": machine, "peak": peak, "results": results}))


if __name__ == "__main__":
    app.run(main)
