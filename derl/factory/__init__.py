"""The factory: one typed config per algorithm, presets by env family, an algorithm registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from derl import checkpoint
from derl.env import families
from derl.errors import UsageError
from derl.factory import a2c, dqn, ppo, presets, sac, td3
from derl.factory.a2c import A2CConfig, make_a2c
from derl.factory.config import (
    FAMILIES,
    Config,
    build_config,
    hp,
    make_actor_critic_policy,
    plain_values,
)
from derl.factory.dqn import DQNConfig, RainbowConfig, check_discrete, make_dqn, make_dqn_policy
from derl.factory.ppo import PPOConfig, make_ppo
from derl.factory.sac import SACConfig, check_box, make_sac, make_sac_policy
from derl.factory.td3 import TD3Config, make_td3, make_td3_policy


@dataclass(frozen=True)
class AlgSpec:
    """What the CLI and `train` need to know about one algorithm."""

    name: str
    config_cls: type[Config]
    presets: dict[str, dict]
    make: Callable
    summary: str
    make_policy: Callable = make_actor_critic_policy  # (config, obs space, act space): to load
    # (action space, name) -> the space, or a UsageError when the algorithm cannot act in it;
    # None: any space the policy's heads take (PPO and A2C).
    check_actions: Callable | None = None


ALGS: dict[str, AlgSpec] = {
    "ppo": AlgSpec("ppo", PPOConfig, ppo.PRESETS, make_ppo, "Proximal Policy Optimization"),
    "a2c": AlgSpec("a2c", A2CConfig, a2c.PRESETS, make_a2c, "Advantage Actor-Critic"),
    "dqn": AlgSpec(
        "dqn",
        DQNConfig,
        dqn.PRESETS,
        make_dqn,
        "Deep Q-Network (Atari: 3-step double dueling with prioritized replay)",
        make_dqn_policy,
        check_discrete,
    ),
    "rainbow": AlgSpec(
        "rainbow",
        RainbowConfig,
        dqn.RAINBOW_PRESETS,
        make_dqn,
        "DQN with all six Rainbow parts",
        make_dqn_policy,
        check_discrete,
    ),
    "sac": AlgSpec(
        "sac", SACConfig, sac.PRESETS, make_sac, "Soft Actor-Critic", make_sac_policy, check_box
    ),
    "td3": AlgSpec(
        "td3", TD3Config, td3.PRESETS, make_td3, "Twin Delayed DDPG", make_td3_policy, check_box
    ),
}


def get_alg(name: str) -> AlgSpec:
    if name not in ALGS:
        raise UsageError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGS)}")
    return ALGS[name]


def spec_of(config: Config) -> AlgSpec:
    return next(spec for spec in ALGS.values() if type(config) is spec.config_cls)


def preset_values(
    alg: str,
    env_id: str,
    config_file: str | None = None,
    family: str | None = None,
    env_kwargs: dict | None = None,
) -> tuple[dict, dict[str, str]]:
    """The values the layers under the flags give `alg` on `env_id` (family preset, env preset,
    config file), and for each the layer it came from. `family` names the family preset of an
    env gymnasium does not know (one made by derl.train's env_fn); else the id decides.
    `env_kwargs` that make another registered env (FrozenLake-v1 with map_name 8x8 is
    FrozenLake8x8-v1) pick that env's preset."""
    spec = get_alg(alg)
    if family is not None and family not in FAMILIES:
        raise UsageError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    fam = family or families.family(env_id)
    layered = presets.layers(
        alg, spec.config_cls, spec.presets, fam, env_id, config_file, env_kwargs
    )
    for source, values in layered:
        presets.check_keys(spec.config_cls, values, source)
    return presets.resolve(layered)


def make_config(
    alg: str,
    env_id: str,
    config_file: str | None = None,
    family: str | None = None,
    **overrides,
) -> Config:
    """The config of `alg` for `env_id`: family preset <- env preset <- config file <- overrides.

    For an env of your own that gymnasium does not know (trained with derl.train's env_fn),
    `env_id` is only its name and `family` ("classic", "mujoco" or "atari") picks the preset.
    """
    values, _ = preset_values(alg, env_id, config_file, family, overrides.get("env_kwargs"))
    return build_config(get_alg(alg).config_cls, values, env_id=env_id, **overrides)


def config_from_dict(data: dict, source: str = "the config") -> Config:
    """The config saved in config.json or a checkpoint (extra keys such as `alg` are ignored).

    A damaged one (no or an unknown algorithm, values of the wrong type) is a UsageError
    naming `source`.
    """
    if not isinstance(data, dict) or "alg" not in data:
        raise UsageError(f'{source} names no algorithm (no "alg" key); it is not a derl config')
    try:
        cls = get_alg(data["alg"]).config_cls
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        upgrade_hidden(data["alg"], values)
        config = cls(**plain_values(cls, values))
        config.validate()
    except (TypeError, ValueError) as exc:  # UsageError is a ValueError
        raise UsageError(f"{source} is damaged: {exc}") from None
    return config


def upgrade_hidden(alg: str, values: dict) -> None:
    """`hidden` as configs before 0.3 wrote it, as it is now (the same networks)."""
    hidden, env_id = values.get("hidden"), values.get("env_id", "")
    try:
        image = families.family(env_id) == "atari"
    except UsageError:
        image = False
    if alg in ("sac", "td3") and isinstance(hidden, int):  # 0.2: one width, two layers
        values["hidden"] = f"{hidden},{hidden}"
    elif alg in ("dqn", "rainbow") and isinstance(hidden, int):  # a width; 0: the default
        width = hidden or (512 if image else 256)
        values["hidden"] = str(width) if image else f"{width},{width}"
    elif alg in ("ppo", "a2c") and image and "model" not in values:
        values["hidden"] = ""  # the Nature CNN's heads had no hidden layers, whatever it said


def checkpoint_config(state: dict, path: Path) -> Config:
    """The config a run's checkpoint (or best.pt) was trained with."""
    if not ("alg" in state and isinstance(state.get("config"), dict) and "state" in state):
        raise UsageError(f"{path} is not a checkpoint of a derl run")
    return config_from_dict({"alg": state["alg"], **state["config"]}, str(path))


def read_config(logdir: Path) -> Config:
    """The config.json of a run."""
    path = logdir / "config.json"
    return config_from_dict(checkpoint.read_json(path), str(path))


__all__ = [
    "SACConfig",
    "make_sac",
    "TD3Config",
    "make_td3",
    "DQNConfig",
    "RainbowConfig",
    "make_dqn",
    "ALGS",
    "AlgSpec",
    "Config",
    "FAMILIES",
    "PPOConfig",
    "A2CConfig",
    "make_config",
    "config_from_dict",
    "checkpoint_config",
    "read_config",
    "make_ppo",
    "make_a2c",
    "get_alg",
    "spec_of",
    "hp",
]
