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
    new = EncoderConfig.make("gru", infonce_weight=1.0, similarity="cosine")
    old = dict(dataclasses.asdict(new))
    old["score"] = old.pop("similarity")
    assert from_json(EncoderConfig, old) == new


def test_an_encoder_written_as_one_flat_record_reads_as_its_kind():
    """Run directories written before each encoder kind had its own config hold one flat
    record: ``encoder`` the kind and every kind's fields (others' at their defaults)."""
    from jaxomrl.learners.encoder import KIND_CONFIGS, EncoderConfig
    for kind, own in (("gru", dict(vae_weight=1.0, belief="mean_logvar", hidden=8)),
                      ("mlp", dict(club_weight=25.0, transition_output="tanh")),
                      ("transformer", dict(hidden=32))):
        new = EncoderConfig.make(kind, focal_weight=1.0, window=7, **own)
        flat = {f.name: f.default for c in KIND_CONFIGS.values() for f in dataclasses.fields(c)}
        flat.update({k: v for k, v in dataclasses.asdict(new).items() if k not in KIND_CONFIGS},
                    encoder=kind, **own)
        assert from_json(EncoderConfig, json.loads(json.dumps(flat))) == new


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


SPECS = ["r2pgo", "r2pgo/no_hypernetwork", "bc", "om_bc", "om_sac", "focal", "corro", "borel",
         "csro", "prompt_dt", "reda", "reda/no_model"]


def _config(spec, settings):
    return algos.registry.config_of(spec, settings)


def _get(obj, path):
    for part in path.split("."):
        if obj is None or not hasattr(obj, part):
            return _MISSING
        obj = getattr(obj, part)
    return obj


_MISSING = object()


def test_routed_settings_reach_every_path_of_every_algorithm_and_default_to_the_learners():
    """A Settings field with ``to`` paths is the whole declaration of an exposed hyperparameter:
    a value given to it arrives at each of its paths in every algorithm's config that has the
    path (each path in at least one), and its default leaves the configs as the learners'
    defaults make them."""
    from jaxomrl.config import route_paths
    routes = route_paths(algos.Settings)
    assert routes, "no routed settings"
    base = dataclasses.replace(algos.Settings(), window=20, rtg_scale=20.0)
    unrouted = {spec: _config(spec, base) for spec in SPECS}
    for name, paths in routes.items():
        default = getattr(base, name)
        # a valid value unlike the default (counts: one more; other numbers are rates in [0, 1])
        if isinstance(default, bool):
            value = not default
        elif isinstance(default, int):
            value = default + 1
        else:
            value = 0.5 * default + 0.25
        assert value != default
        given = dataclasses.replace(base, **{name: value})
        reached = set()
        for spec in SPECS:
            before, after = unrouted[spec], _config(spec, given)
            for path in paths:
                if _get(before, path) is _MISSING:
                    continue
                reached.add(path)
                assert _get(before, path) == default, (spec, path)
                assert _get(after, path) == value, (spec, path)
            # nothing else changes
            restored = _config(spec, dataclasses.replace(given, **{name: default}))
            assert restored == before, spec
        assert reached == set(paths), f"{name}: {set(paths) - reached} is in no config"


def test_route_skips_paths_a_config_lacks_and_sets_nested_ones():
    from jaxomrl.config import route

    @dataclasses.dataclass(frozen=True)
    class Routed:
        rate: float = setting(0.1, "A rate.", to=("inner.rate", "maybe.rate", "nowhere.rate"))

    assert route(Outer(Inner()), Routed(0.7)) == Outer(Inner(rate=0.7))
    assert route(Outer(Inner(), maybe=Inner()), Routed(0.7)) == Outer(Inner(rate=0.7),
                                                                       maybe=Inner(rate=0.7))


def test_settings_valid_only_together_are_routed_together():
    """SAC's fixed temperature of 0 is valid only with learn_alpha off: routing sets both in
    one rebuild of the config (one at a time, the first would be refused), for every SAC+BC
    spec; a learned temperature from 0 is still refused."""
    given = dataclasses.replace(algos.Settings(), window=20, learn_alpha=False, init_alpha=0.0)
    for spec in ("r2pgo", "focal", "corro", "bc", "reda"):
        policy = _config(spec, given)
        policy = getattr(policy, "meta", policy).policy
        assert (policy.init_alpha, policy.learn_alpha) == (0.0, False), spec
    with pytest.raises(ValueError, match="init_alpha must be positive"):
        _config("r2pgo", dataclasses.replace(given, learn_alpha=True))
