"""Config dataclasses to and from JSON, generically (nested configs, Optional ones, tuples).

``dataclasses.asdict(config)`` is the JSON form (a run's ``run.json``); :func:`from_json` is its
inverse for any frozen config dataclass, so a new field needs no deserialiser of its own.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Type, TypeVar

T = TypeVar("T")


def from_json(cls: Type[T], values: Dict[str, Any]) -> T:
    """The ``cls`` instance whose ``dataclasses.asdict`` is ``values``: nested config dataclasses
    (also ``Optional`` ones) are rebuilt, lists become the tuples they were, and fields missing
    from ``values`` take their defaults. Unknown keys are refused."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], v) for name, v in values.items()})


def _value(tp: Any, v: Any) -> Any:
    if v is None:
        return None
    if typing.get_origin(tp) is typing.Union:              # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else Any
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_json(tp, v)
    if isinstance(v, list):
        return tuple(v)
    return v
