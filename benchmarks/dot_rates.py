"""Matrix-product rates of XLA's CPU kernels against PyTorch's (oneDNN / MKL) on the shapes that
set the pace of this project's updates.

The meta-policy update at HalfCheetah sizes (``learner_throughput.py``) spends ~3/4 of its op time
in batched ``[seeds x critics, 256, 256] x [.., 256, 256]`` products and the GRU-VAE encoder step
(``encoder_throughput.py``) in its decoding grid's ``[53,760, 32] x [32, 32]`` forward and
``[32, 53,760] x [53,760, 32]`` weight gradient (per seed). This times each shape alone:
``jit`` of a ``fori_loop`` of ``--loops`` products whose input and output pass through
``lax.optimization_barrier`` (so XLA neither hoists nor trims the product), best of
``--repeats``; PyTorch: ``torch.bmm`` in a Python loop on all cores. Each XLA configuration runs
in its own process with its ``XLA_FLAGS`` (``--xla_flags``, ``;``-separated sets; the empty set
is XLA's default).

    python benchmarks/dot_rates.py
    python benchmarks/dot_rates.py --shapes=5x256x256x256,3x53760x32x32

Prints GFLOP/s per shape and configuration and, on its last line, one JSON object.
"""
from __future__ import annotations

import json
import os
import platform

from absl import app, flags
from worker import best_seconds, measure

FLAGS = flags.FLAGS
flags.DEFINE_list("shapes", ["5x256x256x256", "10x256x256x256", "10x256x256x256:nt",
                             "10x256x256x256:tn", "10x256x28x256", "1x1280x256x256",
                             "3x53760x32x32", "3x32x53760x32"],
                  "BxMxKxN[:layout]: a batch of B [M, K] x [K, N] products; layout nn (default), "
                  "nt (the right operand stored [B, N, K]: an input gradient dy W^T) or tn (the "
                  "left one stored [B, K, M]: a weight gradient x^T dy).")
flags.DEFINE_string("xla_flags", ";--xla_cpu_experimental_ynn_fusion_type=-individual_dot",
                    "';'-separated XLA_FLAGS sets, each timed in its own process.")
flags.DEFINE_integer("loops", 100, "Products per timed call.")
flags.DEFINE_integer("repeats", 5, "Timed calls (best is reported).")
flags.DEFINE_bool("torch", True, "Also time torch.bmm (skipped where torch is not installed).")
flags.DEFINE_string("worker", None, "Internal: 'xla' or 'torch'.")


_EINSUM = {"nn": "bmk,bkn->bmn", "nt": "bmk,bnk->bmn", "tn": "bkm,bkn->bmn"}


def _shapes():
    """``[(b, m, k, n, layout)]`` of ``--shapes``."""
    out = []
    for spec in FLAGS.shapes:
        dims, _, layout = spec.partition(":")
        if (layout or "nn") not in _EINSUM:
            raise ValueError(f"layout of {spec!r}: one of {sorted(_EINSUM)}")
        out.append((*(int(d) for d in dims.split("x")), layout or "nn"))
    return out


def operand_shapes(b, m, k, n, layout):
    """Stored shapes of the two operands of ``[B, M, K] x [B, K, N]`` in ``layout``."""
    return ((b, k, m) if layout == "tn" else (b, m, k)), ((b, n, k) if layout == "nt" else (b, k, n))


def product(x, w, layout: str):
    """The ``[B, M, N]`` product of operands stored as ``operand_shapes`` gives."""
    import jax.numpy as jnp
    return jnp.einsum(_EINSUM[layout], x, w)


def xla_worker() -> dict:
    import jax
    import jax.numpy as jnp
    rates = []
    for b, m, k, n, layout in _shapes():
        xs, ws = operand_shapes(b, m, k, n, layout)
        x = jax.random.normal(jax.random.PRNGKey(0), xs, jnp.float32)
        w = jax.random.normal(jax.random.PRNGKey(1), ws, jnp.float32)

        def body(_, carry):
            x, acc = carry
            x = jax.lax.optimization_barrier(x)
            y = jax.lax.optimization_barrier(product(x, w, layout))
            return x, acc + y[0, 0, 0]

        loop = jax.jit(lambda x: jax.lax.fori_loop(0, FLAGS.loops, body, (x, 0.0))[1])
        for _ in range(2):
            jax.block_until_ready(loop(x))
        t = best_seconds(lambda: jax.block_until_ready(loop(x)), FLAGS.repeats)
        rates.append(2 * b * m * k * n * FLAGS.loops / t / 1e9)
    return {"gflop_per_s": rates, "jax": jax.__version__}


def torch_worker() -> dict:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    rates = []
    for b, m, k, n, layout in _shapes():
        xs, ws = operand_shapes(b, m, k, n, layout)
        x, w = torch.randn(*xs), torch.randn(*ws)
        x = x.transpose(1, 2) if layout == "tn" else x     # strided views, as autograd's
        w = w.transpose(1, 2) if layout == "nt" else w

        def loop():
            for _ in range(FLAGS.loops):
                torch.bmm(x, w)
        loop()
        rates.append(2 * b * m * k * n * FLAGS.loops / best_seconds(loop, FLAGS.repeats) / 1e9)
    return {"gflop_per_s": rates, "torch": torch.__version__}


def main(argv):
    del argv
    if FLAGS.worker == "xla":
        print(json.dumps(xla_worker()))
        return
    if FLAGS.worker == "torch":
        print(json.dumps(torch_worker()))
        return
    _shapes()   # a bad --shapes fails here, with its message, not in a worker
    common = [f"--shapes={','.join(FLAGS.shapes)}", f"--loops={FLAGS.loops}",
              f"--repeats={FLAGS.repeats}"]
    columns = {}
    for xla_flags in FLAGS.xla_flags.split(";"):
        columns[f"XLA {xla_flags or '(default)'}"] = measure(
            __file__, ["--worker=xla", *common], env={"XLA_FLAGS": xla_flags.strip()})
    if FLAGS.torch:
        try:
            import torch  # noqa: F401
            columns["torch.bmm"] = measure(__file__, ["--worker=torch", *common])
        except ImportError:
            pass
    print(f"GFLOP/s of [B, M, K] x [B, K, N] products ({platform.machine()}, "
          f"{os.cpu_count()} cpus)")
    for name in columns:
        print(f"  {chr(ord('a') + list(columns).index(name))}: {name}")
    print(f"{'B x M x K x N':>18s} " + " ".join(f"{chr(ord('a') + i):>8s}"
                                            for i in range(len(columns))))
    for i, shape in enumerate(FLAGS.shapes):
        print(f"{shape:>18s} " + " ".join(f"{c['gflop_per_s'][i]:8.0f}"
                                          for c in columns.values()))
    print(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(),
                      "shapes": FLAGS.shapes, "columns": columns}))


if __name__ == "__main__":
    app.run(main)
