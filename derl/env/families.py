"""Which family an env id belongs to (atari, mujoco, classic) and registering its ids."""

from __future__ import annotations

import difflib
import importlib

import gymnasium as gym

from derl.errors import UsageError

# Optional packages that register ids when imported, and the extra that installs each one.
_REGISTERING_MODULES = {"ale_py": "atari", "pybullet_envs_gymnasium": "pybullet"}


def _try_import(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _looks_like(env_id: str) -> str | None:
    """The extra an id needs, guessed from its spelling alone (used when the package is missing)."""
    name = env_id.split(":")[-1]
    if env_id.startswith("ale_py:") or name.startswith("ALE/") or "NoFrameskip" in name:
        return "atari"
    if "Bullet" in name:
        return "pybullet"
    return None


def register_ids(env_id: str) -> None:
    """Import the optional package that registers `env_id`, or say which extra to install."""
    for module in _REGISTERING_MODULES:
        _try_import(module)
    if ":" in env_id:  # gymnasium's own `module:Id-v0` form imports the module itself
        module = env_id.split(":")[0]
        if not _try_import(module):
            raise UsageError(f"cannot import module {module!r} named in env id {env_id!r}")
    extra = _looks_like(env_id)
    needed = {"atari": "ale_py", "pybullet": "pybullet_envs_gymnasium"}
    if extra is not None and not _try_import(needed[extra]):
        raise UsageError(f'env id {env_id!r} needs the {extra} extra: pip install "derl[{extra}]"')


def spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, or a UsageError that suggests close matches."""
    register_ids(env_id)
    try:
        return gym.spec(env_id.split(":")[-1])  # `module:Id` was imported above
    except gym.error.Error:
        name = env_id.split(":")[-1]
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.pprint_registry()"
        )
        raise UsageError(f"unknown env id {env_id!r}{hint}") from None


def family(env_id: str) -> str:
    """'atari', 'mujoco' (MuJoCo and pybullet locomotion) or 'classic' (everything else)."""
    entry = str(spec(env_id).entry_point)
    if entry.startswith("ale_py"):
        return "atari"
    if entry.startswith(("gymnasium.envs.mujoco", "pybullet_envs_gymnasium")):
        return "mujoco"
    return "classic"
