"""What the command lines (``experiments/*.py``) share: flag checks and failures as one line.

    cli.require_ints(1, "seeds", "chunk_steps")     # absl validators: the flag and its range
    cli.require_finite("rl_weight", lower=0.0)
    cli.define_flags(algos.Settings)                  # one flag per config field (config.setting)
    settings = cli.from_flags(algos.Settings)
    cli.renamed_flag("alpha", "kernel_alpha")        # an old name, refused naming the new one
    cli.run(main, io_context=lambda: FLAGS.workdir)  # instead of absl.app.run(main)

``run`` turns the failures a user can act on into ``<program>: error: <message>`` on stderr,
without a traceback: a ``UsageError`` (exit status 2), any other ``JaxomrlError`` -- a refused
dataset, another run in the workdir, training that went non-finite -- (status 1), and an I/O
failure anywhere in an exception's chain (a full disk, no permission, a read-only file system,
a path that is not a directory): one line naming the path and the cause (status 1). Everything
else is a bug and keeps its traceback. A flag that fails its validator is reported by absl
before any work (``FATAL Flags parsing error: flag --seeds=0: ...``, status 1).
"""
from __future__ import annotations

import dataclasses
import errno
import math
import os
import sys
import tempfile
import typing
from typing import Any, Callable, Iterator, Optional, Sequence

from absl import app, flags

from jaxomrl.config import optional_arg
from jaxomrl.errors import Interrupted, JaxomrlError
from jaxomrl.experiment.compilation import set_matmul_precision, use_compilation_cache
from jaxomrl.io import existing_ancestor

FLAGS = flags.FLAGS

# Errors of writing a run's files the user fixes outside the program.
IO_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.EROFS: "read-only file system", errno.ENOTDIR: "not a directory",
             errno.EISDIR: "is a directory", errno.EFBIG: "file too large",
             errno.EIO: "input/output error"}


class UsageError(JaxomrlError):
    """A command line the program cannot run (exit status 2)."""


def _check(names: Sequence[str], ok: Callable, what: str, flag_values=FLAGS) -> None:
    for name in names:
        flags.register_validator(name, lambda v, ok=ok: v is None or ok(v),
                                 message=f"--{name} must be {what}", flag_values=flag_values)


def define_physics_flag(flag_values=FLAGS):
    """``--physics``: the simulator of the MJX task families (``envs.make``'s ``physics``)."""
    from jaxomrl.envs import PHYSICS
    return flags.DEFINE_enum(
        "physics", "auto", list(PHYSICS), "Simulator of the MuJoCo task families: mjx (MJX, in "
        "XLA), c (MuJoCo C on the CPU's cores) or auto (C where JAX runs on the CPU, MJX on an "
        "accelerator). Datasets record the one that produced them.", flag_values=flag_values)


def flag_text(name: str, value: Any) -> str:
    """``--name=value`` as the flags of :func:`define_flags` read it back (a tuple or list as
    a comma-separated list, a bool as true / false)."""
    if isinstance(value, (tuple, list)):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        value = str(value).lower()
    return f"--{name}={value}"


def require_ints(lower: int, *names: str, flag_values=FLAGS) -> None:
    """Integer flags ``names`` must be ``>= lower`` (unset ``None`` flags pass)."""
    _check(names, lambda v: v >= lower, f"an integer >= {lower}", flag_values)


def require_int_lists(*names: str, lower: int = 1, flag_values=FLAGS) -> None:
    """Comma-separated list flags ``names`` must hold integers ``>= lower``."""
    def ok(values):
        try:
            return all(int(v) >= lower for v in values)
        except ValueError:
            return False
    _check(names, ok, f"a comma-separated list of integers >= {lower}, e.g. 64,64", flag_values)


def require_finite(*names: str, lower: Optional[float] = None,
                   upper: Optional[float] = None, strict: bool = False,
                   flag_values=FLAGS) -> None:
    """Float flags ``names`` must be finite (not nan / inf) and within ``[lower, upper]``
    (``(lower, upper]`` if ``strict``)."""
    def ok(v):
        return (math.isfinite(v) and (lower is None or (v > lower if strict else v >= lower))
                and (upper is None or v <= upper))
    bounds = "" if lower is None else f" {'>' if strict else '>='} {lower:g}"
    bounds += "" if upper is None else f"{' and' if bounds else ''} <= {upper:g}"
    _check(names, ok, f"a finite number{bounds}", flag_values)


def require_multiple(name: str, of: str) -> None:
    """Integer flag ``name`` must be a multiple of integer flag ``of`` (0 passes)."""
    flags.register_multi_flags_validator(
        [name, of], lambda d: not d[name] or not d[of] or d[name] % d[of] == 0,
        message=f"--{name} must be a multiple of --{of} (or 0)")


def define_flags(cls: type, flag_values=FLAGS) -> None:
    """One absl flag per field of the config dataclass ``cls`` declared with
    ``jaxomrl.config.setting``: the field's name, default and help text, typed by the field
    (bool, int, float, str -- an enum with ``choices`` --, a tuple of ints as a comma-separated
    list) and validated by its bounds. ``from_flags(cls)`` is the inverse."""
    hints = typing.get_type_hints(cls)
    fv = dict(flag_values=flag_values)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        m, tp, name = f.metadata, optional_arg(hints[f.name]), f.name
        help_text = m["help"]
        if tp is bool:
            flags.DEFINE_bool(name, f.default, help_text, **fv)
        elif tp is int:
            flags.DEFINE_integer(name, f.default, help_text, **fv)
            if m["lower"] is not None:
                require_ints(int(m["lower"]), name, **fv)
        elif tp is float:
            flags.DEFINE_float(name, f.default, help_text, **fv)
            require_finite(name, lower=m["lower"], upper=m["upper"], **fv)
        elif tp is str and m["choices"]:
            flags.DEFINE_enum(name, f.default, list(m["choices"]), help_text, **fv)
        elif tp is str:
            flags.DEFINE_string(name, f.default, help_text, **fv)
        elif typing.get_origin(tp) is tuple:
            flags.DEFINE_list(name, None if f.default is None else [str(v) for v in f.default],
                              help_text, **fv)
            require_int_lists(name, lower=int(m["lower"] if m["lower"] is not None else 1), **fv)
        else:
            raise TypeError(f"{cls.__name__}.{name}: no flag type for {tp}")


def from_flags(cls: type, flag_values=FLAGS, **values: Any) -> Any:
    """The ``cls`` instance of the parsed flags :func:`define_flags` generated (lists become
    tuples of ints); ``values`` replace fields (e.g. ones derived from the data)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        v = flag_values[f.name].value
        if v is not None and typing.get_origin(optional_arg(hints[f.name])) is tuple:
            v = tuple(int(x) for x in v)
        out[f.name] = v
    out.update(values)
    return cls(**out)


def renamed_flag(old: str, new: str, flag_values=FLAGS) -> None:
    """Defines ``--old`` only to refuse it, naming ``--new`` (a flag renamed because its name
    meant two things)."""
    flags.DEFINE_string(old, None, f"Renamed: use --{new}.", flag_values=flag_values)
    flags.register_validator(old, lambda v: v is None, flag_values=flag_values,
                             message=f"--{old} was renamed --{new}; use --{new}")


def require_info_keys(family, keys: Sequence[str], flag: str, error=UsageError) -> None:
    """Refuses (``error``) ``keys`` that are not step ``info`` keys of ``family`` (the scalars
    its environments record each step), naming ``--flag`` and the keys there are."""
    missing = sorted(set(keys) - set(family.info_keys))
    if missing:
        raise error(f"--{flag}: {missing} are not step info keys of {family.name} "
                    f"({sorted(family.info_keys)})")


def writable_dir(path: str, flag: str) -> None:
    """Refuses (``UsageError``) a ``path`` that cannot become a writable directory: a file, or
    a directory (or its nearest existing ancestor) where no file can be created. Creates
    nothing."""
    probe = existing_ancestor(path)
    if not os.path.isdir(probe):
        where = "is a file" if probe == os.path.abspath(path) else f"lies under the file {probe}"
        raise UsageError(f"--{flag}={path} {where}, not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe-", dir=probe)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise UsageError(f"--{flag}={path}: cannot write in {probe} "
                         f"({e.strerror or e}); choose a writable directory") from e


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]


def io_failure(exc: BaseException) -> Optional[str]:
    """``"<cause>: <path>"`` if ``exc`` or any exception in its chain is an I/O failure the user
    fixes outside the program (``IO_ERRNOS``; also tensorstore's messages of them), else None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in IO_ERRNOS:
            path = e.filename or ""
            return f"{IO_ERRNOS[e.errno]}" + (f" ({path})" if path else "")
    for e in _chain(exc):
        text = str(e)
        for code, cause in IO_ERRNOS.items():
            if os.strerror(code).lower() in text.lower():
                return cause
    return None


def fail(message: str, status: int = 1, hard: bool = False) -> None:
    """Prints ``<program>: error: <message>`` to stderr and exits with ``status``. ``hard``:
    without running exit handlers (after an I/O failure, the log writers' own clean-up would
    fail again and print their tracebacks)."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "jaxomrl"
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    if hard:
        sys.stdout.flush()
        os._exit(status)
    sys.exit(status)


def run(main: Callable[[Sequence[str]], None],
        io_context: Callable[[], Optional[str]] = lambda: None,
        start: Optional[Callable[[], Any]] = None) -> None:
    """``absl.app.run(main)`` with user-facing failures as one line (see the module doc).
    ``io_context()`` names what was being written (e.g. the workdir) for I/O failures. Turns
    on the persistent compilation cache (``--compilation_cache``) before ``main``, after
    ``start()``, which runs before anything touches JAX's backend (e.g.
    ``distributed.initialize_from_flags``)."""
    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]} (flags are --name=value)", 2)
        try:
            if start is not None:
                start()
            use_compilation_cache(FLAGS.compilation_cache)
            set_matmul_precision(FLAGS.matmul_precision)
            return main(argv)
        except UsageError as e:
            fail(str(e), 2)
        except Interrupted as e:
            fail(str(e), e.exit_status)
        except JaxomrlError as e:
            fail(str(e), 1)
        except KeyboardInterrupt:
            fail("interrupted (SIGINT); what was complete on disk is kept (checkpoints, "
                 "datasets): rerun the same command to resume", Interrupted.exit_status)
        except Exception as e:  # noqa: BLE001 -- re-raised unless it is an I/O failure
            cause = io_failure(e)
            if cause is None:
                raise
            where = io_context()
            fail(f"cannot write {'under ' + where if where else 'a file'}: {cause}. Nothing "
                 "incomplete is used on resume: free space or fix the permission, then rerun the same "
                 "command to resume from the last complete checkpoint", 1, hard=True)
    app.run(wrapped)
