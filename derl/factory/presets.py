"""Where a config's values come from, in layers, each over the one before:

    config defaults <- family preset <- env preset <- --config FILE <- flags

The family presets (atari, mujoco, classic) live beside each algorithm's config in
`derl/factory/<alg>.py`; the env presets, keyed by algorithm and env id as in rl-baselines3-zoo,
in `derl/factory/presets.toml`, each table naming its source. A config file is a flat YAML or
TOML mapping of hyperparameter names (as in config.json) to values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

from derl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PRESETS = Path(__file__).with_name("presets.toml")


@functools.cache
def env_presets() -> dict[str, dict[str, dict]]:
    """{alg: {env id: {hyperparameter: value, "source": text}}} from presets.toml."""
    with open(ENV_PRESETS, "rb") as f:
        return tomllib.load(f)


def preset_id(alg: str, env_id: str) -> str | None:
    """The id whose env preset `alg` uses on `env_id`: the id itself, else the same env at the
    nearest other version that has one (HalfCheetah-v4 takes HalfCheetah-v5's, as the zoo's v3
    recipes serve v5 here: the versions share the task and differ in details), else None."""
    table = env_presets().get(alg, {})
    name = env_id.split(":")[-1]
    if name in table:
        return name
    match = re.fullmatch(r"(.+)-v(\d+)", name)
    if match is None:
        return None
    base, version = match.group(1), int(match.group(2))
    others = [
        (abs(int(m.group(2)) - version), -int(m.group(2)), other)
        for other in table
        if (m := re.fullmatch(r"(.+)-v(\d+)", other)) and m.group(1) == base
    ]
    return min(others)[2] if others else None  # ties: the newer version


def registered_as(env_id: str, env_kwargs: dict | None) -> str:
    """The id gymnasium registers for what `env_id` makes with `env_kwargs`, where that is
    another id: FrozenLake-v1 with {"map_name": "8x8"} is FrozenLake8x8-v1, LunarLander-v3 with
    {"continuous": true} is LunarLanderContinuous-v3. Else `env_id` itself."""
    name = env_id.split(":")[-1]
    if not env_kwargs or not isinstance(env_kwargs, dict):  # a wrong type is refused later
        return name
    import gymnasium as gym

    try:
        spec = gym.spec(name)
    except Exception:  # not registered (an env_fn's name) or a broken id: the id alone decides
        return name
    made = {**spec.kwargs, **env_kwargs}
    for other in [spec, *gym.registry.values()]:  # the id itself first: kwargs it has already
        try:
            if other.entry_point == spec.entry_point and other.kwargs == made:
                return other.id if other.id != spec.id else name
        except Exception:  # kwargs that cannot be compared (arrays): not this one
            continue
    return name


def env_preset(alg: str, env_id: str, env_kwargs: dict | None = None) -> tuple[dict, str | None]:
    """(values, source) of the env preset of `alg` on `env_id` made with `env_kwargs` (the env
    they make where gymnasium registers it under another id, `registered_as`; or the same env
    at another version, `preset_id`); ({}, None) when there is none."""
    name = env_id.split(":")[-1]
    target = registered_as(env_id, env_kwargs)
    found = preset_id(alg, target)
    if found is None:
        return {}, None
    table = env_presets()[alg][found]
    values = {k: v for k, v in table.items() if k != "source"}
    source = table.get("source", "env preset")
    if found != target:
        source = f"the {found} preset, same env at another version: {source}"
    if target != name:
        kwargs = json.dumps(env_kwargs, default=str)
        source = f"{name} with env_kwargs {kwargs} is {target}: {source}"
    return values, source


def read_config_file(path: str | Path) -> dict:
    """A flat mapping from a .yaml/.yml or .toml file; anything else is a one-line UsageError."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml", ".toml"):
        raise UsageError(f"--config {path}: use a .yaml, .yml or .toml file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # each parser has its own error class; all mean "not valid"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"--config {path} is not valid {path.suffix[1:].upper()}: {first}"
        ) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must be a flat mapping of hyperparameter: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def typed(config_cls: type, values: dict, where: str) -> dict:
    """`values` of a config file as the fields' types, or a one-line UsageError. YAML 1.1 reads
    `5e-4` as a string and TOML `lr = 1` as an int: both are fine numbers for a float field."""
    hints = typing.get_type_hints(config_cls)
    out = {}
    for name, value in values.items():
        optional = type(None) in typing.get_args(hints[name])
        kind = next((t for t in typing.get_args(hints[name]) if t is not type(None)), hints[name])
        try:
            if value is None and not optional:  # YAML `seed:` or `seed: null`
                raise ValueError
            if kind is not dict and isinstance(value, dict | list):
                raise ValueError
            # YAML 1.1 reads on/off/yes/no as booleans: never a number or a name
            if (kind is bool) != isinstance(value, bool) and value is not None:
                raise ValueError
            if value is None:
                pass
            elif kind is float:
                value = float(value)
            elif kind is int:
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                value = int(number)
            elif kind is str and isinstance(value, int | float):
                value = str(value)  # hidden: 256
            elif kind is dict and not isinstance(value, dict):
                raise ValueError
        except (ValueError, TypeError):
            raise UsageError(
                f"{where}: {name} must be {getattr(kind, '__name__', kind)}, got {value!r}"
            ) from None
        out[name] = value
    return out


def check_keys(config_cls: type, values: dict, where: str) -> None:
    """Unknown hyperparameter names in `values` are a one-line UsageError naming `where`."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        alg = config_cls.__name__.removesuffix("Config").lower()
        raise UsageError(
            f"{where}: unknown hyperparameter(s) for {alg}: {', '.join(unknown)}; "
            f"see `derl {alg} -h`"
        )


def layers(
    alg: str,
    config_cls: type,
    family_presets: dict,
    family: str,
    env_id: str,
    config_file=None,
    env_kwargs: dict | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(source, values) of every layer under the flags, lowest first. The env preset is that of
    the env `env_id` makes with `env_kwargs` (the flag's, else the config file's)."""
    from_file = None
    if config_file is not None:
        from_file = read_config_file(config_file)
        check_keys(config_cls, from_file, f"--config {config_file}")
        from_file = typed(config_cls, from_file, f"--config {config_file}")
        if from_file.get("env_id", env_id) != env_id:  # it picks the presets the file goes over
            raise UsageError(
                f"--config {config_file} names env_id {from_file['env_id']}, but the run's is "
                f"{env_id}; pass --env-id {from_file['env_id']}, or take env_id out of the file"
            )
        if env_kwargs is None:
            env_kwargs = from_file.get("env_kwargs")
    found = [(f"{family} preset", family_presets.get(family, {}))]
    values, source = env_preset(alg, env_id, env_kwargs)
    if source is not None:
        found.append((f"{env_id} preset ({source})", values))
    if from_file is not None:
        found.append((f"--config {config_file}", from_file))
    return found


def resolve(layered: list[tuple[str, dict]]) -> tuple[dict, dict[str, str]]:
    """The values of stacked layers, and for each the layer it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layered:
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    return values, sources
