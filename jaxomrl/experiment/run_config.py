"""A run's settings (``RunConfig``) and the refusal of a workdir that holds another run."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from jaxomrl.errors import JaxomrlError


class RunConfigError(JaxomrlError, ValueError):
    """The workdir holds a different run (or one the request cannot continue)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    workdir: str
    seeds: Tuple[int, ...] = (0,)
    chunk_steps: int = 500          # updates per jitted chunk (and per log row)
    checkpoint_every_chunks: int = 1    # chunks between checkpoints
    eval_every: int = 0             # last-phase updates between evaluations (0: only at the end)
    shard_seeds: bool = False       # split the seed axis over all devices
    verbose: bool = True
    share_dir: Optional[str] = None  # outputs of phases other runs can reuse (see ``run``)

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.chunk_steps < 1 or self.checkpoint_every_chunks < 1 or self.eval_every < 0:
            raise ValueError("chunk_steps and checkpoint_every_chunks must be >= 1, "
                             "eval_every >= 0")
        if self.eval_every and self.eval_every % self.chunk_steps:
            raise ValueError(f"eval_every ({self.eval_every}) must be a multiple of chunk_steps "
                             f"({self.chunk_steps})")
