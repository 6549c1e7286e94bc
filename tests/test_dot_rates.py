"""benchmarks/dot_rates.py: the products it times are the ones it names."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import dot_rates  # noqa: E402


@pytest.mark.parametrize("layout", ["nn", "nt", "tn"])
def test_each_layout_is_the_same_product_of_differently_stored_operands(layout):
    b, m, k, n = 2, 5, 3, 4
    xs, ws = dot_rates.operand_shapes(b, m, k, n, layout)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), xs))
    w = np.asarray(jax.random.normal(jax.random.PRNGKey(1), ws))
    x_logical = x.transpose(0, 2, 1) if layout == "tn" else x      # [B, M, K]
    w_logical = w.transpose(0, 2, 1) if layout == "nt" else w      # [B, K, N]
    assert x_logical.shape == (b, m, k) and w_logical.shape == (b, k, n)
    np.testing.assert_allclose(dot_rates.product(x, w, layout), x_logical @ w_logical,
                               rtol=1e-5, atol=1e-5)


def test_the_script_times_every_shape_in_every_configuration_and_rejects_a_bad_layout():
    script = os.path.join(ROOT, "benchmarks", "dot_rates.py")
    common = ["--loops=2", "--repeats=1", "--torch=false"]
    proc = subprocess.run([sys.executable, script, "--shapes=1x8x8x8,2x4x8x16:tn", *common,
                           "--xla_flags=;--xla_cpu_experimental_ynn_fusion_type=-individual_dot"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["columns"]) == 2
    for column in out["columns"].values():
        assert len(column["gflop_per_s"]) == 2 and min(column["gflop_per_s"]) > 0
    bad = subprocess.run([sys.executable, script, "--shapes=1x8x8x8:tt", *common],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "layout" in bad.stderr
