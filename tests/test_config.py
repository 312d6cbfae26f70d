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


def small_encoder(observation_space, action_space, config):
    return None


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(hidden=64), "hidden must be a string such as '64,64', got int 64"),
        (
            dict(model=small_encoder),
            "model must be a 'module:function' string, got function small_encoder; or pass the "
            "function itself: derl.train(config, model=...)",
        ),
        (dict(lr="3e-4"), "lr must be a number such as 0.00025, got str '3e-4'"),
        (dict(normalize=1), "normalize must be True or False, got int 1"),
        (dict(num_envs=2.5), "num_envs must be an int such as 8, got float 2.5"),
        (dict(seed=True), "seed must be an int such as 0, got bool True"),
        (dict(logdir=3), "logdir must be a string or None, got int 3"),
        (dict(activation=None), "activation must be one of the strings 'tanh', "),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_the_field(values, message):
    with pytest.raises(UsageError) as raised:
        derl.make_config("ppo", "CartPole-v1", **values)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("alg", ALGS)
def test_every_field_checks_its_type(alg):
    for f in dataclasses.fields(ALGS[alg].config_cls):
        if f.name == "env_id":  # make_config's own argument
            continue
        with pytest.raises(UsageError, match=f"^{f.name} must be "):
            derl.make_config(alg, ENV[alg], **{f.name: object()})


def test_numbers_of_the_right_kind_are_accepted():
    config = derl.make_config("ppo", "CartPole-v1", lr=1, gamma=1, logdir=None, seed=3)
    assert config.lr == 1 and config.gamma == 1 and config.logdir is None


def test_whole_floats_and_paths_are_taken_where_nothing_is_lost(tmp_path):
    """`num_train_steps=1e6` and `logdir=Path(...)` are Python idioms derl took before it
    checked types, and configs it wrote then hold `2048.0`: they must still load and resume."""
    import pathlib

    from derl.factory import config_from_dict

    config = derl.make_config(
        "ppo", "CartPole-v1", num_train_steps=1e6, logdir=pathlib.Path(tmp_path)
    )
    assert config.num_train_steps == 1_000_000 and type(config.num_train_steps) is int
    assert config.logdir == str(tmp_path)
    saved = {"alg": "ppo", **dataclasses.asdict(config), "num_train_steps": 2048.0}
    assert config_from_dict(saved).num_train_steps == 2048
    with pytest.raises(UsageError, match="num_train_steps must be an int"):
        derl.make_config("ppo", "CartPole-v1", num_train_steps=1.5)
