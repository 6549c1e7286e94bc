"""Commands run as Ray tasks (``--engine=ray``): on a local Ray instance started here when no
address is given, so that the same command works on a laptop, or on a running cluster
(``address``, e.g. ``auto`` on one of its nodes or ``ray://head:10001``).

Each command is a task that runs it as a subprocess of the Ray worker and returns its exit
status. The rules, as :func:`jaxomrl.experiment.processes.run_commands` states them for the
local engine, with these differences:

* Order: command ``i`` takes the exit status of ``after[i]`` as its task's argument, so Ray
  starts it once that one has finished (task dependencies; nothing polls files). It runs only
  if that status is 0; otherwise it returns None (not started).
* Failures: a command that exits non-zero stops none of the others; only those waiting for it
  do not start (a sweep keeps its other jobs).
* Lost jobs: a command killed by a signal (its node lost, the kernel's OOM killer, ``kill -9``)
  raises :class:`JobLost`, and Ray retries the task, up to ``max_retries`` times; so does a
  Ray worker that dies (the command dies with it: Linux's parent-death signal). Every
  ``train.py`` command resumes from its last checkpoint when run again, so a retry continues
  where the lost one stopped.
* Resources: each task asks for ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs (fractions
  share a device: Ray's fractional GPUs); a command on a fraction ``g`` of a GPU gets
  ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 0.9 g, so that the processes' XLA memory pools fit the
  device together (JAX's own default, 0.75, is for one process). A local instance has
  ``workers`` CPUs, so at most ``workers`` one-CPU commands run at a time.
* The run directories, the data and this repository must be at the same paths on every node
  (a shared file system, as on SLURM clusters): the commands are argument lists with absolute
  paths.

Ctrl-C (KeyboardInterrupt) cancels the tasks: a running command gets SIGINT and stops at its
next checkpoint (``guards.StopRequests``), then KeyboardInterrupt is raised here.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from typing import Dict, List, Optional, Sequence

# Environment variables a command needs from the process that submitted it (a worker on
# another node has its own environment otherwise): JAX's and XLA's settings, this project's,
# the import path.
FORWARDED_PREFIXES = ("JAX_", "XLA_", "JAXOMRL_", "TF_CPP_")
FORWARDED = ("PYTHONPATH",)
# Of a GPU fraction g, the XLA memory pool a command may take (the rest: CUDA contexts).
MEMORY_PER_GPU_FRACTION = 0.9
# Signals that mean the command was lost rather than that it failed.
LOST = (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGBUS, signal.SIGSEGV)


class JobLost(RuntimeError):
    """A command ended by a signal: its node or process was lost. Ray retries its task."""


def forwarded_environment(environ=None) -> Dict[str, str]:
    """The variables of ``environ`` (default: this process's) that every command gets."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items()
            if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED}


def job_environment(env: Dict[str, str], gpus_per_job: float) -> Dict[str, str]:
    """``env`` with the XLA memory fraction of a command on ``gpus_per_job`` of a GPU (a
    fraction below 1; unchanged for whole GPUs or none, or where ``env`` sets it)."""
    out = dict(env)
    if 0 < gpus_per_job < 1:
        out.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION",
                       f"{MEMORY_PER_GPU_FRACTION * gpus_per_job:.3f}")
    return out


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the command gets SIGKILL when the Ray worker that started it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_job(command: Sequence[str], env: Dict[str, str], *upstream: Optional[int]
            ) -> Optional[int]:
    """The body of one task: runs ``command`` unless a command it waits for (``upstream``:
    their exit statuses, which Ray passes once they have finished) did not succeed. Returns
    the exit status, or None (not started); raises :class:`JobLost` if a signal ended it."""
    if any(code != 0 for code in upstream):
        return None
    proc = subprocess.Popen(list(command), env={**os.environ, **env},
                            preexec_fn=_die_with_parent if os.name == "posix" else None)
    try:
        code = proc.wait()
    except KeyboardInterrupt:        # ray.cancel: stop at the next checkpoint
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    if code < 0 and -code in LOST:
        raise JobLost(f"{command[1] if len(command) > 1 else command[0]} ended by signal "
                      f"{signal.Signals(-code).name}")
    return code


def run_commands(commands: Sequence[Sequence[str]], workers: int,
                 after: Optional[Sequence[Optional[int]]] = None, address: Optional[str] = None,
                 cpus_per_job: float = 1.0, gpus_per_job: float = 0.0, max_retries: int = 3,
                 env: Optional[Dict[str, str]] = None) -> List[Optional[int]]:
    """Runs ``commands`` as Ray tasks (module docstring) and returns every command's exit
    status (None: not started, or lost more than ``max_retries`` times). ``env``: the
    variables every command gets (default: :func:`forwarded_environment`)."""
    import ray

    after = list(after) if after is not None else [None] * len(commands)
    if any(a is not None and not 0 <= a < i for i, a in enumerate(after)):
        raise ValueError(f"after={after}: each must name an earlier command")
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # Ray starts its workers at niceness 15 (to favour its own daemons); here they only
            # wait for the commands, which then run at this process's priority, as the
            # processes engine's do.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=max(1, workers), num_gpus=None if gpus_per_job else 0,
                     include_dashboard=False, log_to_driver=True)
    env = job_environment(forwarded_environment() if env is None else env, gpus_per_job)
    task = ray.remote(run_job).options(
        num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=max_retries,
        retry_exceptions=[JobLost])
    refs: List = []
    try:
        for command, a in zip(commands, after):
            refs.append(task.remote(list(command), env, *([refs[a]] if a is not None else [])))
        codes: List[Optional[int]] = []
        for ref in refs:
            try:
                codes.append(ray.get(ref))
            except ray.exceptions.RayError as e:      # lost every time, or upstream lost
                print(f"[ray] {e.__class__.__name__}: {str(e).splitlines()[0][:300]}",
                      flush=True)
                codes.append(None)
        return codes
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        for ref in refs:
            try:
                ray.get(ref)
            except (ray.exceptions.RayError, KeyboardInterrupt):
                pass
        raise
    finally:
        if started:
            ray.shutdown()
