"""Exports a jaxomrl collection to Minari, one Minari dataset per task and split.

    python experiments/export_data.py --data=data/cheetah_vel --out=~/.minari/datasets \
        --namespace=jaxomrl-cheetah

Writes ``<namespace>/<family>/<split>-task<i>-v0`` under ``--out`` (a Minari datasets root;
``MINARI_DATASETS_PATH`` points Minari at it). ``jaxomrl.data.minari_io`` documents the
multi-task convention; ``import_data.py --format=minari --namespace=...`` reads them back
exactly.
"""
from __future__ import annotations

import json

from absl import flags

from jaxomrl.data import minari_io
from jaxomrl.experiment import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "A collection directory (train.npz, ood.npz) or train.npz.")
flags.DEFINE_string("out", None, "Minari datasets root to write into.")
flags.DEFINE_string("namespace", None, "Minari namespace of the exported datasets.")
for _name in ("data", "out", "namespace"):
    flags.mark_flag_as_required(_name)


def main(argv):
    del argv
    ids = minari_io.export_collection(FLAGS.data, FLAGS.namespace, FLAGS.out)
    print(f"wrote {len(ids)} Minari datasets under {FLAGS.out}")
    print(json.dumps({"datasets": ids}))


if __name__ == "__main__":
    cli.run(main, io_context=lambda: FLAGS.out)
