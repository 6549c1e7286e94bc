"""Tables and figures in the papers' layout, from evaluation arrays and run logs (host-side).

* ``markdown_table``: algorithms as rows, metrics as columns, ``mean ± sample std [95 %
  interval]`` over seeds (:mod:`jaxomrl.eval.stats`), the best mean of each column in bold (ties
  at the printed precision all bold), ``≈`` where a row is not distinguishable from the best.
* ``read_curve``: a metric's per-seed values over training steps from a run's ``metrics_*.csv``.
* ``plot_curves`` (learning curves, mean ± sample std band), ``plot_adaptation`` (return per
  adaptation episode), ``plot_tsne`` (t-SNE of task embeddings coloured by a task parameter, one
  panel per algorithm), ``plot_bars`` (ablation bars with std error bars),
  ``plot_task_curves`` (a collection's per-task learning curves), ``plot_traces`` (a per-step
  quantity of online rollouts against time, one panel per task, e.g. forward velocity against
  the target). PNG files.
"""
from __future__ import annotations

import csv
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from jaxomrl.eval import stats


def mean_std(values) -> Tuple[float, float]:
    """Mean and sample std (ddof = 1; 0 for one value) of ``values``."""
    v = np.asarray(values, np.float64).reshape(-1)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _std(values: np.ndarray, axis: int) -> np.ndarray:
    """Sample std along ``axis`` (0 where there is one value): the bands of the figures."""
    return values.std(axis=axis, ddof=1) if values.shape[axis] > 1 else np.zeros_like(
        values.mean(axis=axis))


NOT_DISTINGUISHABLE = "≈"


def _seed_means(scores: np.ndarray) -> np.ndarray:
    """``[seeds]``: the task mean of ``[seeds, tasks]`` scores (``[seeds]`` ones as they are)."""
    return scores.mean(axis=1) if scores.ndim == 2 else scores


def markdown_table(rows: Mapping[str, Mapping[str, Sequence]], columns: Sequence[str],
                   headers: Optional[Mapping[str, str]] = None,
                   lower_is_better: Sequence[str] = (), digits: int = 2,
                   row_header: str = "algorithm") -> str:
    """``rows[name][column]``: scores ``[seeds]`` or ``[seeds, tasks]`` (missing: empty cell).
    Cells are ``mean ± std [95 % interval]`` (:mod:`jaxomrl.eval.stats`); the best mean of each
    column (highest, or lowest for ``lower_is_better``) is bold, and a cell whose seeds are not
    distinguishable from the best's (Welch 95 % interval of the difference holds 0) is marked
    ``≈``, explained under the table."""
    headers = headers or {}
    values = {r: {c: np.asarray(v, np.float64) for c, v in cols.items()
                  if v is not None and len(v)} for r, cols in rows.items()}
    summaries = {r: {c: stats.summarise(v) for c, v in cols.items()}
                 for r, cols in values.items()}
    best = {}
    for c in columns:
        means = [(s[c].mean, r) for r, s in summaries.items()
                 if c in s and math.isfinite(s[c].mean)]
        if means:
            best[c] = (min if c in lower_is_better else max)(means)
    lines = ["| " + " | ".join([row_header] + [headers.get(c, c) for c in columns]) + " |",
             "|---|" + "---:|" * len(columns)]
    marked = False
    for r, s in summaries.items():
        cells = []
        for c in columns:
            if c not in s:
                cells.append("—")
                continue
            text = stats.cell(s[c], digits)
            if len(summaries) > 1 and round(s[c].mean, digits) == round(best[c][0], digits):
                text = f"**{text}**"
            elif len(summaries) > 1 and c in best:
                if not stats.compare(_seed_means(values[best[c][1]][c]),
                                     _seed_means(values[r][c]),
                                     c in lower_is_better).distinguishable:
                    text += " " + NOT_DISTINGUISHABLE
                    marked = True
            cells.append(text)
        lines.append("| " + " | ".join([r] + cells) + " |")
    if marked:
        lines += ["", f"{NOT_DISTINGUISHABLE}: not distinguishable from the column's best (bold): "
                      "the Welch 95 % interval of the difference of seed means holds 0."]
    return "\n".join(lines)


def read_curve(path: str, metric: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(steps [N], values [N, seeds])`` of ``metric`` in a run's wide CSV (``metrics_*.csv``),
    or None if the file or metric is absent."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        return None
    if len(rows) < 2 or metric not in rows[0]:
        return None
    header = rows[0]
    seed_cols = [i for i, h in enumerate(header)
                 if h.startswith(metric + "/seed") and h[len(metric) + 5:].isdigit()]
    body = [r for r in rows[1:] if r]
    steps = np.array([int(r[0]) for r in body])
    values = np.array([[float(r[i]) for i in seed_cols] for r in body])
    return steps, values


def colours(names: Sequence[str]) -> Dict[str, Any]:
    """One colour per name (matplotlib's tab10 / tab20 cycle), to keep them fixed across figures."""
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _figure(ncols: int = 1, nrows: int = 1, size=(5.6, 3.8)):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows),
                             squeeze=False)
    return plt, fig, axes


def _save(plt, fig, path: str, rect=None) -> str:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(curves: Mapping[str, Tuple[np.ndarray, np.ndarray]], path: str, title: str,
                xlabel: str = "policy updates", ylabel: str = "return",
                colour: Optional[Mapping[str, Any]] = None) -> str:
    """Learning curves: ``curves[name] = (steps [N], values [N, seeds])``; mean line and
    mean ± sample std band over seeds."""
    colour = colour or colours(list(curves))
    plt, fig, axes = _figure()
    ax = axes[0, 0]
    for name, (steps, values) in curves.items():
        m, s = values.mean(axis=1), _std(values, 1)
        ax.plot(steps, m, marker="o" if len(steps) < 12 else None, label=name,
                color=colour[name])
        ax.fill_between(steps, m - s, m + s, alpha=0.2, color=colour[name])
    ax.set_title(title, fontsize=9)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_panels(panels: Mapping[str, Mapping[str, Tuple[np.ndarray, np.ndarray]]], path: str,
                title: str, xlabel: str = "steps", ncols: int = 3,
                colour: Optional[Mapping[str, Any]] = None) -> str:
    """One panel per quantity: ``panels[panel title][line name] = (steps [N], values [N,
    seeds])``, each line its seeds' mean and mean ± std band (:func:`plot_curves` per panel)."""
    names = list(dict.fromkeys(n for curves in panels.values() for n in curves))
    colour = colour or colours(names)
    ncols = min(ncols, len(panels))
    plt, fig, axes = _figure(ncols, -(-len(panels) // ncols), size=(4.4, 3.2))
    for ax, (panel, curves) in zip(axes.flat, panels.items()):
        for name, (steps, values) in curves.items():
            m, s = values.mean(axis=1), _std(values, 1)
            ax.plot(steps, m, label=name, color=colour[name])
            ax.fill_between(steps, m - s, m + s, alpha=0.2, color=colour[name])
        ax.set_title(panel, fontsize=9)
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path, rect=(0, 0, 1, 0.95))


def plot_task_curves(env_steps: np.ndarray, returns: np.ndarray, attribute: np.ndarray,
                     is_test: np.ndarray, path: str, title: str,
                     attribute_name: str = "task attribute") -> str:
    """A collection's learning curves: ``returns [T, K + 1]`` evaluated return of every
    checkpoint (at ``env_steps [K + 1]`` per task) on every task, coloured by the task's
    ``attribute [T]`` (unseen ``is_test`` tasks dashed); beside it each task's best checkpoint
    return against the attribute."""
    import matplotlib
    plt, fig, axes = _figure(ncols=2)
    returns, attribute = np.asarray(returns, np.float64), np.asarray(attribute, np.float64)
    is_test = np.asarray(is_test, bool)
    norm = matplotlib.colors.Normalize(attribute.min(), attribute.max() + 1e-9)
    cmap = matplotlib.colormaps["viridis"]
    ax = axes[0, 0]
    for t in range(returns.shape[0]):
        ax.plot(env_steps, returns[t], color=cmap(norm(attribute[t])), lw=0.9, alpha=0.8,
                ls="--" if is_test[t] else "-")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label=attribute_name)
    ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="env steps per task", ylabel="return of the checkpoint")
    ax.grid(alpha=0.3)
    ax = axes[0, 1]
    best = returns.max(axis=1)
    for mask, label, marker in ((~is_test, "seen tasks", "o"), (is_test, "unseen tasks", "x")):
        if mask.any():
            ax.scatter(attribute[mask], best[mask], marker=marker, label=label)
    ax.set_title(f"best checkpoint per task: mean {best.mean():.1f}, min {best.min():.1f}",
                 fontsize=9)
    ax.set(xlabel=attribute_name, ylabel="best checkpoint's return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_traces(traces: Mapping[str, np.ndarray], targets: Sequence[float], path: str,
                title: str, ylabel: str, panel_label: str = "target",
                colour: Optional[Mapping[str, Any]] = None) -> str:
    """``traces[name] = [seeds, panels, steps]``: one panel per task with every algorithm's mean
    over seeds (thin lines: single seeds) and the panel's target as a dashed line."""
    colour = colour or colours(list(traces))
    n = len(targets)
    plt, fig, axes = _figure(ncols=min(n, 4), nrows=-(-n // 4), size=(3.6, 3.0))
    for i, target in enumerate(targets):
        ax = axes[i // 4, i % 4]
        for name, values in traces.items():
            v = np.asarray(values, np.float64)[:, i]
            t = np.arange(v.shape[-1])
            for seed in v:
                ax.plot(t, seed, color=colour[name], alpha=0.25, linewidth=0.6)
            ax.plot(t, v.mean(axis=0), color=colour[name], linewidth=1.4,
                    label=name if i == 0 else None)
        ax.axhline(target, color="k", linestyle="--", linewidth=1.0,
                   label=panel_label if i == 0 else None)
        ax.set_title(f"{panel_label} {target:.2f}", fontsize=9)
        ax.set(xlabel="step", ylabel=ylabel if i % 4 == 0 else None)
        ax.grid(alpha=0.3)
    for j in range(n, axes.size):
        axes.flat[j].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.legend(fontsize=7, loc="lower center", ncol=len(traces) + 1, bbox_to_anchor=(0.5, -0.02))
    return _save(plt, fig, path, rect=(0, 0.06, 1, 1))


def plot_adaptation(returns: Mapping[str, np.ndarray], path: str, title: str,
                    colour: Optional[Mapping[str, Any]] = None) -> str:
    """Return per adaptation episode: ``returns[name] [seeds, episodes]`` (mean over tasks);
    mean ± sample std over seeds; episode 1 is zero-shot."""
    colour = colour or colours(list(returns))
    plt, fig, axes = _figure()
    ax = axes[0, 0]
    for name, r in returns.items():
        r = np.asarray(r)
        ep = np.arange(1, r.shape[1] + 1)
        ax.errorbar(ep, r.mean(0), yerr=_std(r, 0), marker="o", capsize=3, label=name,
                    color=colour[name])
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="adaptation episode (1 = zero-shot)", ylabel="return")
    ax.set_xticks(np.arange(1, max(np.asarray(r).shape[1] for r in returns.values()) + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def tsne(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of ``points [N, D]``; perplexity scaled down for small N."""
    from sklearn.manifold import TSNE
    n = points.shape[0]
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed
                ).fit_transform(np.asarray(points, np.float64))


def plot_tsne(embeddings: Mapping[str, np.ndarray], task_param: np.ndarray, path: str,
              title: str, param_name: str = "task parameter",
              markers: Optional[np.ndarray] = None) -> str:
    """t-SNE of task embeddings, one panel per algorithm: ``embeddings[name] [T, N, D]`` (N
    contexts of each of T tasks), coloured by ``task_param [T]``. ``markers [T, N]`` (bool)
    draws the True points as crosses (e.g. contexts from held-out behaviour checkpoints)."""
    names = list(embeddings)
    ncols = min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    plt, fig, axes = _figure(ncols, nrows, size=(3.6, 3.3))
    task_param = np.asarray(task_param, np.float64)
    for ax, name in zip(axes.reshape(-1), names):
        z = np.asarray(embeddings[name])
        t, n = z.shape[:2]
        xy = tsne(z.reshape(t * n, -1))
        colour = np.repeat(task_param, n)
        cross = np.zeros(t * n, bool) if markers is None else np.asarray(markers).reshape(-1)
        sc = ax.scatter(xy[~cross, 0], xy[~cross, 1], c=colour[~cross], s=9, cmap="viridis",
                        vmin=task_param.min(), vmax=task_param.max())
        if cross.any():
            ax.scatter(xy[cross, 0], xy[cross, 1], c=colour[cross], s=16, marker="x",
                       cmap="viridis", vmin=task_param.min(), vmax=task_param.max())
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.reshape(-1)[len(names):]:
        ax.axis("off")
    fig.colorbar(sc, ax=axes.reshape(-1).tolist(), label=param_name, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bars(groups: Mapping[str, Mapping[str, Sequence[float]]], path: str, title: str,
              ylabel: str = "return", colour: Optional[Mapping[str, Any]] = None) -> str:
    """Grouped bars: ``groups[metric][name]`` per-seed values; bar = mean, error bar = sample
    std."""
    metrics = list(groups)
    names: List[str] = []
    for g in groups.values():
        names += [n for n in g if n not in names]
    colour = colour or colours(names)
    plt, fig, axes = _figure(size=(min(11.0, 2.5 + 0.3 * len(names) * len(metrics)), 3.8))
    ax = axes[0, 0]
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        bars = [mean_std(groups[m][name]) if name in groups[m] else (np.nan, 0.0)
                for m in metrics]
        ax.bar(np.arange(len(metrics)) + (i - (len(names) - 1) / 2) * width,
               [b[0] for b in bars], width, yerr=[b[1] for b in bars], capsize=3, label=name,
               color=colour[name])
    ax.set_xticks(np.arange(len(metrics)))
    ax.set_xticklabels(metrics, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set(ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    return _save(plt, fig, path)
