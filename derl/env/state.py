"""Save and restore the state of running envs, so that a resumed run continues the same episodes.

Envs have no state API, so this walks each wrapper layer and keeps its attributes that are plain
data (numbers, numpy arrays, lists, tuples, dicts and deques of those), numpy RNGs, the running
statistics of gymnasium's normalising wrappers and, attribute by attribute, objects of the user's
own classes that hold such data; plus the simulator state where one can be read: ALE's
`cloneState`, MuJoCo's integration state. Functions, spaces and constructor arguments configure
an env and are left out. Anything else cannot be saved as plain data (pybullet; Box2D's world and
other objects of foreign libraries; Python's random.Random, whose state is a C field; a set): such
an env returns None, with a warning that names it, and the resumed run starts fresh episodes
there, as it does for envs in subprocesses.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
import sys
import types
from collections import deque
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.wrappers.utils import RunningMeanStd

from derl import checkpoint

_SKIP = {
    "_np_random_seed",
    "_cached_spec",
    "spec",
    "metadata",
    "render_mode",
    # constructor arguments (gymnasium's RecordConstructorArgs, EzPickle): fixed when made
    "_saved_kwargs",
    "_ezpickle_args",
    "_ezpickle_kwargs",
    # PassiveEnvChecker's copy of the first reset's result, kept for its checks only
    "_previous_data",
}


class _PlainLayout:
    """An instance of a class with no base but object: its data is its __dict__, nothing else."""


_warned: set[str] = set()


class Unrestorable(Exception):
    """A saved env state that a new env cannot take back (see _restore)."""


class _Uncaptured(Exception):
    """What cannot be saved as plain data, and where (`MyEnv.table['a']: a Foo`)."""


def _check_plain(value: Any, where: str) -> None:
    """Raise _Uncaptured unless `value` is data a checkpoint holds (checkpoint.not_plain)."""
    if (found := checkpoint.not_plain(value, where)) is not None:
        raise _Uncaptured(found)


def _own_object(value: Any) -> bool:
    """An object of a Python class whose data all lies in its __dict__ (no C fields, as
    random.Random's Mersenne state, and no __slots__): attribute by attribute, it can be
    saved and set back onto the same object of a new env."""
    cls = type(value)
    return (
        hasattr(value, "__dict__")
        and cls.__basicsize__ == _PlainLayout.__basicsize__
        and cls.__itemsize__ == 0
        and not any("__slots__" in vars(c) for c in cls.__mro__)
        # enum members are shared by every env (and their own class's); an env is gym's
        and not isinstance(value, (enum.Enum, gym.Env))
    )


def _configuration(value: Any) -> bool:
    """Functions (TransformReward's), classes, modules, spaces and specs: what an env is made
    with, not the state of an episode."""
    return (
        inspect.isroutine(value)
        or inspect.isclass(value)
        or isinstance(value, (functools.partial, types.ModuleType, gym.Space))
        or isinstance(value, gym.envs.registration.EnvSpec)
        # gymnasium's MujocoRenderer: a window or an offscreen context, drawn from the state
        or getattr(type(value), "__module__", "").startswith("gymnasium.envs.mujoco.mujoco_")
    )


def _entry(value: Any, where: str, within: frozenset[int] = frozenset()) -> dict | None:
    """How one attribute is saved; None when it is configuration. Raises _Uncaptured.
    `within`: the env's layers and the objects being saved around `value`, which a reference
    back to (a helper's `self.env`) needs not save: they are saved where they are, and the
    new env's objects refer to its own."""
    if _configuration(value) or id(value) in within:
        return None
    if isinstance(value, np.random.Generator):
        return {"rng": copy.deepcopy(value.bit_generator.state)}
    if isinstance(value, RunningMeanStd):  # NormalizeObservation, NormalizeReward
        rms = {"mean": value.mean, "var": value.var, "count": value.count}
        return {"rms": copy.deepcopy(rms)}
    if isinstance(value, np.ndarray) and value.dtype.kind in "SU":  # FrozenLake's map
        return {"text": value.tolist(), "dtype": value.dtype.str}
    if type(value) is deque:  # frame stacks; a checkpoint holds its items as a list
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return {"deque": copy.deepcopy(list(value)), "maxlen": value.maxlen}
    if _own_object(value):
        attributes = {}
        for name, item in vars(value).items():
            entry = _entry(item, f"{where}.{name}", within | {id(value)})
            if entry is not None:
                attributes[name] = entry
        return {"object": attributes, "class": type(value).__qualname__}
    _check_plain(value, where)
    # a copy: the env goes on changing its lists and arrays in place after the checkpoint
    return {"value": copy.deepcopy(value)}


def _transitions(layer: Any, name: str) -> bool:
    """gymnasium's toy-text transition tables (FrozenLake's, Taxi's: 3,000 entries, a second
    of each checkpoint and resume for 8 envs), fixed when the env is made."""
    return name == "P" and type(layer).__module__.startswith("gymnasium.envs.toy_text.")


def _layer_state(layer: Any, simulated: set[str], layers: frozenset[int]) -> tuple[dict, list[str]]:
    """The state of one layer, and what of it cannot be saved."""
    state: dict[str, dict[str, Any]] = {}
    uncaptured = []
    for name, value in vars(layer).items():
        if name in _SKIP or name in simulated or name == "env" or _transitions(layer, name):
            continue
        try:
            entry = _entry(value, f"{type(layer).__name__}.{name}", layers)
        except _Uncaptured as exc:
            uncaptured.append(str(exc))
            continue
        if entry is not None:
            state[name] = entry
    return state, uncaptured


# Positions MuJoCo derives from qpos, which mj_setState leaves as they were in the new env.
# Some rewards read them before stepping (Ant's and Reacher's body positions, Humanoid's centre
# of mass): there they hold the kinematics of the last substep's start, which a recomputation
# (mj_forward) would not give either, so they are saved as they are.
_KINEMATICS = ("xpos", "xquat", "xmat", "xipos", "ximat", "geom_xpos", "geom_xmat", "site_xpos")


def _simulator_state(env: Any) -> tuple[dict | None, set[str]]:  # an unwrapped env
    """The simulator's own state ({} when the env is pure Python; None when it cannot be read),
    and the attributes that hold the simulator (saved here, not as attributes)."""
    if hasattr(env, "ale"):
        # `_action_set`: AtariEnv's legal actions (ale_py.Action values), fixed when made
        return {"ale": env.ale.cloneState(include_rng=True).serialize()}, {"ale", "_action_set"}
    if hasattr(env, "data") and hasattr(env, "set_state"):  # gymnasium MujocoEnv
        import mujoco

        # The integration state includes the solver's warm start, so the replay is bit-exact.
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(env.model, spec))
        mujoco.mj_getState(env.model, env.data, state, spec)
        kinematics = {name: getattr(env.data, name).copy() for name in _KINEMATICS}
        return {"mujoco": state, "kinematics": kinematics}, {"model", "data"}
    if "pybullet" in type(env).__module__:
        return None, set()
    return {}, set()


def _warn_once(uncaptured: list[str], base: Any) -> None:
    """One line on stderr, once per process for the same env (checkpoints come every few
    minutes, and the same attributes would be named at each). The user's own env gets the
    attributes and what to do; a library's env (Box2D's, pybullet's) only what happens."""
    module = type(base).__module__
    if module.startswith(("gymnasium.envs.", "pybullet")):
        message = (
            f"derl: warning: {type(base).__name__} keeps its state in objects of a simulator "
            "library that a checkpoint cannot hold, so a run resumed from a checkpoint starts "
            "new episodes"
        )
    else:
        more = len(uncaptured) - 3
        shown = "; ".join(uncaptured[:3]) + (f"; {more} more" if more > 0 else "")
        message = (
            f"derl: warning: cannot save the env's state ({shown}), so a run resumed from a "
            "checkpoint starts new episodes; to continue them, keep an env's state in numbers, "
            "numpy arrays and Generators, lists, tuples and dicts of those, or objects of your "
            "own classes that hold them"
        )
    _warn(message)


def _warn(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)


def _stateful(env: gym.Env) -> gym.Env:
    """`env` without the outer layers that hold no state (`stateless = True`, e.g. derl's
    observation flattening), so that checkpoints written before such a layer existed still fit."""
    while getattr(type(env), "stateless", False):
        env = cast(gym.Wrapper, env).env
    return env


def get_env_state(env: gym.Env) -> dict | None:
    """Plain-data state of a single env and every wrapper around it; None (with a warning that
    names what cannot be saved) if not all of it can be."""
    env = _stateful(env)
    base = env.unwrapped
    simulator, simulated = _simulator_state(base)
    if simulator is None:
        _warn_once([f"{type(base).__name__}: a pybullet simulation"], base)
        return None
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(cast(gym.Wrapper, chain[-1]).env)
    ids = frozenset(id(layer) for layer in chain)
    layers, uncaptured = [], []
    for layer in chain:
        state, missing = _layer_state(layer, simulated if layer is base else set(), ids)
        layers.append(state)
        uncaptured += missing
    if uncaptured:  # e.g. LunarLander: restoring its counters onto a new world would mix them
        _warn_once(uncaptured, base)
        return None
    return {"layers": layers, "simulator": simulator}


def _restore(owner: Any, name: str, entry: dict) -> None:
    """Set one saved attribute back (copies: one state may be restored into several envs)."""
    if "rng" in entry:
        getattr(owner, name).bit_generator.state = entry["rng"]
    elif "rms" in entry:
        rms = getattr(owner, name)
        rms.mean, rms.var, rms.count = (
            copy.deepcopy(entry["rms"][k]) for k in ("mean", "var", "count")
        )
    elif "deque" in entry:
        _set(owner, name, deque(copy.deepcopy(entry["deque"]), maxlen=entry["maxlen"]))
    elif "scalar" in entry:  # checkpoints of format 1, which turned numpy scalars into numbers
        # reshape: the checkpoint stores a 0-d array as 1-d (np.ascontiguousarray)
        _set(owner, name, np.asarray(entry["scalar"]).reshape(())[()])
    elif "text" in entry:
        _set(owner, name, np.array(entry["text"], dtype=entry["dtype"]))
    elif "object" in entry:
        # Set onto the object the new env made: the checkpoint names no class to create (loading
        # one would run code the file names). One the env makes later (None until its first
        # step) cannot be set back: the runner then starts new episodes.
        target = getattr(owner, name, None)
        if type(target).__qualname__ != entry["class"]:
            raise Unrestorable(
                f"its {name} was a {entry['class']} when the checkpoint was written and is a "
                f"{type(target).__qualname__} in a new env"
            )
        for attribute, saved in entry["object"].items():
            _restore(target, attribute, saved)
    else:
        _set(owner, name, copy.deepcopy(entry["value"]))


def _set(owner: Any, name: str, value: Any) -> None:
    """setattr, also on a frozen dataclass (its fields can change only this way)."""
    try:
        setattr(owner, name, value)
    except dataclasses.FrozenInstanceError:
        object.__setattr__(owner, name, value)


def set_env_state(env: gym.Env, state: dict) -> None:
    env = layer = _stateful(env)
    for saved in state["layers"]:
        for name, entry in saved.items():
            _restore(layer, name, entry)
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
        for name, value in simulator.get("kinematics", {}).items():  # none before 2026-12-06
            getattr(base.data, name)[:] = value


def get_vector_env_state(env: gym.vector.VectorEnv) -> list | None:
    """States of the sub-envs of a SyncVectorEnv; None for async envs or uncapturable ones."""
    envs = getattr(env.unwrapped, "envs", None)
    if envs is None:  # in subprocesses (async) or in EnvPool's C++: out of derl's reach
        kind = "EnvPool's" if "envpool" in type(env.unwrapped).__module__ else "async"
        _warn(
            f"derl: warning: {kind} envs keep their state where derl cannot read it, so a run "
            "resumed from a checkpoint starts new episodes (--vectorization sync continues them)"
        )
        return None
    states = [get_env_state(e) for e in envs]
    return None if any(s is None for s in states) else states


def set_vector_env_state(env: gym.vector.VectorEnv, states: list) -> bool:
    """Restores get_vector_env_state's states; False (with a warning line) when the envs
    cannot take them back, and the caller starts new episodes."""
    sync_env = cast(gym.vector.SyncVectorEnv, env.unwrapped)
    try:
        for sub_env, state in zip(sync_env.envs, states, strict=True):
            set_env_state(sub_env, state)
    except Unrestorable as exc:
        print(
            f"derl: warning: cannot resume the env's episodes ({exc}), so the resumed run "
            "starts new ones",
            file=sys.stderr,
        )
        return False
    return True
