"""Config dataclasses to and from JSON, generically (nested configs, Optional ones, tuples), and
the one declaration of a setting.

``dataclasses.asdict(config)`` is the JSON form (a run's ``run.json``); :func:`from_json` is its
inverse for any frozen config dataclass, so a new field needs no deserialiser of its own.
:func:`setting` declares a field together with its help text and bounds, from which
``jaxomrl.experiment.cli.define_flags`` generates the command-line flag and its validator, and
``to`` the paths of the algorithm configs it sets (:func:`route`): a learner's hyperparameter is
exposed by one field.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping, Optional, Sequence, Type, TypeVar

T = TypeVar("T")


def setting(default: Any, help: str, *, lower: Optional[float] = None,
            upper: Optional[float] = None, choices: Optional[Sequence[str]] = None,
            to: Sequence[str] = ()) -> Any:
    """A config-dataclass field with what its command-line flag needs: the help text, the
    bounds of a number (``lower <= value <= upper``; each entry of a tuple of ints) and the
    choices of a string. ``default`` None on an ``Optional`` field means "derived" (the help
    text says from what). ``to``: dotted paths of the fields this setting sets in the configs
    built from it (e.g. ``"policy.tau"``), applied by :func:`route` wherever a config has
    the path."""
    return dataclasses.field(default=default, metadata={
        "help": help, "lower": lower, "upper": upper,
        "choices": tuple(choices) if choices else None, "to": tuple(to)})


def route(config: T, settings: Any) -> T:
    """``config`` with the value of every field of ``settings`` declared with ``to`` paths set at
    each of those paths that ``config`` has (a path through a missing attribute or a None
    sub-config is skipped: e.g. ``"encoder.x"`` in a config without an encoder). Every config is
    rebuilt once with all its new values, so its checks see them together (e.g. SAC's fixed
    temperature of 0 with ``learn_alpha`` off)."""
    return set_paths(config, {path: getattr(settings, f.name)
                               for f in dataclasses.fields(settings)
                               for path in f.metadata.get("to", ())})


def set_paths(config: T, values: Mapping[str, Any]) -> T:
    """``config`` with ``{dotted path: value}`` set wherever it has the path (the rules of
    :func:`route`: a path through a missing attribute or a None sub-config is skipped), each
    config rebuilt once."""
    return _set_paths(config, {tuple(path.split(".")): v for path, v in values.items()})


def route_paths(settings_cls: type) -> Dict[str, tuple]:
    """``{field: its to paths}`` of the routed fields of ``settings_cls``."""
    return {f.name: f.metadata["to"] for f in dataclasses.fields(settings_cls)
            if f.metadata.get("to")}


def _set_paths(obj: Any, updates: Dict[tuple, Any]) -> Any:
    """``obj`` with ``{path parts: value}`` set where it has the paths, one replace per config."""
    if not dataclasses.is_dataclass(obj):
        return obj
    names = {f.name for f in dataclasses.fields(obj)}
    here = {p[0]: v for p, v in updates.items() if len(p) == 1 and p[0] in names}
    for name in {p[0] for p in updates if len(p) > 1 and p[0] in names}:
        child = getattr(obj, name)
        if child is not None:
            here[name] = _set_paths(child, {p[1:]: v for p, v in updates.items()
                                            if len(p) > 1 and p[0] == name})
    return dataclasses.replace(obj, **here) if here else obj


def check_bounds(config: Any) -> None:
    """Raises ``ValueError`` naming the field unless every field of ``config`` declared with
    :func:`setting` is within its bounds (each entry of a tuple) and choices -- what the
    command-line flags generated from the fields check, for configs built from data."""
    for f in dataclasses.fields(config):
        m, value = f.metadata, getattr(config, f.name)
        if "help" not in m or value is None:
            continue
        if m["choices"] and value not in m["choices"]:
            raise ValueError(f"{f.name} must be one of {list(m['choices'])}, got {value!r}")
        for v in (value if isinstance(value, tuple) else (value,)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if (m["lower"] is not None and v < m["lower"]) or \
                    (m["upper"] is not None and v > m["upper"]):
                raise ValueError(f"{f.name} must be within [{m['lower']}, {m['upper']}], "
                                 f"got {value!r}")


def from_json(cls: Type[T], values: Dict[str, Any]) -> T:
    """The ``cls`` instance whose ``dataclasses.asdict`` is ``values``: nested config dataclasses
    (also ``Optional`` ones) are rebuilt, lists become the tuples they were, and fields missing
    from ``values`` take their defaults. A class's ``RENAMED_FIELDS`` ``{old: new}`` reads JSON
    written before a field was renamed, and its ``upgrade_json(values) -> values`` (if it has
    one) JSON written before its fields were regrouped. Unknown keys are refused."""
    upgrade = getattr(cls, "upgrade_json", None)
    if upgrade is not None:
        values = upgrade(values)
    renamed = getattr(cls, "RENAMED_FIELDS", {})
    values = {renamed.get(k, k): v for k, v in values.items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], v) for name, v in values.items()})


def optional_arg(tp: Any) -> Any:
    """``Optional[X]`` -> ``X`` (another ``Union`` -> ``Any``; any other type as it is)."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return tp


def _value(tp: Any, v: Any) -> Any:
    if v is None:
        return None
    tp = optional_arg(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_json(tp, v)
    if isinstance(v, list):
        args = typing.get_args(tp) if typing.get_origin(tp) is tuple else ()
        if len(args) == 2 and args[1] is Ellipsis:      # Tuple[X, ...]: each entry an X
            return tuple(_value(args[0], x) for x in v)
        return tuple(v)
    return v
