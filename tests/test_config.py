"""Config dataclasses round-trip through their JSON form generically."""
import dataclasses
import json
from typing import Optional, Tuple

import pytest

from jaxomrl import algos
from jaxomrl.config import from_json


@dataclasses.dataclass(frozen=True)
class Inner:
    sizes: Tuple[int, ...] = (1, 2)
    rate: float = 0.1


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner
    maybe: Optional[Inner] = None
    name: str = "x"
    steps: int = 3


def test_nested_optional_and_tuple_fields_round_trip_through_json():
    for config in (Outer(Inner()), Outer(Inner((4,), 0.5), maybe=Inner((), 2.0), name="y")):
        assert from_json(Outer, json.loads(json.dumps(dataclasses.asdict(config)))) == config
    # a missing field takes its default; an unknown one is refused
    assert from_json(Outer, {"inner": {"rate": 0.3}}) == Outer(Inner(rate=0.3))
    with pytest.raises(ValueError, match="no field"):
        from_json(Outer, {"inner": {}, "typo": 1})


@pytest.mark.parametrize("spec", ["r2pgo", "bc", "focal", "reda", "reda/no_model"])
def test_every_algorithm_config_round_trips(spec):
    settings = algos.Settings()
    config = (algos.registry.make_reda_config(spec, settings) if spec.startswith("reda")
              else algos.make_config(spec, settings))
    blob = json.loads(json.dumps(dataclasses.asdict(config)))
    assert from_json(type(config), blob) == config
