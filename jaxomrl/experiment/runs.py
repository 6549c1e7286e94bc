"""Finished training runs of a workdir (``experiments/train.py``) and the dataset they trained on,
for the programs that read them afterwards (``experiments/evaluate.py``,
``research/context_shift.py``, ``research/online_gap.py``)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

from jaxomrl.algos.base import Algorithm
from jaxomrl.algos.registry import ALGORITHMS, from_run_config
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data.sampler import run_data
from jaxomrl.experiment.cli import UsageError
from jaxomrl.experiment.runner import final_outputs


class RunLookupError(UsageError):
    """No finished run where one was asked for, or runs / data that do not belong together."""


def find_runs(workdir: str, specs=None) -> Dict[str, str]:
    """``{spec: run directory}`` of finished runs (``results.json`` present)."""
    if not os.path.isdir(workdir):
        raise RunLookupError(f"--workdir {workdir!r} does not exist")
    if specs:
        dirs = {s: os.path.join(workdir, s.replace("/", "-")) for s in specs}
    else:
        dirs = {}
        for d in sorted(os.listdir(workdir)):
            path = os.path.join(workdir, d, "run.json")
            if os.path.exists(path):
                with open(path) as f:
                    dirs[json.load(f)["algorithm"]] = os.path.join(workdir, d)
    runs = {}
    for spec, d in dirs.items():
        if not os.path.exists(os.path.join(d, "results.json")):
            raise RunLookupError(f"{spec}: no finished run in {d} (train it with "
                                  "experiments/train.py first)")
        runs[spec] = d
    if not runs:
        raise RunLookupError(f"no runs in {workdir}")
    if not specs:  # the registry's order: each algorithm, then its ablations
        order = list(ALGORITHMS)
        runs = dict(sorted(runs.items(), key=lambda kv: (
            order.index(kv[0].split("/")[0]) if kv[0].split("/")[0] in order else len(order),
            kv[0])))
    return runs


def load_data(runs: Dict[str, str], data_flag=None):
    """The dataset (and ood dataset) the runs trained on, checked against their checksums."""
    identities = {}
    for spec, d in runs.items():
        with open(os.path.join(d, "run.json")) as f:
            identities[spec] = json.load(f)
    descriptions = {s: i["description"] for s, i in identities.items()}
    digests = {d["dataset_sha256"] for d in descriptions.values()}
    if len(digests) != 1:
        raise RunLookupError("the runs trained on different datasets; evaluate them separately")
    path = data_flag or next(iter(descriptions.values()))["dataset"]
    try:
        ds, ood = dataset_lib.load_collection(path)
    except FileNotFoundError as e:
        raise RunLookupError(f"{e}; pass the dataset's location with --data") from e
    if dataset_lib.digest(ds) not in digests:
        raise RunLookupError(f"{path} is not the dataset the runs trained on")
    return ds, ood, identities


def split_inputs(workdir: str, specs, split: str):
    """What a diagnosis of one task split of finished runs reads: ``(runs, ds, identities, data,
    eval_data)`` (``find_runs``, ``load_data``, ``data.sampler.run_data``); refuses a split the
    dataset has no tasks of."""
    runs = find_runs(workdir, specs)
    ds, ood, identities = load_data(runs)
    data, eval_data = run_data(ds, ood)
    if split not in eval_data["tasks"]:
        raise RunLookupError(f"--split={split}: the dataset has no such tasks")
    return runs, ds, identities, data, eval_data


def has_encoder(identity: Dict[str, Any]) -> bool:
    """Whether a run (its ``run.json`` ``identity``) infers its task with an encoder: an
    offline meta-RL config's ``encoder``, or ReDA's meta-policy's (``meta.encoder``)."""
    config = identity["config"]
    return (config.get("encoder") or (config.get("meta") or {}).get("encoder")) is not None


def restore(spec: str, run_dir: str, identity: Dict[str, Any], family, ds, data,
            **meta_overrides) -> Tuple[Algorithm, Any]:
    """The algorithm of a finished run in ``family`` (from its ``run.json`` ``identity``,
    ``MetaConfig`` fields replaced by ``meta_overrides``; ``ds`` its dataset) and its trained
    outputs, every seed stacked."""
    algorithm = from_run_config(spec, identity["config"], family, int(ds.is_train.sum()),
                                **meta_overrides)
    return algorithm, final_outputs(algorithm, data, run_dir, len(identity["seeds"]))


def phase_outputs(algorithm: Algorithm, identity: Dict[str, Any], workdir: str, data,
                  phase: str) -> Any:
    """The published outputs of a finished run's phase ``phase`` (e.g. ReDA's ``models``), every
    seed stacked, from the workdir's ``shared_phases`` (train.py publishes every phase but the
    last there)."""
    from jaxomrl.experiment.sharing import phase_digests, published_outputs
    names = [ph.name for ph in algorithm.phases]
    if phase not in names[:-1]:
        raise RunLookupError(f"{algorithm.name}: phase {phase!r} is not one of its published "
                             f"phases {names[:-1]}")
    outputs, _ = published_outputs(algorithm, phase_digests(algorithm, identity),
                                   os.path.join(workdir, "shared_phases"), data,
                                   len(identity["seeds"]), names.index(phase))
    if outputs is None:
        raise RunLookupError(f"{algorithm.name}: no published {phase!r} outputs in {workdir}/"
                             f"shared_phases (trained with --share_phases=false?)")
    return outputs
