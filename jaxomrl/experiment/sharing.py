"""Phase sharing between runs: a phase's outputs published in ``RunConfig.share_dir`` under a
digest of everything they depend on (the configs of the phases up to it, seeds, chunking, data),
taken by a later run with the same digest, and the order in which runs that share phases can
train side by side so that each shared phase trains once (``share_schedule``)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

from jaxomrl.algos.base import Algorithm
from jaxomrl.experiment import distributed
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.programs import templates
from jaxomrl.experiment.run_config import RunConfig
from jaxomrl.experiment.run_dir import run_identity
from jaxomrl.io import atomic_write_text

def phase_digests(algorithm: Algorithm, identity: Dict[str, Any]) -> List[Optional[str]]:
    """For every phase but the last: a digest of everything its output depends on (the configs
    of the phases up to it, seeds, chunking, data description), or None if a phase up to it
    declares no ``config``."""
    out, prefix = [], []
    for ph in algorithm.phases[:-1]:
        if ph.config is None or (out and out[-1] is None):
            out.append(None)
            continue
        prefix.append({"name": ph.name, "num_steps": ph.num_steps, "config": ph.config})
        blob = json.dumps({"phases": prefix, "seeds": identity["seeds"],
                           "chunk_steps": identity["chunk_steps"],
                           "description": identity["description"]}, sort_keys=True, default=str)
        out.append(hashlib.sha256(blob.encode()).hexdigest()[:24])
    return out


def is_published(where: str) -> bool:
    """Whether a shared phase's directory ``<share_dir>/<digest>`` holds published outputs: its
    ``phase.json`` is written last (:func:`publish`), so its presence means they are complete."""
    return os.path.exists(os.path.join(where, "phase.json"))


def pending_shares(algorithm: Algorithm, config: RunConfig,
                    description: Optional[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """``(share_dir, digest)`` of every phase of the run that other runs could share and that
    no run has published yet."""
    if not config.share_dir:
        return []
    identity = run_identity(algorithm, config, description)
    return [(config.share_dir, d) for d in phase_digests(algorithm, identity)
            if d and not is_published(os.path.join(config.share_dir, d))]


ShareKey = Tuple[str, str]          # (share_dir, digest) of a phase not yet published


def share_groups(runs: Dict[str, Tuple[Algorithm, RunConfig]],
                 description: Optional[Dict[str, Any]] = None,
                 published: Collection[ShareKey] = ()) -> List[List[str]]:
    """The names of ``runs`` grouped so that runs that can share a phase's outputs (the same
    ``share_dir`` and a phase with the same digest, :func:`phase_digests`, not yet published
    there nor in ``published``) are in one group. Runs that only share phases already published
    take them and are apart. Groups are in the order of their first run, each in the order
    given."""
    return groups_by_shares(_pending(runs, description), published)


def share_schedule(runs: Dict[str, Tuple[Algorithm, RunConfig]],
                   description: Optional[Dict[str, Any]] = None
                   ) -> List[Tuple[str, Optional[int]]]:
    """An order in which ``runs`` can train side by side, each shared phase trained once:
    ``[(name, after)]``, ``after`` the index of the entry whose run must have finished first
    (it publishes the phases this one takes), or None. Of each group of :func:`share_groups`
    the first run goes first; the others follow it, side by side with each other unless they
    share a further phase (then the same again among them)."""
    return schedule_by_shares(_pending(runs, description))


def _pending(runs, description) -> Dict[str, List[ShareKey]]:
    return {name: pending_shares(algorithm, config, description)
            for name, (algorithm, config) in runs.items()}


def groups_by_shares(pending: Dict[str, Sequence[ShareKey]],
                     published: Collection[ShareKey] = ()) -> List[List[str]]:
    """:func:`share_groups` of runs given by the phases each could share (``pending``:
    :func:`pending_shares` of each, in the runs' order), so that runs another process
    describes (``train.py --plan``) are grouped the same way."""
    names = list(pending)
    parent = list(range(len(names)))          # union-find over the runs

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: Dict[ShareKey, int] = {}           # share key -> first run with it
    for i, keys in enumerate(pending.values()):
        for key in map(tuple, keys):
            if key in published:
                continue
            j = first.setdefault(key, i)
            if root(j) != root(i):
                parent[root(i)] = root(j)
    groups: Dict[int, List[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(root(i), []).append(name)
    return list(groups.values())


def schedule_by_shares(pending: Dict[str, Sequence[ShareKey]]
                       ) -> List[Tuple[str, Optional[int]]]:
    """:func:`share_schedule` of runs given by the phases each could share (as
    :func:`groups_by_shares`)."""
    out: List[Tuple[str, Optional[int]]] = []

    def add(names: List[str], after: Optional[int], published: frozenset) -> None:
        for group in groups_by_shares({n: pending[n] for n in names}, published):
            out.append((group[0], after))
            if len(group) > 1:
                add(group[1:], len(out) - 1,
                    published | set(map(tuple, pending[group[0]])))

    add(list(pending), None, frozenset())
    return out


def take_shared(algorithm: Algorithm, digests, share_dir: str, data: Any, num_seeds: int,
                 put_seeds: Callable, workdir: str
                 ) -> Optional[Tuple[Any, int, List[str], str]]:
    """The published outputs of this run's longest prefix of phases another run trained
    (``share_dir``), with their logs copied into ``workdir``: ``(inputs, number of phases
    taken, their names, where they were)``, or None."""
    for p in reversed(range(len(digests))):
        outputs, where = published_outputs(algorithm, digests, share_dir, data, num_seeds, p)
        if outputs is not None:
            if distributed.is_writer():
                copy_phase_logs(algorithm.phases[:p + 1], where, workdir)
            return put_seeds(outputs), p + 1, [ph.name for ph in algorithm.phases[:p + 1]], where
    return None


def published_outputs(algorithm: Algorithm, digests: List[Optional[str]], share_dir: str,
                      data: Any, num_seeds: int, p: int) -> Tuple[Any, str]:
    """``(outputs, where)``: phase ``p``'s outputs (every seed stacked) as a run published them
    in ``share_dir`` (``digests``: :func:`phase_digests`), or ``(None, where)`` if none did."""
    where = os.path.join(share_dir, digests[p] or "")
    if not digests[p] or not is_published(where):
        return None, where
    like = templates(algorithm, data, num_seeds, p + 1)[0]
    return restore_outputs(where, like), where


def publish(algorithm: Algorithm, p: int, outputs: Any, digest: Optional[str],
             config: RunConfig) -> None:
    """Publishes phase ``p``'s outputs (and the CSV logs up to it) for other runs."""
    if not config.share_dir or digest is None:
        return
    where = os.path.join(config.share_dir, digest)
    if is_published(where):
        return
    os.makedirs(where, exist_ok=True)
    saver = Checkpointer(os.path.join(where, "outputs"))
    saver.save(0, {"outputs": outputs})      # every process saves its shards
    saver.close()
    if not distributed.is_writer():
        return
    copy_phase_logs(algorithm.phases[:p + 1], config.workdir, where)
    atomic_write_text(os.path.join(where, "phase.json"), json.dumps(
        {"phases": [ph.name for ph in algorithm.phases[:p + 1]], "from": config.workdir,
         "algorithm": algorithm.name, "seeds": list(config.seeds)}, indent=1))


def copy_phase_logs(phases, src_dir: str, dst_dir: str) -> None:
    """Copies the ``metrics_<phase>.csv`` of ``phases`` that exist in ``src_dir``."""
    for ph in phases:
        src = os.path.join(src_dir, f"metrics_{ph.name}.csv")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(dst_dir, f"metrics_{ph.name}.csv"))


def restore_outputs(where: str, like: Any) -> Any:
    loader = Checkpointer(os.path.join(where, "outputs"))
    try:
        return loader.restore(0, {"outputs": like})["outputs"]
    finally:
        loader.close()
