"""Commands run as subprocesses side by side, in an order that lets some wait for others
(``experiments/train.py``'s and ``reproduce.py``'s workers), stopped together."""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from typing import List, Optional, Sequence


def run_commands(commands: Sequence[Sequence[str]], workers: int,
                 after: Optional[Sequence[Optional[int]]] = None,
                 poll_seconds: float = 0.2) -> List[Optional[int]]:
    """Runs ``commands`` (argument lists) as subprocesses, at most ``workers`` at a time, in the
    order given, their output going to this process's; command ``i`` starts once command
    ``after[i]`` (an earlier one, or None) has succeeded. Once one fails no further one starts;
    those running finish. Returns every command's exit status (None: not started). If this
    process is terminated (SIGTERM), the running ones are terminated; if it is interrupted
    (SIGINT, Ctrl-C; also where SIGINT was ignored at start), SIGINT goes to the running ones,
    which stop at their next checkpoint (``guards.StopRequests``), and KeyboardInterrupt is
    raised once they have; a second Ctrl-C while waiting terminates them. Each command resumes
    from its last checkpoint when run again."""
    codes: List[Optional[int]] = [None] * len(commands)
    after = list(after) if after is not None else [None] * len(commands)
    running = {}
    pending = list(range(len(commands)))

    def terminated(signum, frame):
        raise SystemExit(128 + signum)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:                  # `kill` stops the children too (signals: main thread only)
        previous = signal.signal(signal.SIGTERM, terminated)
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while pending or running:
            ready = [i for i in pending if after[i] is None or codes[after[i]] == 0]
            while ready and len(running) < workers and not any(codes):
                i = ready.pop(0)
                pending.remove(i)
                running[i] = subprocess.Popen(list(commands[i]))
            if not running:
                break
            time.sleep(poll_seconds)
            for i, proc in list(running.items()):
                if proc.poll() is not None:
                    codes[i] = proc.returncode
                    del running[i]
    except KeyboardInterrupt:
        for proc in running.values():
            proc.send_signal(signal.SIGINT)
        for i, proc in list(running.items()):
            codes[i] = proc.wait()
            del running[i]
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.wait()
    return codes
