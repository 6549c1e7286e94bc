"""What keeps a directory whole when processes meet it: one command at a time, and interrupts
that stop between chunks.

* :func:`directory_lock`: a command holds ``<dir>/.jaxomrl.lock`` while it writes into ``dir``.
  The lock is the kernel's advisory ``flock`` (through ``filelock``): it goes with the process
  however the process ends (``kill -9`` included), so a killed command never leaves a stale
  lock behind. The holder's pid, host and command line are written beside it
  (``.jaxomrl.lock.json``) so that a refused command names the one in its way. (Where a file
  system has no ``flock``, ``filelock`` falls back to its soft lock.)
* :class:`StopRequests`: while a training loop runs, SIGINT (Ctrl-C) asks it to stop at the next
  chunk boundary (the loop checkpoints and raises ``errors.Interrupted``) instead of raising
  ``KeyboardInterrupt`` wherever Python happens to be. A second SIGINT more than
  ``REPEAT_SECONDS`` after the first raises ``KeyboardInterrupt`` at once (closer ones are the
  same Ctrl-C arriving twice: from the terminal to the process group and forwarded by a parent).
  The handler is installed even where SIGINT was ignored at start (a non-interactive shell
  starts background jobs so), so that ``kill -INT`` stops a training run started in the
  background too; the previous disposition comes back when the loop ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, Iterator, Optional

import filelock

from jaxomrl.errors import DirectoryInUse
from jaxomrl.io import atomic_write_text

LOCK_FILE, OWNER_FILE = ".jaxomrl.lock", ".jaxomrl.lock.json"
REPEAT_SECONDS = 1.0


def _owner(directory: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _in_use_message(directory: str, what: str) -> str:
    owner = _owner(directory) or {}
    who = (f"process {owner.get('pid')} on {owner.get('host')} (`{owner.get('command')}`, "
           f"since {owner.get('since')})" if owner else "another process")
    return (f"{directory} is in use by {who}: {what} refused. Wait for it to end, stop it "
            "(Ctrl-C stops it at its next checkpoint), or use another directory")


def _acquire(directory: str, what: str) -> filelock.FileLock:
    """``directory``'s lock, held; ``DirectoryInUse`` naming the holder if another has it."""
    lock = filelock.FileLock(os.path.join(directory, LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DirectoryInUse(_in_use_message(directory, what)) from None
    return lock


@contextlib.contextmanager
def directory_lock(directory: str, what: str = "this command") -> Iterator[None]:
    """Holds ``directory``'s lock (creating the directory) for the ``with`` block; raises
    ``DirectoryInUse`` naming the holder if another process holds it."""
    os.makedirs(directory, exist_ok=True)
    lock = _acquire(directory, what)
    try:
        atomic_write_text(os.path.join(directory, OWNER_FILE), json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join(sys.argv), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield
    finally:
        lock.release()


def check_unlocked(directory: str, what: str = "this command") -> None:
    """Raises ``DirectoryInUse`` if another process holds ``directory``'s lock now (a check
    before any work; :func:`directory_lock` is what guards the writing)."""
    if os.path.exists(os.path.join(directory, LOCK_FILE)):
        _acquire(directory, what).release()


class StopRequests:
    """A context manager: inside it (in the main thread; elsewhere it does nothing) SIGINT sets
    :attr:`requested` (the signal number) instead of raising; see the module doc."""

    def __init__(self):
        self.requested: Optional[int] = None
        self._at = 0.0
        self._previous = None

    def _handle(self, signum, frame):
        del frame
        if self.requested is not None and time.monotonic() - self._at > REPEAT_SECONDS:
            raise KeyboardInterrupt
        if self.requested is None:
            self.requested, self._at = signum, time.monotonic()
            print(f"\n{signal.Signals(signum).name}: stopping at the next checkpoint (again, "
                  "after a second, to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
