"""Where a command line's jobs (``train.py`` processes, one spec each) run: the engine.

* ``processes``: subprocesses of this command on this machine, at most ``--workers`` at a
  time (:func:`jaxomrl.experiment.processes.run_commands`);
* ``ray``: Ray tasks on a local Ray instance started for the command, or on a running cluster
  (``--ray_address``), retried when lost (:func:`jaxomrl.experiment.ray_jobs.run_commands`).

Both take the same jobs in the same order with the same dependencies (a job that takes a phase
another trains starts once that one has finished) and return every job's exit status.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

from absl import flags

ENGINES = ("processes", "ray")


@dataclasses.dataclass(frozen=True)
class Engine:
    """``name``: one of :data:`ENGINES`; the rest apply to Ray: ``address`` of a running
    cluster (None: a local instance), ``gpus_per_job`` (a fraction shares a device),
    ``cpus_per_job``, ``retries`` of a lost job."""
    name: str = "processes"
    address: Optional[str] = None
    gpus_per_job: float = 0.0
    cpus_per_job: float = 1.0
    retries: int = 3

    def __post_init__(self):
        if self.name not in ENGINES:
            raise ValueError(f"engine {self.name!r}: choose among {list(ENGINES)}")
        if self.gpus_per_job < 0 or self.cpus_per_job <= 0 or self.retries < 0:
            raise ValueError("gpus_per_job >= 0, cpus_per_job > 0 and retries >= 0")

    def run(self, commands: Sequence[Sequence[str]], workers: int,
            after: Optional[Sequence[Optional[int]]] = None) -> List[Optional[int]]:
        """Runs ``commands`` (argument lists), ``after[i]`` an earlier command that command
        ``i`` waits for; returns their exit statuses (None: not started)."""
        if self.name == "ray":
            from jaxomrl.experiment import ray_jobs
            return ray_jobs.run_commands(commands, workers, after, address=self.address,
                                         cpus_per_job=self.cpus_per_job,
                                         gpus_per_job=self.gpus_per_job,
                                         max_retries=self.retries)
        from jaxomrl.experiment import processes
        return processes.run_commands(commands, workers, after)


def define_engine_flags(default: str = "processes", flag_values=flags.FLAGS) -> None:
    """``--engine``, ``--ray_address``, ``--gpus_per_job``, ``--job_retries``."""
    flags.DEFINE_enum("engine", default, list(ENGINES), "Where the jobs run: processes (this "
                      "machine's, --workers at a time) or ray (Ray tasks: a local Ray instance "
                      "with --workers CPUs, or the cluster at --ray_address; lost jobs retried "
                      "and resumed).", flag_values=flag_values)
    flags.DEFINE_string("ray_address", None, "A running Ray cluster (e.g. auto, or "
                        "ray://head:10001); implies --engine=ray. Run directories and data must "
                        "be on a file system every node sees, at the same paths.",
                        flag_values=flag_values)
    flags.DEFINE_float("gpus_per_job", 0.0, "GPUs each Ray job asks for; a fraction (e.g. 0.25) "
                       "puts several jobs on one device, each with that share of its memory.",
                       lower_bound=0.0, flag_values=flag_values)
    flags.DEFINE_integer("job_retries", 3, "Times Ray retries a job whose process was lost "
                         "(killed, its node gone); each retry resumes from the checkpoint.",
                         lower_bound=0, flag_values=flag_values)


def engine_from_flags(flag_values=flags.FLAGS) -> Engine:
    f = flag_values
    name = "ray" if f.ray_address else f.engine
    return Engine(name=name, address=f.ray_address, gpus_per_job=f.gpus_per_job,
                  retries=f.job_retries)


# The flags a job's own command gets, so that it trains in its process, not as jobs again.
CHILD_FLAGS = ("--engine=processes", "--ray_address=", "--workers=1")
