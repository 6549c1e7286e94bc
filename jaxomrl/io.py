"""Crash-safe file writes: a file appears under its name complete or not at all."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from typing import IO, Callable


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = True) -> str:
    """Calls ``write(f)`` on a temporary file next to ``path``, fsyncs it, renames it to ``path``.

    The file gets the permissions a normally created file would (umask applied). On any
    exception the temporary file is removed and ``path`` is left untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_text(path: str, text: str) -> str:
    return atomic_write(path, lambda f: f.write(text), binary=False)


# Room kept free beyond what a write needs: orbax writes a new checkpoint (metadata files in
# 4 KiB blocks included) before deleting an old one, and the logs grow between checks.
FREE_SPACE_MARGIN = 1 << 20


def existing_ancestor(path: str) -> str:
    """``path`` (absolute) or its nearest ancestor that exists."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    return probe


def require_free_space(path: str, nbytes: int = 0) -> None:
    """Raises ``OSError(ENOSPC)`` naming ``path`` unless its file system has ``nbytes`` plus
    ``FREE_SPACE_MARGIN`` bytes free. Checked before a write starts, so a full disk is reported
    as one clean error instead of failing inside a library's background threads."""
    free = shutil.disk_usage(existing_ancestor(path)).free
    if free < nbytes + FREE_SPACE_MARGIN:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {free:,} bytes free, "
                      f"{nbytes + FREE_SPACE_MARGIN:,} needed", path)
