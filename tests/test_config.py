"""Config dataclasses round-trip through their JSON form generically; a setting declared once
(``config.setting``) is its command-line flag, default, help text and validator."""
import dataclasses
import json
import os
import subprocess
import sys
from typing import Optional, Tuple

import pytest
from absl import flags

from jaxomrl import algos
from jaxomrl.config import from_json, setting
from jaxomrl.experiment import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_json_written_before_a_field_was_renamed_still_reads():
    from jaxomrl.learners.encoder import EncoderConfig
    new = EncoderConfig(infonce_weight=1.0, similarity="cosine")
    old = dict(dataclasses.asdict(new))
    old["score"] = old.pop("similarity")
    assert from_json(EncoderConfig, old) == new


@pytest.mark.parametrize("spec", ["r2pgo", "bc", "focal", "reda", "reda/no_model"])
def test_every_algorithm_config_round_trips(spec):
    settings = dataclasses.replace(algos.Settings(), window=20)
    config = (algos.registry.make_reda_config(spec, settings) if spec.startswith("reda")
              else algos.make_config(spec, settings))
    blob = json.loads(json.dumps(dataclasses.asdict(config)))
    assert from_json(type(config), blob) == config


@dataclasses.dataclass(frozen=True)
class Knobs:
    """A config as a user would add settings to one: each field is the whole declaration."""
    sizes: Tuple[int, ...] = setting((8, 8), "Hidden sizes.")
    steps: int = setting(10, "Steps.", lower=1)
    rate: float = setting(0.5, "A rate.", lower=0.0, upper=1.0)
    mode: str = setting("a", "A mode.", choices=("a", "b"))
    on: bool = setting(True, "A switch.")
    derived: Optional[int] = setting(None, "Derived unless given.", lower=1)
    internal: int = 3                                     # not a setting: no flag


def _parse(argv):
    fv = flags.FlagValues()
    cli.define_flags(Knobs, fv)
    fv(["prog", *argv])
    return fv


def test_flags_are_generated_from_settings_with_their_defaults_types_and_bounds():
    fv = _parse([])
    assert cli.from_flags(Knobs, fv) == Knobs()
    assert "internal" not in fv and fv["steps"].help == "Steps."
    got = cli.from_flags(Knobs, _parse(["--sizes=4,2", "--steps=3", "--rate=1", "--mode=b",
                                        "--noon", "--derived=7"]), internal=9)
    assert got == Knobs(sizes=(4, 2), steps=3, rate=1.0, mode="b", on=False, derived=7,
                        internal=9)
    for bad in ("--steps=0", "--rate=1.5", "--rate=nan", "--mode=c", "--sizes=4,x",
                "--derived=0"):
        with pytest.raises(flags.IllegalFlagValueError):
            _parse([bad])


def test_every_settings_field_is_a_flag_of_train_py_with_its_default():
    """train.py defines no setting by hand: a fresh set of flags generated from Settings gives
    Settings() back, and the script refuses the renamed flags naming their new names."""
    fv = flags.FlagValues()
    cli.define_flags(algos.Settings, fv)
    fv(["prog"])
    assert cli.from_flags(algos.Settings, fv) == algos.Settings()
    assert {f.name for f in dataclasses.fields(algos.Settings)} <= set(fv)
    for old, new in (("alpha", "kernel_alpha"), ("checkpoint_every", "checkpoint_every_chunks")):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train.py"),
                               f"--{old}=1", "--family=point_robot_sparse", "--data=x",
                               "--workdir=y"], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode != 0 and f"--{old} was renamed --{new}" in proc.stderr
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "collect.py"),
                           "--checkpoint_every=8", "--out_dir=z"], capture_output=True,
                          text=True, cwd=ROOT)
    assert "--checkpoint_every was renamed --checkpoint_every_steps" in proc.stderr
