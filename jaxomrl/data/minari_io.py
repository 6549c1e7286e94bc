"""jaxomrl datasets to and from Minari (Farama's offline-RL dataset standard, HDF5 episodes).

Minari has no multi-task convention; jaxomrl's (format ``jaxomrl.minari-multitask`` version 1):

* one Minari dataset per task and split, id ``<namespace>/<family>/<split>-task<i:03d>-v0``
  (e.g. ``jaxomrl-cheetah/cheetah_vel/train-task007-v0``), written with Minari's own
  ``create_dataset_from_buffers`` in its ``hdf5`` format;
* every step of a task is in exactly one Minari episode, in the order of the jaxomrl stream:
  ``observations`` ``[L + 1, obs_dim]`` are the episode's ``obs`` and its last ``next_obs``;
  ``terminations`` / ``truncations`` its ``terminated`` / ``truncated``; ``infos["checkpoint"]``
  ``[L + 1]`` the behaviour checkpoint (the first entry is the reset's). An episode cut by the
  end of its stream has neither flag set at its end;
* the dataset's metadata (``metadata.json``) holds key ``jaxomrl``: ``format``, ``version``,
  ``task_index``, ``num_tasks``, ``is_test``, ``attributes`` (the task's vector p_i),
  ``task_params`` (name -> value, nested lists) and ``dataset_meta`` (the jaxomrl dataset's
  metadata without checksums: family, its config, checkpoints and their returns, split,
  provenance).

:func:`export` / :func:`import_` round-trip a jaxomrl dataset exactly (every array and the
metadata). A Minari dataset without the ``jaxomrl`` key (written by anyone with Minari's API)
imports through :func:`import_foreign`: one dataset per task, the family and the task parameters
given, and the checks of ``jaxomrl.data.imports`` (episodes one trajectory each, sizes, the
family's observation and action sizes and box).

Minari finds datasets under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``); the
functions here take that root as ``root`` and set it only for the duration of the call.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from jaxomrl.data import imports
from jaxomrl.data import dataset as dataset_lib
from jaxomrl.data.dataset import DatasetError, MultiTaskDataset, validate

FORMAT = "jaxomrl.minari-multitask"
VERSION = 1


@contextlib.contextmanager
def _root(root: Optional[str]) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = os.path.abspath(root)
    try:
        with warnings.catch_warnings():   # Minari's advice on optional fields (author, env spec)
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")
            yield
    finally:
        if root is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old


def dataset_id(namespace: str, family: str, split: str, task: int) -> str:
    return f"{namespace}/{family}/{split}-task{task:03d}-v0"


def _episode_slices(episode: np.ndarray) -> List[slice]:
    cuts = np.flatnonzero(np.diff(episode)) + 1
    bounds = np.concatenate([[0], cuts, [episode.shape[0]]])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def export(ds: MultiTaskDataset, namespace: str, root: Optional[str] = None) -> List[str]:
    """Writes every task of ``ds`` as a Minari dataset (module docstring); returns their ids.
    Refuses (``DatasetError``) ids that exist and a stream whose ``next_obs`` is not the next
    step's ``obs`` inside an episode (Minari stores one observation per step)."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    meta = {k: v for k, v in ds.meta.items() if k != "sha256"}
    meta.update(format=dataset_lib.FORMAT, version=dataset_lib.VERSION)
    validate(MultiTaskDataset(ds.transitions, ds.attributes, ds.is_test, ds.task_params, meta),
             "export", check_sha=False)
    tr = ds.transitions
    obs_space = gym.spaces.Box(-np.inf, np.inf, (ds.meta["obs_dim"],), np.float32)
    act_space = gym.spaces.Box(ds.meta["action_low"], ds.meta["action_high"],
                               (ds.meta["action_dim"],), np.float32)
    ids = []
    with _root(root):
        existing = set(minari.list_local_datasets())
        wanted = [dataset_id(namespace, ds.family, meta["split"], t) for t in range(ds.num_tasks)]
        clash = [i for i in wanted if i in existing]
        if clash:
            raise DatasetError(f"Minari datasets {clash[:3]}{'...' if len(clash) > 3 else ''} "
                               f"exist; choose another namespace or delete them")
        written = []
        try:
            for t, did in enumerate(wanted):
                buffers = []
                for e, sl in enumerate(_episode_slices(tr["episode"][t])):
                    obs, nxt = tr["obs"][t, sl], tr["next_obs"][t, sl]
                    if not np.array_equal(nxt[:-1], obs[1:]):
                        raise DatasetError(f"task {t} episode {e}: next_obs is not the next "
                                           f"step's obs; Minari cannot hold it")
                    ckpt = tr["checkpoint"][t, sl]
                    buffers.append(EpisodeBuffer(
                        id=e, observations=np.concatenate([obs, nxt[-1:]]),
                        actions=tr["action"][t, sl], rewards=tr["reward"][t, sl],
                        terminations=tr["terminated"][t, sl], truncations=tr["truncated"][t, sl],
                        infos={"checkpoint": np.concatenate([ckpt[:1], ckpt])}))
                d = minari.create_dataset_from_buffers(
                    did, buffers, observation_space=obs_space, action_space=act_space,
                    algorithm_name=str(meta.get("provenance", {}).get("collector", "jaxomrl")),
                    description=f"jaxomrl {ds.family} task {t} of {ds.num_tasks} ({meta['split']})",
                    data_format="hdf5")
                written.append(did)
                d.storage.update_metadata({"jaxomrl": {
                    "format": FORMAT, "version": VERSION, "task_index": t,
                    "num_tasks": ds.num_tasks, "is_test": bool(ds.is_test[t]),
                    "attributes": ds.attributes[t].tolist(),
                    "task_params": {k: v[t].tolist() for k, v in ds.task_params.items()},
                    "dataset_meta": meta}})
                ids.append(did)
        except BaseException:
            for did in written:
                minari.delete_dataset(did)
            raise
    return ids


def _read(did: str) -> Tuple[Dict[str, Any], List[imports.Episode]]:
    """A Minari dataset's metadata and its episodes as ``imports.Episode`` s, with the end flags
    as recorded (an episode may end with neither) and the checkpoint of ``infos["checkpoint"]``
    (0 without). Refuses observations that are not flat vectors, flags before an episode's last
    step and an episode of several checkpoints."""
    import minari
    d = minari.load_dataset(did)
    episodes = []
    for e, ep in enumerate(d.iterate_episodes()):
        o = np.asarray(ep.observations)
        if o.ndim != 2:
            raise imports.ImportRefused(f"{did}: observations must be flat Box vectors, got "
                                        f"shape {list(o.shape)}")
        term, trunc = np.asarray(ep.terminations, bool), np.asarray(ep.truncations, bool)
        if (term[:-1] | trunc[:-1]).any():
            raise imports.ImportRefused(f"{did} episode {e}: ends before its last step")
        ckpt = 0
        if ep.infos and "checkpoint" in ep.infos:
            c = np.unique(np.asarray(ep.infos["checkpoint"])[1:])
            if c.size != 1:
                raise imports.ImportRefused(f"{did} episode {e}: several checkpoints")
            ckpt = int(c[0])
        act = np.asarray(ep.actions)
        episodes.append(imports.Episode(o[:-1], act.reshape(act.shape[0], -1),
                                        np.asarray(ep.rewards), o[1:], bool(term[-1]),
                                        bool(trunc[-1]), ckpt, f"{did} episode {e}"))
    return d.storage.metadata, episodes


def _find(namespace: str, family: Optional[str], split: str) -> List[str]:
    import minari
    prefix = f"{namespace}/{family}/" if family else f"{namespace}/"
    ids = sorted(i for i in minari.list_local_datasets() if i.startswith(prefix)
                 and os.path.basename(i).startswith(f"{split}-task"))
    if not ids:
        raise DatasetError(f"no Minari datasets {prefix}{split}-task*-v0 under "
                           f"{os.environ.get('MINARI_DATASETS_PATH', '~/.minari/datasets')}")
    return ids


def import_(namespace: str, family: str, split: str = "train",
            root: Optional[str] = None) -> MultiTaskDataset:
    """The jaxomrl dataset :func:`export` wrote under ``namespace`` (exactly)."""
    with _root(root):
        ids = _find(namespace, family, split)
        tasks = {}
        for did in ids:
            meta, episodes = _read(did)
            info = meta.get("jaxomrl")
            if not isinstance(info, dict) or info.get("format") != FORMAT:
                raise DatasetError(f"{did}: no jaxomrl multi-task metadata; import it with "
                                   f"import_foreign (--format=minari with --task_params)")
            if info["version"] != VERSION:
                raise DatasetError(f"{did}: jaxomrl-minari version {info['version']}, this "
                                   f"jaxomrl reads {VERSION}")
            tasks[int(info["task_index"])] = (info, episodes)
    n = {info["num_tasks"] for info, _ in tasks.values()}
    if len(n) != 1 or sorted(tasks) != list(range(n.pop())):
        raise DatasetError(f"{namespace}/{family}: tasks {sorted(tasks)} of "
                           f"{[i['num_tasks'] for i, _ in tasks.values()]} (incomplete or mixed)")
    metas = [tasks[t][0]["dataset_meta"] for t in sorted(tasks)]
    if any(m != metas[0] for m in metas):
        raise DatasetError(f"{namespace}/{family}: the tasks' dataset metadata disagree (mixed "
                           f"exports)")
    sizes = {sum(len(ep) for ep in tasks[t][1]) for t in tasks}
    if len(sizes) != 1:
        raise DatasetError(f"{namespace}/{family}: tasks hold {sorted(sizes)} transitions")
    infos = [tasks[t][0] for t in sorted(tasks)]
    ds = MultiTaskDataset(
        transitions=imports.stack_episodes([tasks[t][1] for t in sorted(tasks)]),
        attributes=np.asarray([i["attributes"] for i in infos], np.float32),
        is_test=np.asarray([i["is_test"] for i in infos], bool),
        task_params={k: np.asarray([i["task_params"][k] for i in infos], np.float32)
                     for k in infos[0]["task_params"]},
        meta=dict(metas[0]))
    validate(ds, f"{namespace}/{family}", check_sha=False)
    return ds


def import_foreign(dataset_ids: Sequence[str], family, *, root: Optional[str] = None,
                   **build_options) -> Tuple[MultiTaskDataset, Optional[MultiTaskDataset]]:
    """``(train, ood)`` from Minari datasets written by anyone, one per task in the order given
    (``build_options``: ``imports.build``'s -- ``task_params``, ``test_tasks``,
    ``ood_checkpoints`` (with ``infos["checkpoint"]``), ``obs_convention``, ``truncate``)."""
    tasks = []
    with _root(root):
        for did in dataset_ids:
            _, eps = _read(did)
            for ep in eps:
                ep.truncated = ep.truncated or not ep.terminated   # an unflagged end: cut
                if len(ep) > family.horizon:
                    raise imports.ImportRefused(
                        f"{ep.where}: {len(ep)} steps, longer than the horizon "
                        f"{family.horizon} (pass the data's episode length as family_config)")
            tasks.append(imports.SourceTask(did, eps, None))
    return imports.build(family, tasks, provenance={"imported_from": "minari",
                                                    "datasets": list(dataset_ids)},
                         **build_options)


def export_collection(path: str, namespace: str, root: Optional[str] = None) -> List[str]:
    """Exports a collection's ``train.npz`` and ``ood.npz`` (where present); returns the ids."""
    train, ood = dataset_lib.load_collection(path)
    return export(train, namespace, root) + (export(ood, namespace, root) if ood is not None
                                             else [])


def import_collection(namespace: str, family: str, out_dir: Optional[str] = None,
                      root: Optional[str] = None, overwrite: bool = False):
    """``(train, ood)`` of an exported collection (``ood`` None where none was exported),
    written as a jaxomrl collection to ``out_dir`` if given."""
    train = import_(namespace, family, "train", root)
    with _root(root):
        import minari
        has_ood = any(i.startswith(f"{namespace}/{family}/ood-task")
                      for i in minari.list_local_datasets())
    ood = import_(namespace, family, "ood", root) if has_ood else None
    if out_dir is not None:
        imports.write_collection(out_dir, train, ood, overwrite=overwrite)
    return train, ood
