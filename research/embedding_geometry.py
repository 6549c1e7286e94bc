"""Why an encoder's d(phi) is what it is: where held-out behaviour's contexts sit, and how
scattered the embeddings are.

    python research/embedding_geometry.py --workdir=runs/walker_big --split=test

ReDA's d(phi) (eq. 8) divides mean squared distances between all pairs of embeddings, so it
mixes two things: whether task i's held-out-checkpoint contexts (``ood.npz``) lie nearer task
i's training-data contexts than the other tasks' (the centroids), and how scattered both
sources' embeddings are (the spreads, which pull d(phi) towards 1 however well the centroids
are placed). For every run of the workdir with an encoder and every seed, ``--contexts``
contexts per task and source are embedded and split by
``jaxomrl.eval.metrics.representation_metric_parts``: d(phi), its centroid term alone, the
spreads (relative to the distance between tasks' centroids) and the nearest-centroid accuracy
of single held-out contexts. Prints mean +- std over seeds (each seed's values averaged over
the split's tasks) and writes them as JSON to ``--out``.
"""
from __future__ import annotations

import json

import jax
import numpy as np
from absl import flags

from jaxomrl.eval.metrics import representation_metric_parts
from jaxomrl.experiment import cli, runs
from jaxomrl.eval.stats import seed_summary
from jaxomrl.io import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "train.py workdir holding the runs.")
flags.DEFINE_list("algo", [], "Specs to read (default: every run of the workdir).")
flags.DEFINE_enum("split", "test", ["train", "test"], "Task split.")
flags.DEFINE_integer("contexts", 64, "Contexts per task and source.", lower_bound=2)
flags.DEFINE_string("out", None, "JSON output path (default: <workdir>/embedding_geometry.json).")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    found, ds, identities, data, eval_data = runs.split_inputs(FLAGS.workdir, FLAGS.algo,
                                                                FLAGS.split)
    if FLAGS.split not in eval_data["ood"]:
        raise cli.UsageError("the dataset has no ood.npz (held-out checkpoints) for this split")
    family = ds.make_family()
    out = {"split": FLAGS.split, "contexts": FLAGS.contexts, "algorithms": {}}
    print(f"{FLAGS.split} tasks, {FLAGS.contexts} contexts per task and source; mean +- std over "
          "seeds of the tasks' mean")
    print(f"{'algorithm':<24}{'d(phi)':>14}{'centroid term':>16}{'spread train':>15}"
          f"{'spread ood':>14}{'accuracy':>14}")
    for spec, run_dir in found.items():
        algorithm, outputs = runs.restore(spec, run_dir, identities[spec], family, ds, data)
        if algorithm.embed is None:
            continue
        embed = jax.jit(algorithm.embed, static_argnums=3)
        per_seed = []
        for s in range(len(identities[spec]["seeds"])):
            params = jax.tree_util.tree_map(lambda x: x[s], outputs)
            k1, k2 = jax.random.split(jax.random.PRNGKey(s))
            z_data = embed(params, k1, eval_data["data"][FLAGS.split], FLAGS.contexts)
            z_ood = embed(params, k2, eval_data["ood"][FLAGS.split], FLAGS.contexts)
            parts = representation_metric_parts(z_data, z_ood)
            per_seed.append({k: np.asarray(v).tolist() for k, v in parts.items()})
        summary = {name: seed_summary([np.mean(p[name]) for p in per_seed])
                   for name in per_seed[0]}
        out["algorithms"][spec] = {"per_seed_task": per_seed, "summary": summary}
        cell = lambda n: f"{summary[n]['mean']:.3f} ± {summary[n]['std']:.3f}"
        print(f"{spec:<24}{cell('dphi'):>14}{cell('centroid_dphi'):>16}"
              f"{cell('spread_train'):>15}{cell('spread_test'):>14}{cell('accuracy'):>14}")
    path = atomic_write_text(FLAGS.out or f"{FLAGS.workdir}/embedding_geometry.json",
                             json.dumps(out, indent=1))
    print(json.dumps({"out": path}))


if __name__ == "__main__":
    cli.run(main)
