"""Statistics of results over seeds (and tasks), as every table of the project reports them.

* :func:`summarise`: a method's scores ``[seeds]`` or ``[seeds, tasks]`` -> the mean over seeds of
  the task mean, the sample standard deviation over seeds (ddof = 1), n, and a 95 % confidence
  interval of the mean from a stratified bootstrap: the seeds resampled with replacement within
  each task, independently across tasks, percentile interval -- rliable's interval estimates
  (Agarwal et al., 2021, "Deep reinforcement learning at the edge of the statistical
  precipice"), computed by ``scipy.stats.bootstrap`` with one sample per task (unpaired, so each
  task is resampled on its own) and a vectorised statistic; and the interquartile mean (IQM: the
  mean of the middle half of every (seed, task) score, ``scipy.stats.trim_mean`` at 25 %, as
  rliable's) with its interval from the same resamples.
* :func:`compare`: whether one method is above (or below) another: the difference of their
  seed means and a Welch t-interval of it (scipy); the two are *not distinguishable* when the
  interval holds 0. With a handful of seeds a percentile bootstrap of the difference is too
  narrow (three seeds have ten distinct resamples), the t-interval is not.
* :func:`cell`: ``mean ± std [low, high]``, the form of every table cell.
* :func:`task_scores`, :func:`scalar_metrics`, :func:`seed_summary`: an evaluation's arrays as
  per-(seed, task) scores, their per-seed means, and the ``results.json`` entry of one of them.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Dict, Sequence

import numpy as np

LEVEL = 0.95          # every interval of the project's tables
BOOTSTRAP_REPS = 10_000
BOOTSTRAP_SEED = 0    # the same scores give the same interval


@dataclasses.dataclass(frozen=True)
class Summary:
    """A method's scores over seeds: ``mean ± std`` (sample), ``n`` seeds, ``[low, high]`` the
    bootstrap interval of the mean; ``iqm`` over (seed, task) pairs with ``[iqm_low, iqm_high]``.
    Bounds are nan for fewer than two seeds or non-finite scores."""
    mean: float
    std: float
    n: int
    low: float
    high: float
    iqm: float
    iqm_low: float
    iqm_high: float

    def to_json(self) -> Dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def _mean_and_iqm(*tasks: np.ndarray, axis: int = -1) -> np.ndarray:
    """``[mean, IQM]`` over every score of ``tasks`` (one ``[..., seeds]`` array per task;
    ``scipy.stats.bootstrap`` passes ``axis=-1``, the seeds' axis)."""
    from scipy import stats as scipy_stats
    assert axis == -1
    scores = np.stack(tasks, axis=-2)
    flat = scores.reshape(scores.shape[:-2] + (-1,))
    return np.stack([flat.mean(axis=-1), scipy_stats.trim_mean(flat, 0.25, axis=-1)])


def _bootstrap(scores: np.ndarray, level: float, reps: int) -> np.ndarray:
    """``[[mean_low, iqm_low], [mean_high, iqm_high]]`` of ``scores [seeds, tasks]``: the
    percentile interval of the stratified bootstrap (module doc)."""
    from scipy import stats as scipy_stats
    result = scipy_stats.bootstrap(
        tuple(scores.T), _mean_and_iqm, n_resamples=reps, vectorized=True, paired=False,
        confidence_level=level, method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return np.stack([result.confidence_interval.low, result.confidence_interval.high])


def summarise(scores, level: float = LEVEL, reps: int = BOOTSTRAP_REPS) -> Summary:
    """:class:`Summary` of ``scores``: ``[seeds]`` (one score per seed) or ``[seeds, tasks]``."""
    x = np.asarray(scores, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"scores must be [seeds] or [seeds, tasks], got shape {x.shape}")
    per_seed = x.mean(axis=1)
    n = int(per_seed.size)
    mean = float(per_seed.mean())
    iqm = float(_mean_and_iqm(*x.T)[1])
    if n < 2 or not np.all(np.isfinite(x)):
        nan = float("nan")
        return Summary(mean, nan if n < 2 else float(per_seed.std(ddof=1)), n, nan, nan,
                       iqm, nan, nan)
    bounds = _bootstrap(x, level, reps)
    return Summary(mean, float(per_seed.std(ddof=1)), n, float(bounds[0, 0]),
                   float(bounds[1, 0]), iqm, float(bounds[0, 1]), float(bounds[1, 1]))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``better`` against ``worse``: ``difference`` of the seed means (signed so that positive
    means the claimed order), its Welch ``[low, high]`` interval, whether it excludes 0."""
    difference: float
    low: float
    high: float
    held: bool
    distinguishable: bool

    @property
    def verdict(self) -> str:
        return ("held" if self.held else "reversed") + \
            ("" if self.distinguishable else ", not distinguishable")

    def to_json(self) -> Dict[str, Any]:
        finite = lambda v: v if math.isfinite(v) else None
        return {"held": self.held, "distinguishable": self.distinguishable,
                "difference": self.difference, "interval": [finite(self.low), finite(self.high)],
                "verdict": self.verdict}


def compare(better: Sequence[float], worse: Sequence[float], lower_is_better: bool = False,
            level: float = LEVEL) -> Comparison:
    """Whether ``better``'s seed mean is above ``worse``'s (below with ``lower_is_better``),
    and whether a Welch t-interval of the difference at ``level`` excludes 0. Each argument:
    one score per seed."""
    from scipy import stats as scipy_stats
    a, b = np.asarray(better, np.float64), np.asarray(worse, np.float64)
    sign = -1.0 if lower_is_better else 1.0
    diff = float(a.mean() - b.mean()) * sign
    low = high = float("nan")
    if a.size >= 2 and b.size >= 2 and (a.std() > 0 or b.std() > 0):
        with warnings.catch_warnings():   # near-equal scores: scipy's note on precision
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
        low, high = sorted(float(v) * sign for v in ci)
    elif a.size >= 2 and b.size >= 2:           # no spread at all: the difference is exact
        low = high = diff
    distinct = bool(math.isfinite(low) and (low > 0 or high < 0))
    return Comparison(diff, low, high, diff > 0, distinct)


def cell(s: Summary, digits: int = 2) -> str:
    """``mean ± std [low, high]`` (the interval left out where it is undefined)."""
    text = f"{s.mean:.{digits}f}"
    if math.isfinite(s.std):
        text += f" ± {s.std:.{digits}f}"
    if math.isfinite(s.low):
        text += f" [{s.low:.{digits}f}, {s.high:.{digits}f}]"
    return text


def iqm_cell(s: Summary, digits: int = 2) -> str:
    """``iqm [low, high]``."""
    text = f"{s.iqm:.{digits}f}"
    if math.isfinite(s.iqm_low):
        text += f" [{s.iqm_low:.{digits}f}, {s.iqm_high:.{digits}f}]"
    return text


CAPTION = "mean ± sample std over n seeds [95 % stratified-bootstrap interval of the mean]"


def seed_summary(values: np.ndarray) -> Dict[str, Any]:
    """Mean, sample std (ddof = 1; null for one seed), n and the per-seed values of ``[seeds]``
    values (``results.json`` entries; the tables' intervals: ``jaxomrl.eval.stats``)."""
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else None, "n": int(values.size),
            "per_seed": [float(v) for v in values]}


def task_scores(evaluation: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """``{column: [seeds, tasks]}`` float64 scores of an evaluation: for ``name [seeds, tasks,
    episodes]`` every episode (``name/ep1`` ...); other arrays over their non-seed axes."""
    out = {}
    for name, v in evaluation.items():
        v = np.asarray(v, np.float64)
        if v.ndim == 3:
            for e in range(v.shape[2]):
                out[f"{name}/ep{e + 1}"] = v[:, :, e]
        else:
            out[name] = v.reshape(v.shape[0], -1)
    return out


def scalar_metrics(evaluation: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``[seeds]`` scalars from an evaluation: the mean over tasks of :func:`task_scores`.
    Means in float64: the same returns give the same scalars whether they come from the device
    (float32) or from a ``results.json`` (``evaluate.py --from_training``)."""
    return {k: v.mean(axis=1) for k, v in task_scores(evaluation).items()}
