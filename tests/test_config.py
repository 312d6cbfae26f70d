"""Configs: every declared bound is enforced, defaults changed in a subclass keep their help."""

import dataclasses

import pytest

import derl
from derl.errors import UsageError
from derl.factory import ALGS
from derl.factory.config import metadata

ENV = {"ppo": "CartPole-v1", "a2c": "CartPole-v1", "dqn": "CartPole-v1"}
ENV.update({"rainbow": "CartPole-v1", "sac": "Pendulum-v1", "td3": "Pendulum-v1"})


def violations(cls):
    """(field, a value outside its declared bounds) for every bounded field of `cls`."""
    for f in dataclasses.fields(cls):
        meta = metadata(cls, f.name)
        if "at_least" in meta:
            yield f.name, meta["at_least"] - 1
        if "above" in meta:
            yield f.name, meta["above"]
        if "at_most" in meta:
            yield f.name, meta["at_most"] + 1
        if "below" in meta:
            yield f.name, meta["below"]
        if "choices" in meta or meta.get("device"):
            yield f.name, "nonsense"


CASES = [
    (alg, name, value) for alg, spec in ALGS.items() for name, value in violations(spec.config_cls)
]


@pytest.mark.parametrize("alg, name, value", CASES)
def test_every_declared_bound_is_enforced(alg, name, value):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(UsageError, match=flag):
        derl.make_config(alg, ENV[alg], **{name: value})


def test_every_field_has_help_and_the_presets_are_valid():
    for alg, spec in ALGS.items():
        for f in dataclasses.fields(spec.config_cls):
            assert metadata(spec.config_cls, f.name).get("help"), (alg, f.name)
        derl.make_config(alg, ENV[alg])  # validates the preset


def test_rainbow_turns_every_part_on():
    config = derl.make_config("rainbow", "BreakoutNoFrameskip-v4")
    assert config.noisy and config.atoms == 51 and config.double and config.dueling
    assert config.prioritized and config.nstep == 3 and config.final_eps == 0
