"""Per-env presets over family presets, --config files over both, flags over everything."""

import dataclasses

import pytest

import derl
from derl.cli import main
from derl.errors import UsageError
from derl.factory import ALGS, get_alg
from derl.factory.presets import env_presets


def all_env_presets():
    return [(alg, env_id) for alg, table in env_presets().items() for env_id in table]


@pytest.mark.parametrize("alg, env_id", all_env_presets())
def test_every_env_preset_names_its_source_and_builds_a_valid_config(alg, env_id):
    table = env_presets()[alg][env_id]
    assert table.get("source"), (alg, env_id)
    fields = {f.name for f in dataclasses.fields(get_alg(alg).config_cls)}
    assert set(table) - {"source"} <= fields, set(table) - fields
    config = derl.make_config(alg, env_id)  # validates every value and relation
    for key, value in table.items():
        if key != "source":
            assert getattr(config, key) == value, key


def test_presets_cover_the_algorithms():
    assert set(env_presets()) <= set(ALGS)


# The envs issue 11 names, and the algorithms whose action space fits each.
DISCRETE = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"]
CONTINUOUS_CLASSIC = ["MountainCarContinuous-v0", "Pendulum-v1", "LunarLanderContinuous-v3"]
MUJOCO = [
    f"{name}-v5"
    for name in (
        "HalfCheetah Hopper Walker2d Ant Humanoid Swimmer InvertedPendulum "
        "InvertedDoublePendulum Reacher"
    ).split()
]
# presets.toml's "Skipped" block says why each of these has no table: no published recipe.
SKIPPED = {
    ("a2c", env) for env in ("InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5")
} | {("sac", env) for env in ("InvertedDoublePendulum-v5", "Reacher-v5")}


def test_every_named_env_has_a_preset_for_every_algorithm_that_fits():
    wanted = [(alg, env) for alg in ("ppo", "a2c", "dqn") for env in DISCRETE]
    wanted += [
        (alg, env) for alg in ("ppo", "a2c", "sac", "td3") for env in CONTINUOUS_CLASSIC + MUJOCO
    ]
    missing = [pair for pair in wanted if pair not in SKIPPED and pair not in all_env_presets()]
    assert not missing, missing


def test_an_id_without_a_table_takes_the_same_env_at_another_version():
    from derl.factory.presets import env_preset, preset_id

    assert preset_id("ppo", "HalfCheetah-v4") == "HalfCheetah-v5"
    assert preset_id("ppo", "CartPole-v0") == "CartPole-v1"
    assert preset_id("ppo", "gymnasium.envs:CartPole-v1") == "CartPole-v1"
    assert preset_id("ppo", "CarRacing-v3") is None
    assert preset_id("ppo", "Cart-v1") is None  # the name must match, not only its start
    values, source = env_preset("ppo", "HalfCheetah-v4")
    assert values == env_preset("ppo", "HalfCheetah-v5")[0]
    assert source.startswith("the HalfCheetah-v5 preset, same env at another version")
    config = derl.make_config("ppo", "HalfCheetah-v4")
    assert config.num_runner_steps == env_presets()["ppo"]["HalfCheetah-v5"]["num_runner_steps"]


def test_env_kwargs_that_make_another_registered_env_pick_its_preset(tmp_path, capsys):
    # gymnasium registers FrozenLake8x8-v1 as FrozenLake-v1 with map_name 8x8, and
    # LunarLanderContinuous-v3 as LunarLander-v3 with continuous=True
    small = env_presets()["ppo"]["FrozenLake-v1"]["num_train_steps"]
    big = derl.make_config("ppo", "FrozenLake8x8-v1").num_train_steps
    assert small != big
    config = derl.make_config("ppo", "FrozenLake8x8-v1", env_kwargs={"map_name": "4x4"})
    assert config.num_train_steps == small
    config = derl.make_config("ppo", "FrozenLake-v1", env_kwargs={"map_name": "8x8"})
    assert config.num_train_steps == big
    continuous = env_presets()["sac"]["LunarLanderContinuous-v3"]
    config = derl.make_config("sac", "LunarLander-v3", env_kwargs={"continuous": True})
    assert (config.num_train_steps, config.buffer_size) == (
        continuous["num_train_steps"],
        continuous["buffer_size"],
    )
    # kwargs the id has already, or that make no registered env, leave the id's own preset
    config = derl.make_config("ppo", "FrozenLake-v1", env_kwargs={"map_name": "4x4"})
    assert config.num_train_steps == small
    own = env_presets()["ppo"]["LunarLander-v3"]["num_runner_steps"]
    odd = {"continuous": False, "gravity": -5.0}
    assert derl.make_config("ppo", "LunarLander-v3", env_kwargs=odd).num_runner_steps == own
    # a config file's env_kwargs pick it too, and -h says which env's preset it is
    path = tmp_path / "lake.yaml"
    path.write_text("env_kwargs: {map_name: 4x4}\n")
    config = derl.make_config("ppo", "FrozenLake8x8-v1", config_file=str(path))
    assert config.num_train_steps == small
    argv = ["sac", "--env-id", "LunarLander-v3", "--env-kwargs", '{"continuous": true}', "-h"]
    assert main(argv) == 0
    text = "".join(capsys.readouterr().out.split())
    assert 'LunarLander-v3withenv_kwargs{"continuous":true}isLunarLanderContinuous-v3' in text


def test_layers_stack_family_env_file_flags(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("num_envs: 3\nlr: 0.002\n")
    config = derl.make_config("ppo", "Acrobot-v1", config_file=str(path), lr=0.005)
    assert config.num_envs == 3  # the file is over the presets
    assert config.lr == 0.005  # the flags are over the file
    toml = tmp_path / "mine.toml"
    toml.write_text("num-envs = 5\n")
    assert derl.make_config("ppo", "Acrobot-v1", config_file=str(toml)).num_envs == 5


def test_help_says_where_each_default_comes_from(capsys, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("num_epochs = 7\n")
    assert main(["ppo", "--env-id", "CartPole-v1", "--config", str(path), "-h"]) == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    assert f"(default:7;fromthe--config{path})" in text
    assert "fromtheCartPole-v1preset(rl-baselines3-zoo" in text


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        (
            "num_envs: 3\nno_such_thing: 1\n",
            ".yaml",
            "unknown hyperparameter(s) for ppo: no_such_thing",
        ),
        ("num_envs = [\n", ".toml", "is not valid TOML"),
        ("- 1\n- 2\n", ".yml", "must be a flat mapping"),
        ("num_envs: 3\n", ".json", "use a .yaml, .yml or .toml file"),
        ("lr: -1\n", ".yaml", "--lr must be > 0"),
        # YAML 1.1 reads on/off/yes/no as booleans, an empty value as null
        ("num_envs: yes\n", ".yaml", "num_envs must be int, got True"),
        ("lr: on\n", ".yaml", "lr must be float, got True"),
        ("seed:\n", ".yaml", "seed must be int, got None"),
        ("device: on\n", ".yaml", "device must be str, got True"),
        ("lr: .inf\n", ".yaml", "--lr must be a finite number, got inf"),
        ("lr = true\n", ".toml", "lr must be float, got True"),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(content, suffix, message, tmp_path, capsys):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    logdir = tmp_path / "never"
    argv = ["ppo", "--env-id", "CartPole-v1", "--config", str(path), "--logdir", str(logdir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not logdir.exists()


def test_a_missing_config_file_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="cannot read it"):
        derl.make_config("ppo", "CartPole-v1", config_file=str(tmp_path / "nope.yaml"))


def test_config_file_values_take_the_fields_types(tmp_path):
    # YAML 1.1 reads 5e-4 as a string; a width as an int; env_kwargs may be a mapping.
    path = tmp_path / "mine.yaml"
    path.write_text("lr: 5e-4\nhidden: 32\nnum_train_steps: 2e4\nenv_kwargs: {x: 1}\n")
    config = derl.make_config("ppo", "CartPole-v1", config_file=str(path))
    assert (config.lr, config.hidden, config.num_train_steps) == (5e-4, "32", 20_000)
    assert config.env_kwargs == {"x": 1}
    for bad in ("lr: fast", "normalize: 3", "num_envs: 2.5", "gamma: [1]"):
        path.write_text(bad + "\n")
        with pytest.raises(derl.UsageError, match=bad.split(":")[0] + " must be"):
            derl.make_config("ppo", "CartPole-v1", config_file=str(path))
