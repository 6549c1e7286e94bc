"""Datasets of other offline meta-RL codebases into jaxomrl's format (``jaxomrl.data.dataset``).

Each reader turns one peer layout into :class:`SourceTask` s (a task's episodes, with the
behaviour checkpoint of each, and the task parameters where the layout holds them);
:func:`build` checks them against the task family and writes the versioned datasets
(``train.npz`` and, for held-out checkpoints, ``ood.npz``). What a layout does not hold is
named, and input that could be read more than one way is refused rather than guessed.

==============  ===============================================================================
format          layout (``src``)
==============  ===============================================================================
``borel``       BOReL / CORRO: one directory per task named ``..._goal_<g1>_<g2>...`` holding
                ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminals`` ``.npy`` arrays,
                either flat ``[n, dim]`` (``trajectory_len`` contiguous steps per trajectory) or
                ``[trajectory_len, rollouts, dim]`` (BOReL's ``batch_to_trajectories``).
``corro``       the same layout (CORRO's ``offline_utils`` is BOReL's).
``focal``       FOCAL / CSRO: ``goal_idx<i>/trj_eval[sample]<k>_step<j>.npy``, one episode per
                file (a pickled ``[steps, 4]`` object array of ``[obs, action, reward,
                next_obs]``; ``j`` the behaviour checkpoint's training step), and optionally
                ``normalizer.npz`` (``abs_max``, with which CSRO's environment divides
                observations; whether the files hold raw or divided ones is not recorded).
``reda``        ReDA: ``sac_<Env>_<grav|dofd>_<factor>/data_<k>.npy``, one ``np.save``-d dict per
                checkpoint ``k`` with D4RL keys ``observations``, ``actions``,
                ``next_observations``, ``rewards``, ``terminals`` (``[n, 1]``).
``prompt_dt``   Prompt-DT: ``<task>-<idx>-<mode>.pkl`` lists of trajectory dicts
                (``observations``, ``actions``, ``rewards``, ``next_observations``,
                ``terminals`` or ``dones``); ``<task>-<idx>-prompt-<mode>.pkl`` the prompts.
==============  ===============================================================================

Episode boundaries: a file or a trajectory ends an episode; inside a stream, a ``terminals`` /
``dones`` flag does, and so does reaching ``horizon`` steps. A flagged end at exactly
``horizon`` steps is the time limit (``truncated``; ReDA's collector flags its time-limit ends
as terminal, an off-by-one in its ``real_done``); a flagged end before it is a termination
(``terminated``); an unflagged end (end of a trajectory or file) is ``truncated``. Every
episode is then checked to be one trajectory: each step's ``next_obs`` must equal the next
step's ``obs`` (a stream whose boundaries the flags do not give is refused, not split by
guess).

Task parameters come from the layout where it holds them (``borel`` / ``corro``: the goal in
the directory name, for ``cheetah_vel`` and ``point_robot_sparse``; ``reda``: the factor in the
directory name; ``prompt_dt``: ``config_<task>_task<idx>.pkl`` under ``task_config_dir`` for
``cheetah_vel``), else from the user (``task_params``: name -> one value per task, in the order
:func:`read` lists the tasks). Observations: the peers' Gym / PEARL environments differ from
jaxomrl's MJX families in places (``TaskFamily.from_gym_obs``: Ant's 111 vs 27 entries, PEARL
Half-Cheetah's 20 vs 17, Hopper / Walker2d root height); ``obs_convention="gym"`` maps them, and
data that look like Gym's without it are refused.

Pickle files (``focal``, ``prompt_dt``) can run code when read: import only files you trust.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from jaxomrl import __version__
from jaxomrl.data.dataset import (TRANSITION_FIELDS, DatasetError, MultiTaskDataset,
                                  _checkpoint_returns, save)

FORMATS = ("borel", "corro", "focal", "reda", "prompt_dt")


class ImportRefused(DatasetError):
    """Input an importer cannot turn into a dataset without guessing (the message says why)."""


@dataclasses.dataclass
class Episode:
    """One episode: ``obs [L, obs_dim]``, ``action [L, action_dim]``, ``reward [L]``,
    ``next_obs [L, obs_dim]``; how it ended; the behaviour checkpoint that produced it."""
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    checkpoint: int
    where: str = ""

    def __len__(self) -> int:
        return int(self.reward.shape[0])


@dataclasses.dataclass
class SourceTask:
    """A task's episodes as read (``label``: where, e.g. its directory), and its parameters
    (name -> value) where the layout holds them, else None."""
    label: str
    episodes: List[Episode]
    params: Optional[Dict[str, Any]] = None


# ----------------------------------------------------------------------------- helpers

def _fail(msg: str):
    raise ImportRefused(msg)


def _as2d(x: np.ndarray, name: str, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        _fail(f"{where}: {name} must be [steps, dim], got shape {list(x.shape)}")
    return x


def _flat(x: np.ndarray, name: str, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        _fail(f"{where}: {name} must be [steps] or [steps, 1], got shape {list(x.shape)}")
    return x


def split_stream(obs, action, reward, next_obs, flags, horizon: int, checkpoint: int,
                 where: str) -> List[Episode]:
    """A stream of consecutive steps into episodes at ``flags`` (terminal / done) and at every
    ``horizon`` steps (module docstring for how each end is classified)."""
    n = int(np.asarray(reward).shape[0])
    arrays = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs,
              "terminals": flags}
    for k, v in arrays.items():
        if np.asarray(v).shape[0] != n:
            _fail(f"{where}: {k} has {np.asarray(v).shape[0]} steps, rewards {n}")
    flags = np.asarray(flags).astype(bool)
    out, start = [], 0
    for t in range(n):
        length = t + 1 - start
        if flags[t] or length == horizon or t == n - 1:
            at_limit = length == horizon
            if at_limit and not flags[t] and t < n - 1 and np.allclose(
                    next_obs[t], obs[t + 1], rtol=1e-6, atol=1e-6):
                _fail(f"{where}: the episode from step {start} runs on past the horizon of "
                      f"{horizon} steps (step {t}'s next_obs is step {t + 1}'s obs); pass the "
                      f"data's episode length as family_config horizon")
            terminated = bool(flags[t]) and not at_limit
            out.append(Episode(obs[start:t + 1], action[start:t + 1], reward[start:t + 1],
                               next_obs[start:t + 1], terminated, not terminated, checkpoint,
                               f"{where} steps {start}..{t}"))
            start = t + 1
    return out


def _episode(obs, action, reward, next_obs, terminal_flag, horizon, checkpoint, where):
    """One whole episode (a file or a trajectory): its last step ends it."""
    n = int(np.asarray(reward).shape[0])
    if n == 0:
        _fail(f"{where}: empty episode")
    if n > horizon:
        _fail(f"{where}: an episode of {n} steps is longer than the horizon {horizon} (pass the "
              f"peers' episode length as --horizon / family_config)")
    terminated = bool(terminal_flag) and n < horizon
    return Episode(obs, action, reward, next_obs, terminated, not terminated, checkpoint, where)


def _goal_from_name(name: str) -> List[float]:
    m = re.search(r"goal_(-?[0-9.eE+-]+(?:_-?[0-9.eE+-]+)*)$", name)
    if not m:
        _fail(f"{name}: a BOReL / CORRO task directory must end in goal_<g1>[_<g2>...]")
    try:
        return [float(v) for v in m.group(1).split("_")]
    except ValueError:
        _fail(f"{name}: cannot read the goal from the directory name")


def goal_to_params(family, goal: Sequence[float], where: str) -> Optional[Dict[str, float]]:
    """A BOReL / CORRO / Prompt-DT goal as this family's task parameters, or None where the
    family's tasks are not goals (their parameters must then be given)."""
    goal = [float(g) for g in goal]
    if family.name == "cheetah_vel":
        if len(goal) != 1:
            _fail(f"{where}: cheetah_vel's goal is one target velocity, got {goal}")
        return {"target_velocity": goal[0]}
    if family.name == "point_robot_sparse":
        if len(goal) != 2:
            _fail(f"{where}: point_robot_sparse's goal is a 2-D position, got {goal}")
        r = math.hypot(*goal)
        if abs(r - family.goal_distance) > 1e-2:
            _fail(f"{where}: goal {goal} is {r:.3f} from the start, this family's goals "
                  f"{family.goal_distance} (family_config goal_distance)")
        return {"goal_angle": math.atan2(goal[1], goal[0])}
    return None


# ----------------------------------------------------------------------------- readers

def read_borel(src: str, family, trajectory_len: Optional[int] = None,
               **_) -> List[SourceTask]:
    """BOReL / CORRO: one directory per task (module docstring). ``trajectory_len``: steps of
    one trajectory in the flat layout (BOReL: the episode length times rollouts per task)."""
    dirs = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    if not dirs:
        _fail(f"{src}: no task directories")
    names = ("obs", "actions", "rewards", "next_obs", "terminals")
    tasks = []
    for d in dirs:
        path = os.path.join(src, d)
        missing = [n for n in names if not os.path.exists(os.path.join(path, n + ".npy"))]
        if missing:
            _fail(f"{path}: missing {', '.join(m + '.npy' for m in missing)}")
        a = {n: np.load(os.path.join(path, n + ".npy"), allow_pickle=False) for n in names}
        shapes = {n: list(v.shape) for n, v in a.items()}
        if a["obs"].ndim == 3:
            steps, rollouts = a["obs"].shape[:2]
            if any(v.shape[:2] != (steps, rollouts) for v in a.values()):
                _fail(f"{path}: [trajectory_len, rollouts, dim] arrays disagree: {shapes}")
            if trajectory_len is not None and trajectory_len != steps:
                _fail(f"{path}: trajectories of {steps} steps, --trajectory_len={trajectory_len}")
            trajs = [{n: v[:, r] for n, v in a.items()} for r in range(rollouts)]
        elif a["obs"].ndim == 2:
            n = a["obs"].shape[0]
            if trajectory_len is None:
                _fail(f"{path}: flat [steps, dim] arrays need --trajectory_len (BOReL's "
                      f"max episode steps x rollouts per task)")
            if any(v.shape[0] != n for v in a.values()):
                _fail(f"{path}: arrays disagree on the number of steps: {shapes}")
            if n % trajectory_len:
                _fail(f"{path}: {n} steps are not whole trajectories of {trajectory_len}")
            trajs = [{k: v[s:s + trajectory_len] for k, v in a.items()}
                     for s in range(0, n, trajectory_len)]
        else:
            _fail(f"{path}: obs.npy must be [steps, dim] or [trajectory_len, rollouts, dim], "
                  f"got {shapes['obs']}")
        episodes = []
        for r, tr in enumerate(trajs):
            where = f"{d} trajectory {r}"
            eps = split_stream(_as2d(tr["obs"], "obs", where), _as2d(tr["actions"], "actions",
                               where), _flat(tr["rewards"], "rewards", where),
                               _as2d(tr["next_obs"], "next_obs", where),
                               _flat(tr["terminals"], "terminals", where), family.horizon, 0,
                               where)
            episodes += eps
        tasks.append(SourceTask(d, episodes, goal_to_params(family, _goal_from_name(d), d)))
    return tasks


def _load_pickle(path: str):
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as e:
        _fail(f"{path}: unreadable pickle ({type(e).__name__}: {e})")


def read_focal(src: str, family, normalizer: Optional[str] = None, **_) -> List[SourceTask]:
    """FOCAL / CSRO: ``goal_idx<i>/trj_eval[sample]<k>_step<j>.npy`` (module docstring).
    ``normalizer``: with a ``normalizer.npz`` in ``src``, ``"raw"`` (the files hold raw
    observations) or ``"divided"`` (they hold ``obs / (abs_max + 1e-8)``: multiplied back)."""
    scale = None
    if os.path.exists(os.path.join(src, "normalizer.npz")):
        if normalizer not in ("raw", "divided"):
            _fail(f"{src} holds normalizer.npz: whether the trajectories hold raw or divided "
                  f"observations is not recorded; pass --normalizer=raw or --normalizer=divided")
        if normalizer == "divided":
            with np.load(os.path.join(src, "normalizer.npz")) as z:
                scale = np.asarray(z["abs_max"], np.float64) + 1e-8
    elif normalizer is not None:
        _fail(f"--normalizer={normalizer} but {src} holds no normalizer.npz")
    dirs = [d for d in os.listdir(src) if re.fullmatch(r"goal_idx\d+", d)
            and os.path.isdir(os.path.join(src, d))]
    if not dirs:
        _fail(f"{src}: no goal_idx<i> directories")
    dirs.sort(key=lambda d: int(d[len("goal_idx"):]))
    idx = [int(d[len("goal_idx"):]) for d in dirs]
    if idx != list(range(len(idx))):
        _fail(f"{src}: goal_idx directories {idx} are not 0..{len(idx) - 1}")
    tasks = []
    for d in dirs:
        files = []
        for f in os.listdir(os.path.join(src, d)):
            m = re.fullmatch(r"trj_eval(sample)?(\d+)_step(\d+)\.npy", f)
            if m:
                files.append((int(m.group(3)), m.group(1) or "", int(m.group(2)), f))
        if not files:
            _fail(f"{src}/{d}: no trj_eval[sample]<k>_step<j>.npy files")
        kinds = {k for _, k, _, _ in files}
        if len(kinds) > 1:
            _fail(f"{src}/{d}: holds both trj_eval (deterministic) and trj_evalsample "
                  f"(sampled) episodes; keep the ones to import (FOCAL / CSRO train on one kind)")
        episodes = []
        for step, _, k, f in sorted(files):
            where = f"{d}/{f}"
            arr = np.load(os.path.join(src, d, f), allow_pickle=True)
            if arr.ndim != 2 or arr.shape[1] != 4:
                _fail(f"{where}: expected [steps, 4] rows of [obs, action, reward, next_obs], "
                      f"got shape {list(arr.shape)}")
            try:
                obs = np.stack([np.asarray(x, np.float64) for x in arr[:, 0]])
                act = np.stack([np.asarray(x, np.float64).reshape(-1) for x in arr[:, 1]])
                rew = np.asarray([float(np.asarray(x).reshape(())) for x in arr[:, 2]])
                nxt = np.stack([np.asarray(x, np.float64) for x in arr[:, 3]])
            except (ValueError, TypeError) as e:
                _fail(f"{where}: rows are not [obs, action, reward, next_obs] ({e})")
            if scale is not None:
                if scale.shape != obs.shape[1:]:
                    _fail(f"{src}/normalizer.npz: abs_max has shape {list(scale.shape)}, "
                          f"observations {list(obs.shape[1:])}")
                obs, nxt = obs * scale, nxt * scale
            # CSRO marks the last step of every file terminal, time limit or not: a file
            # shorter than the horizon ended by termination.
            episodes.append(_episode(obs, act, rew, nxt, True, family.horizon, step, where))
        tasks.append(SourceTask(d, episodes, None))
    return tasks


def read_reda(src: str, family, **_) -> List[SourceTask]:
    """ReDA: ``sac_<Env>_<grav|dofd>_<factor>/data_<k>.npy`` (module docstring)."""
    kind = {"gravity_scale": "grav", "dof_damping_scale": "dofd"}
    shapes = family.param_shapes()
    names = [p for p in shapes if p in kind]
    if len(shapes) != 1 or not names:
        _fail(f"{family.name}: ReDA's layout holds gravity or dof-damping factors; this family's "
              f"tasks are {sorted(shapes)}")
    param = names[0]
    robot = getattr(family, "robot_name", "").replace("_", "")
    tasks = []
    entries = []
    for d in os.listdir(src):
        m = re.fullmatch(r"sac_(.+)_(grav|dofd)_(-?[0-9.eE+-]+)", d)
        if not m or not os.path.isdir(os.path.join(src, d)):
            continue
        env, typ, factor = m.group(1), m.group(2), float(m.group(3))
        if typ != kind[param]:
            _fail(f"{src}/{d}: {typ} data, but {family.name}'s tasks vary {param}")
        if robot and not env.lower().replace("_", "").startswith(robot):
            _fail(f"{src}/{d}: data of {env}, family {family.name} simulates {robot}")
        entries.append((factor, d))
    if not entries:
        _fail(f"{src}: no sac_<Env>_<grav|dofd>_<factor> directories")
    factors = [f for f, _ in entries]
    if len(set(factors)) != len(factors):
        _fail(f"{src}: more than one directory per factor: {sorted(d for _, d in entries)}")
    for factor, d in sorted(entries):
        files = []
        for f in os.listdir(os.path.join(src, d)):
            m = re.fullmatch(r"data_(\d+)\.npy", f)
            if m:
                files.append((int(m.group(1)), f))
        if not files:
            _fail(f"{src}/{d}: no data_<k>.npy files")
        episodes = []
        for k, f in sorted(files):
            where = f"{d}/{f}"
            try:
                data = np.load(os.path.join(src, d, f), allow_pickle=True).item()
            except ValueError as e:
                _fail(f"{where}: not an np.save-d dict ({e})")
            if not isinstance(data, dict):
                _fail(f"{where}: not an np.save-d dict")
            keys = ("observations", "actions", "next_observations", "rewards", "terminals")
            missing = [key for key in keys if key not in data]
            if missing:
                _fail(f"{where}: lacks {', '.join(missing)}")
            episodes += split_stream(
                _as2d(data["observations"], "observations", where),
                _as2d(data["actions"], "actions", where),
                _flat(data["rewards"], "rewards", where),
                _as2d(data["next_observations"], "next_observations", where),
                _flat(data["terminals"], "terminals", where), family.horizon, k, where)
        tasks.append(SourceTask(d, episodes, {param: factor}))
    return tasks


def read_prompt_dt(src: str, family, mode: Optional[str] = None,
                   task_config_dir: Optional[str] = None, **_) -> List[SourceTask]:
    """Prompt-DT: ``<task>-<idx>-<mode>.pkl`` (module docstring). ``mode``: which dataset
    (e.g. ``expert``); its prompt files ``<task>-<idx>-prompt-<mode>.pkl`` become checkpoint 1
    (for ``ood_checkpoints=[1]``), the dataset checkpoint 0."""
    if not mode:
        found = sorted({m.group(2) for f in os.listdir(src)
                        for m in [re.fullmatch(r"(.+-\d+)-(?!prompt-)(.+)\.pkl", f)] if m})
        _fail(f"{src}: pass --mode (datasets here: {', '.join(found) or 'none'})")
    entries = []
    for f in os.listdir(src):
        m = re.fullmatch(rf"(.+)-(\d+)-{re.escape(mode)}\.pkl", f)
        if m and not m.group(1).endswith("-prompt"):
            entries.append((m.group(1), int(m.group(2)), f))
    if not entries:
        _fail(f"{src}: no <task>-<idx>-{mode}.pkl files")
    if len({e[0] for e in entries}) != 1:
        _fail(f"{src}: files of several task sets: {sorted({e[0] for e in entries})}")
    tasks = []
    for name, idx, f in sorted(entries, key=lambda e: e[1]):
        groups = [(0, f)]
        prompt = f"{name}-{idx}-prompt-{mode}.pkl"
        if os.path.exists(os.path.join(src, prompt)):
            groups.append((1, prompt))
        episodes = []
        for ckpt, g in groups:
            trajs = _load_pickle(os.path.join(src, g))
            if not isinstance(trajs, (list, tuple)):
                _fail(f"{g}: expected a list of trajectory dicts, got {type(trajs).__name__}")
            for r, tr in enumerate(trajs):
                where = f"{g} trajectory {r}"
                if not isinstance(tr, dict):
                    _fail(f"{where}: not a dict")
                need = ["observations", "actions", "rewards", "next_observations"]
                missing = [k for k in need if k not in tr]
                flag_key = "terminals" if "terminals" in tr else "dones" if "dones" in tr else None
                if missing or flag_key is None:
                    _fail(f"{where}: lacks {', '.join(missing + ([] if flag_key else ['terminals or dones']))}")
                flags = _flat(tr[flag_key], flag_key, where).astype(bool)
                if flags[:-1].any():
                    _fail(f"{where}: {flag_key} set before the trajectory's last step")
                episodes.append(_episode(_as2d(tr["observations"], "observations", where),
                                         _as2d(tr["actions"], "actions", where),
                                         _flat(tr["rewards"], "rewards", where),
                                         _as2d(tr["next_observations"], "next_observations", where),
                                         flags[-1], family.horizon, ckpt, where))
        params = None
        if task_config_dir is not None:
            cfg = os.path.join(task_config_dir, f"config_{name}_task{idx}.pkl")
            if not os.path.exists(cfg):
                _fail(f"{cfg}: no task config for {name}-{idx}")
            info = _load_pickle(cfg)
            if not (isinstance(info, (list, tuple)) and len(info) == 1 and isinstance(info[0], dict)):
                _fail(f"{cfg}: expected a list of one task dict, got {info!r}")
            goal = info[0].get("velocity", info[0].get("goal"))
            if goal is None:
                _fail(f"{cfg}: the task dict has neither 'velocity' nor 'goal': {info[0]}")
            params = goal_to_params(family, np.atleast_1d(goal), cfg)
        tasks.append(SourceTask(f"{name}-{idx}", episodes, params))
    return tasks


READERS = {"borel": read_borel, "corro": read_borel, "focal": read_focal, "reda": read_reda,
           "prompt_dt": read_prompt_dt}


def read(fmt: str, src: str, family, **options) -> List[SourceTask]:
    """The tasks of ``src`` in layout ``fmt`` (``FORMATS``), in the order their parameters are
    given (``task_params``)."""
    if fmt not in READERS:
        _fail(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if not os.path.isdir(src):
        _fail(f"{src}: not a directory")
    return READERS[fmt](src, family, **options)


# ----------------------------------------------------------------------------- building

def _check_obs(family, tasks: List[SourceTask], convention: Optional[str]) -> None:
    """Maps observations to the family's convention (``gym``) or refuses a mismatch."""
    d = {int(ep.obs.shape[1]) for t in tasks for ep in t.episodes}
    a = {int(ep.action.shape[1]) for t in tasks for ep in t.episodes}
    if len(d) != 1 or len(a) != 1:
        _fail(f"tasks disagree on observation / action sizes: obs {sorted(d)}, actions {sorted(a)}")
    d, a = d.pop(), a.pop()
    if a != family.action_dim:
        _fail(f"actions have {a} entries, {family.name}'s {family.action_dim}: data of another "
              f"environment")
    if convention == "gym":
        try:
            for t in tasks:
                for ep in t.episodes:
                    ep.obs, ep.next_obs = family.from_gym_obs(ep.obs), family.from_gym_obs(ep.next_obs)
        except ValueError as e:
            _fail(str(e))
        return
    if convention not in (None, "jaxomrl"):
        _fail(f"obs_convention must be 'jaxomrl' or 'gym', got {convention!r}")
    if d != family.obs_dim:
        hint = ""
        try:
            family.from_gym_obs(np.zeros((1, d), np.float32))
            hint = "; they match Gym's convention: pass --obs_convention=gym"
        except ValueError as e:
            hint = f" ({e})"
        _fail(f"observations have {d} entries, {family.name}'s {family.obs_dim}{hint}")
    offset = getattr(family, "z_offset", 0.0)
    if getattr(family, "robot_name", None) in ("hopper", "walker2d") and convention is None:
        first = np.asarray([ep.obs[0, 0] for t in tasks for ep in t.episodes], np.float64)
        if abs(np.median(first) - offset) < abs(np.median(first)):
            _fail(f"episodes start at observation[0] = {np.median(first):.3f} (median), the torso "
                  f"height as Gym reports it; {family.name} observes the displacement from "
                  f"{offset:.2f} m: pass --obs_convention=gym (or =jaxomrl to keep them)")


def _check_continuity(tasks: List[SourceTask]) -> None:
    for t in tasks:
        for ep in t.episodes:
            if len(ep) > 1:
                bad = ~np.all(np.isclose(ep.next_obs[:-1], ep.obs[1:], rtol=1e-6, atol=1e-6),
                              axis=1)
                if bad.any():
                    s = int(np.argmax(bad))
                    _fail(f"{ep.where}: step {s}'s next_obs is not step {s + 1}'s obs, so the "
                          f"episode boundaries are not where the terminal flags and the horizon "
                          f"put them (another episode length? pass --horizon)")


def _task_params(family, tasks: List[SourceTask], given: Optional[Dict[str, Sequence]]):
    shapes = family.param_shapes()
    if given:
        unknown = set(given) - set(shapes)
        if unknown:
            _fail(f"task_params {sorted(unknown)} are not {family.name}'s ({sorted(shapes)})")
        for k, v in given.items():
            if len(v) != len(tasks):
                _fail(f"task_params {k!r} has {len(v)} values for {len(tasks)} tasks "
                      f"({', '.join(t.label for t in tasks)})")
    params = {}
    for k, shape in shapes.items():
        if given and k in given:
            vals = [np.asarray(v, np.float32) for v in given[k]]
            recovered = [t.params for t in tasks if t.params is not None]
            if recovered and not np.allclose([np.asarray(r[k]) for r in recovered], vals,
                                             atol=1e-4):
                _fail(f"task_params {k!r} disagree with the layout's {k} "
                      f"({[float(np.asarray(r[k])) for r in recovered]})")
        else:
            missing = [t.label for t in tasks if t.params is None]
            if missing:
                _fail(f"the {family.name} task parameter {k!r} is not in this layout; give it per "
                      f"task (--task_params, JSON {{\"{k}\": [...]}}) in this order: "
                      f"{', '.join(t.label for t in tasks)}")
            vals = [np.asarray(t.params[k], np.float32) for t in tasks]
        for t, v in zip(tasks, vals):
            if v.shape != shape:
                _fail(f"{t.label}: task parameter {k!r} has shape {list(v.shape)}, {family.name}'s "
                      f"{list(shape)}")
        params[k] = np.stack(vals)
    return params


def fixed_split_test_tasks(family, params: Dict[str, np.ndarray]) -> List[int]:
    """Indices of the tasks whose parameters are one of the unseen test tasks of a family with
    a fixed split (e.g. ReDA's gravity factors x0.8, x1.2); none for other families."""
    fixed = getattr(getattr(family, "perturbation", None), "fixed_split", lambda: None)()
    if fixed is None:
        return []
    test = fixed[1]
    n = len(next(iter(params.values())))
    out = []
    for i in range(n):
        for j in range(len(next(iter(test.values())))):
            if all(np.allclose(params[k][i], np.asarray(test[k][j], np.float32), atol=1e-5)
                   for k in params):
                out.append(i)
                break
    return out


def stack_episodes(episodes: List[List[Episode]], n: Optional[int] = None
                   ) -> Dict[str, np.ndarray]:
    """The format's transition arrays ``[T, N, ...]`` (``dataset.TRANSITION_FIELDS``) of each
    task's episodes in order: episode ids and timesteps from 0, an episode's end flags on its
    last step. ``n``: every task's stream cut to its first ``n`` transitions."""
    per_task = []
    for eps in episodes:
        cols = {k: [] for k in TRANSITION_FIELDS}
        for e, ep in enumerate(eps):
            length = len(ep)
            end = np.arange(length) == length - 1
            for k in ("obs", "action", "reward", "next_obs"):
                cols[k].append(getattr(ep, k))
            cols["terminated"].append(end & ep.terminated)
            cols["truncated"].append(end & ep.truncated)
            cols["episode"].append(np.full(length, e))
            cols["timestep"].append(np.arange(length))
            cols["checkpoint"].append(np.full(length, ep.checkpoint))
        per_task.append({k: np.concatenate(v)[:n] for k, v in cols.items()})
    return {k: np.stack([p[k] for p in per_task]).astype(dtype)
            for k, (dtype, _) in TRANSITION_FIELDS.items()}


def _assemble(family, episodes: List[List[Episode]], params, is_test, split: str, provenance,
              family_config, n: Optional[int]) -> MultiTaskDataset:
    tr = stack_episodes(episodes, n)
    ids = sorted({int(c) for c in np.unique(tr["checkpoint"])})
    done = tr["terminated"] | tr["truncated"]
    built = family.make_tasks(params)
    meta = {
        "family": family.name, "family_config": dict(family_config or {}), "physics": "imported",
        "obs_dim": family.obs_dim, "action_dim": family.action_dim, "attr_dim": family.attr_dim,
        "action_low": float(family.action_low), "action_high": float(family.action_high),
        "num_tasks": len(episodes), "transitions_per_task": int(tr["reward"].shape[1]),
        "checkpoints": ids, "checkpoint_env_steps": 0, "warmup_env_steps": 0,
        "checkpoint_returns": _checkpoint_returns(tr["reward"], done, tr["episode"],
                                                  tr["checkpoint"], ids),
        "split": split, "provenance": dict(provenance, jaxomrl_version=__version__),
    }
    return MultiTaskDataset(transitions=tr, attributes=np.asarray(built.attributes, np.float32),
                            is_test=np.asarray(is_test, bool),
                            task_params={k: np.asarray(v, np.float32) for k, v in params.items()},
                            meta=meta)


def build(family, tasks: List[SourceTask], *, task_params: Optional[Dict[str, Sequence]] = None,
          test_tasks: Optional[Sequence[int]] = None, ood_checkpoints: Sequence[int] = (),
          obs_convention: Optional[str] = None, truncate: bool = False,
          provenance: Optional[Dict[str, Any]] = None,
          family_config: Optional[Dict[str, Any]] = None
          ) -> Tuple[MultiTaskDataset, Optional[MultiTaskDataset]]:
    """``(train, ood)`` datasets of ``tasks`` (``ood`` None without ``ood_checkpoints``).

    ``test_tasks``: indices of the family's unseen test tasks (``is_test``; the layouts do not
    say); None: those of a family with a fixed split (the gravity / damping task sets: ReDA's
    unseen factors) whose parameters match, else none. ``ood_checkpoints``: the behaviour checkpoints whose episodes form ``ood`` (ReDA's
    off-policy contexts). Every task must hold the same number of transitions in each split
    (the format is rectangular); ``truncate`` cuts every task to the smallest instead of
    refusing (the last episode of a task may then end without a done flag).
    """
    if not tasks:
        _fail("no tasks to import")
    for t in tasks:
        if not t.episodes:
            _fail(f"{t.label}: no episodes")
    _check_obs(family, tasks, obs_convention)
    _check_continuity(tasks)
    lo, hi = family.action_low, family.action_high
    for t in tasks:
        for ep in t.episodes:
            if np.any(ep.action < lo - 1e-5) or np.any(ep.action > hi + 1e-5):
                _fail(f"{ep.where}: actions outside {family.name}'s box [{lo}, {hi}] (data of "
                      f"an unnormalised action space?)")
            for k in ("obs", "next_obs", "action", "reward"):
                if not np.all(np.isfinite(getattr(ep, k))):
                    _fail(f"{ep.where}: non-finite {k}")
    params = _task_params(family, tasks, task_params)
    if test_tasks is None:
        test_tasks = fixed_split_test_tasks(family, params)
    bad = [i for i in test_tasks if not 0 <= i < len(tasks)]
    if bad:
        _fail(f"test_tasks {bad} outside 0..{len(tasks) - 1}")
    is_test = np.zeros(len(tasks), bool)
    is_test[list(test_tasks)] = True
    ood_set = {int(c) for c in ood_checkpoints}
    present = {ep.checkpoint for t in tasks for ep in t.episodes}
    if ood_set - present:
        _fail(f"ood_checkpoints {sorted(ood_set - present)} not in the data (checkpoints "
              f"{sorted(present)})")
    provenance = dict(provenance or {}, task_labels=[t.label for t in tasks])
    out = []
    for split, keep in (("train", lambda c: c not in ood_set), ("ood", lambda c: c in ood_set)):
        if split == "ood" and not ood_set:
            out.append(None)
            continue
        eps = [[ep for ep in t.episodes if keep(ep.checkpoint)] for t in tasks]
        empty = [t.label for t, e in zip(tasks, eps) if not e]
        if empty:
            _fail(f"{split} split: no episodes for {', '.join(empty)} (every task needs data "
                  f"in both splits)")
        sizes = [sum(len(e) for e in te) for te in eps]
        n = None
        if len(set(sizes)) > 1:
            if not truncate:
                _fail(f"{split} split: tasks hold different numbers of transitions ("
                      + ", ".join(f"{t.label}: {s}" for t, s in zip(tasks, sizes))
                      + "); jaxomrl's format holds the same number per task: pass --truncate to "
                        "cut every task to the smallest")
            n = min(sizes)
        out.append(_assemble(family, eps, params, is_test, split, provenance, family_config, n))
    return out[0], out[1]


def write_collection(out_dir: str, train: MultiTaskDataset,
                     ood: Optional[MultiTaskDataset] = None, overwrite: bool = False) -> str:
    """Writes ``train.npz`` (+ ``ood.npz``) into a fresh directory made complete elsewhere and
    renamed into place, so ``out_dir`` never holds half an import."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not overwrite:
            _fail(f"{out_dir} exists; choose another --out or pass --overwrite")
        if not os.path.exists(os.path.join(out_dir, "train.npz")):
            _fail(f"{out_dir} exists and is not a dataset directory; not replacing it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".import-", dir=parent)
    try:
        save(train, os.path.join(tmp, "train.npz"))
        if ood is not None:
            save(ood, os.path.join(tmp, "ood.npz"))
        with open(os.path.join(tmp, "import.json"), "w") as f:
            json.dump(train.meta["provenance"], f, indent=1, sort_keys=True)
        if os.path.exists(out_dir):
            old = out_dir + ".replaced"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def import_dataset(fmt: str, src: str, family_name: str, out_dir: Optional[str] = None, *,
                   family_config: Optional[Dict[str, Any]] = None,
                   task_params: Optional[Dict[str, Sequence]] = None,
                   test_tasks: Optional[Sequence[int]] = None,
                   ood_checkpoints: Sequence[int] = (),
                   obs_convention: Optional[str] = None, truncate: bool = False,
                   overwrite: bool = False, **read_options):
    """Reads ``src`` (layout ``fmt``), builds ``(train, ood)`` for family ``family_name``
    (configured by ``family_config``, e.g. ``{"horizon": 200}``) and, with ``out_dir``, writes
    them as a collection (``data.load_collection`` / ``train.py --data`` read it). Returns
    ``(train, ood)``. ``read_options``: the reader's (``trajectory_len``, ``normalizer``,
    ``mode``, ``task_config_dir``)."""
    from jaxomrl import envs
    family = envs.make(family_name, **(family_config or {}))
    tasks = read(fmt, src, family, **read_options)
    provenance = {"imported_from": fmt, "source": os.path.basename(os.path.abspath(src)),
                  "options": {k: v for k, v in read_options.items() if v is not None},
                  "obs_convention": obs_convention or "jaxomrl", "truncate": bool(truncate),
                  "params_from_layout": all(t.params is not None for t in tasks)
                  and not task_params}
    train, ood = build(family, tasks, task_params=task_params, test_tasks=test_tasks,
                       ood_checkpoints=ood_checkpoints, obs_convention=obs_convention,
                       truncate=truncate, provenance=provenance, family_config=family_config)
    if out_dir is not None:
        write_collection(out_dir, train, ood, overwrite=overwrite)
    return train, ood
