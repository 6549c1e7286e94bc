"""Run logs: one CSV per phase (and one for evaluations) plus TensorBoard event files per seed.

CSV files are wide: ``step, seconds`` then, for every metric, its mean over seeds and one column
per seed (``loss``, ``loss/seed0``, ...). Rows are flushed as they are written. On resume,
``truncate(phase, step)`` drops rows past the restored checkpoint (and rows a failed write left
incomplete) so curves have no duplicates, and
the TensorBoard writers purge events past the restored global step.
"""
from __future__ import annotations

import csv
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from tensorboardX import SummaryWriter


class RunLogger:
    def __init__(self, workdir: str, seeds: Sequence[int], purge_step: Optional[int] = None):
        self.workdir = workdir
        self.seeds = list(seeds)
        tb = os.path.join(workdir, "tensorboard")
        self._writers = [SummaryWriter(os.path.join(tb, f"seed{s}"), purge_step=purge_step)
                         for s in self.seeds]
        self._headers: Dict[str, List[str]] = {}

    def _path(self, table: str) -> str:
        return os.path.join(self.workdir, f"metrics_{table}.csv")

    def truncate(self, table: str, last_step: int) -> None:
        """Keeps the rows of ``table`` with ``step <= last_step``."""
        path = self._path(table)
        if not os.path.exists(path):
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        # a row cut short by a failed write (a full disk) has fewer columns: dropped
        kept = [rows[0]] + [r for r in rows[1:]
                            if len(r) == len(rows[0]) and int(r[0]) <= last_step]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    def write(self, table: str, step: int, global_step: int, seconds: float,
              metrics: Dict[str, np.ndarray]) -> None:
        """``metrics``: name -> ``[num_seeds]`` values at ``step`` of ``table``."""
        names = sorted(metrics)
        header = ["step", "seconds"]
        for n in names:
            header += [n] + [f"{n}/seed{s}" for s in self.seeds]
        path = self._path(table)
        if table not in self._headers:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, newline="") as f:
                    existing = next(csv.reader(f))
                if existing != header:
                    raise ValueError(f"{path} has different columns; use a new workdir")
            else:
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(header)
            self._headers[table] = header
        row = [str(step), f"{seconds:.3f}"]
        for n in names:
            v = np.asarray(metrics[n], np.float64).reshape(len(self.seeds))
            row += [repr(float(v.mean()))] + [repr(float(x)) for x in v]
            for w, x in zip(self._writers, v):
                w.add_scalar(f"{table}/{n}", float(x), global_step)
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow(row)
            f.flush()

    def flush(self) -> None:
        for w in self._writers:
            w.flush()

    def close(self) -> None:
        for w in self._writers:
            w.close()


class NullLogger:
    """A :class:`RunLogger` that writes nothing: the logger of every process of a multi-process
    run but process 0 (``distributed.is_writer``)."""

    def truncate(self, table: str, last_step: int) -> None:
        pass

    def write(self, table: str, step: int, global_step: int, seconds: float,
              metrics: Dict[str, np.ndarray]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
