"""Save and restore the state of running envs, so that a resumed run continues the same episodes.

Envs have no state API, so this walks each wrapper layer and keeps what is plain data (numbers,
arrays, RNG states, deques of frames), plus the simulator state where one can be read: ALE's
`cloneState`, MuJoCo's integration state, the running statistics of gymnasium's normalising
wrappers. An env whose state cannot be captured (pybullet; Box2D and other envs that keep their
state in objects of a foreign library; envs in subprocesses) returns None and the resumed run
starts fresh episodes there instead.
"""

from __future__ import annotations

from collections import deque
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.wrappers.utils import RunningMeanStd

_SKIP = {"_np_random_seed", "_cached_spec", "spec", "metadata", "render_mode"}


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None), np.ndarray, np.generic)):
        # numbers only: torch cannot hold object or string arrays (FrozenLake's map is bytes)
        return not isinstance(value, np.ndarray) or value.dtype.kind in "biufc"
    if isinstance(value, (list, tuple, deque)):
        return all(_plain(v) for v in value)
    return False


def _foreign(value: Any) -> bool:
    """An object of neither Python, numpy nor gymnasium (Box2D's world and bodies, a physics
    client), other than a function: state derl cannot save as plain data."""
    root = type(value).__module__.split(".")[0]
    return root not in ("builtins", "numpy", "gymnasium", "collections") and not callable(value)


def _layer_state(layer: Any) -> dict:
    state: dict[str, dict[str, Any]] = {}
    for name, value in vars(layer).items():
        if name in _SKIP or name == "env":
            continue
        if isinstance(value, np.random.Generator):
            state[name] = {"rng": value.bit_generator.state}
        elif isinstance(value, RunningMeanStd):  # NormalizeObservation, NormalizeReward
            state[name] = {"rms": {"mean": value.mean, "var": value.var, "count": value.count}}
        elif _plain(value):
            state[name] = (
                {"deque": list(value), "maxlen": value.maxlen}
                if isinstance(value, deque)
                else {"value": value}
            )
    return state


def _simulator_state(env: Any) -> dict | None:  # an unwrapped env: AtariEnv, MujocoEnv, ...
    """The simulator's own state, {} when the env is pure Python, None when it cannot be read."""
    if hasattr(env, "ale"):
        return {"ale": env.ale.cloneState(include_rng=True).serialize()}
    if hasattr(env, "data") and hasattr(env, "set_state"):  # gymnasium MujocoEnv
        import mujoco

        # The integration state includes the solver's warm start, so the replay is bit-exact.
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(env.model, spec))
        mujoco.mj_getState(env.model, env.data, state, spec)
        return {"mujoco": state}
    if "pybullet" in type(env).__module__:
        return None
    if any(_foreign(value) for name, value in vars(env).items() if name not in _SKIP):
        return None  # e.g. LunarLander: restoring its counters onto a new world would mix them
    return {}


def _stateful(env: gym.Env) -> gym.Env:
    """`env` without the outer layers that hold no state (`stateless = True`, e.g. derl's
    observation flattening), so that checkpoints written before such a layer existed still fit."""
    while getattr(type(env), "stateless", False):
        env = cast(gym.Wrapper, env).env
    return env


def get_env_state(env: gym.Env) -> dict | None:
    """Plain-data state of a single env and every wrapper around it, or None if not capturable."""
    env = _stateful(env)
    simulator = _simulator_state(env.unwrapped)
    if simulator is None:
        return None
    layers, layer = [], env
    while True:
        layers.append(_layer_state(layer))
        if not isinstance(layer, gym.Wrapper):
            break
        layer = layer.env
    return {"layers": layers, "simulator": simulator}


def set_env_state(env: gym.Env, state: dict) -> None:
    env = layer = _stateful(env)
    for saved in state["layers"]:
        for name, entry in saved.items():
            if "rng" in entry:
                getattr(layer, name).bit_generator.state = entry["rng"]
            elif "rms" in entry:
                rms = getattr(layer, name)
                rms.mean, rms.var, rms.count = (entry["rms"][k] for k in ("mean", "var", "count"))
            elif "deque" in entry:
                setattr(layer, name, deque(entry["deque"], maxlen=entry["maxlen"]))
            else:
                setattr(layer, name, entry["value"])
        layer = getattr(layer, "env", layer)
    simulator = state["simulator"]
    base: Any = env.unwrapped  # AtariEnv (ale), MujocoEnv (model, data), ...
    if "ale" in simulator:
        import ale_py

        base.ale.restoreState(ale_py.ALEState(simulator["ale"]))
    elif "mujoco" in simulator:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(base.model, base.data, simulator["mujoco"], spec)


def get_vector_env_state(env: gym.vector.VectorEnv) -> list | None:
    """States of the sub-envs of a SyncVectorEnv; None for async envs or uncapturable ones."""
    envs = getattr(env.unwrapped, "envs", None)
    if envs is None:
        return None
    states = [get_env_state(e) for e in envs]
    return None if any(s is None for s in states) else states


def set_vector_env_state(env: gym.vector.VectorEnv, states: list) -> None:
    sync_env = cast(gym.vector.SyncVectorEnv, env.unwrapped)  # get_vector_env_state's states
    for sub_env, state in zip(sync_env.envs, states, strict=True):
        set_env_state(sub_env, state)
