"""`derl.env.make`: one entry point from an env id to a vector env ready for training."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

from derl.custom import call_user_function, takes
from derl.env.atari import make_atari
from derl.env.families import family, register_ids
from derl.env.normalize import VecNormalize
from derl.errors import UsageError

VECTORIZATIONS = ("sync", "async", "envpool")


class FlatObservations(gym.ObservationWrapper):
    """Dict, Tuple and discrete observations as one flat vector (gymnasium.spaces.flatten: one-hot
    for discrete parts); a Box passes unchanged. derl's runners and replay buffers carry one array
    per step; the network splits the vector back into its parts (derl.models.unflatten).
    `structured_space` keeps the env's own space, which the network is built for."""

    stateless = True  # nothing to save in a checkpoint (derl.env.state skips it)

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.structured_space = env.observation_space
        self.flat = not isinstance(env.observation_space, gym.spaces.Box)
        if self.flat:
            try:
                self.observation_space = gym.spaces.flatten_space(env.observation_space)
            except NotImplementedError:
                raise UsageError(
                    f"observation space {env.observation_space} is not supported; derl takes "
                    "Box, Discrete, MultiDiscrete, MultiBinary, and Dict or Tuple of those"
                ) from None

    def observation(self, observation):
        return gym.spaces.flatten(self.structured_space, observation) if self.flat else observation


def channels_last(space: gym.Space) -> bool:
    """A uint8 image with its channels last ([H, W, C], C of 1, 3 or 4: RGB renders, CarRacing)."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[-1] in (1, 3, 4)
        and space.shape[0] > 4
    )


def has_channels_last(space: gym.Space) -> bool:
    """`space`, or a part of it (a Dict's or Tuple's, at any depth), is a channels-last image."""
    if isinstance(space, gym.spaces.Dict):
        return any(has_channels_last(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(has_channels_last(s) for s in space.spaces)
    return channels_last(space)


def channels_first_space(space: gym.Space) -> gym.Space:
    """`space` with every channels-last image in it as [C, H, W]."""
    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({k: channels_first_space(s) for k, s in space.spaces.items()})
    if isinstance(space, gym.spaces.Tuple):
        return gym.spaces.Tuple(tuple(channels_first_space(s) for s in space.spaces))
    if not channels_last(space):
        return space
    assert isinstance(space, gym.spaces.Box)
    low, high = (np.transpose(bound, (2, 0, 1)) for bound in (space.low, space.high))
    return gym.spaces.Box(low, high, dtype=space.dtype)


def channels_first(space: gym.Space, observation):
    """An observation of `space` (the env's own) with its channels-last images as [C, H, W]."""
    if isinstance(space, gym.spaces.Dict):
        return {k: channels_first(s, observation[k]) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(channels_first(s, o) for s, o in zip(space.spaces, observation, strict=True))
    if not channels_last(space):
        return observation
    return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)))


def as_channels_first(space: gym.Space, observation):
    """An observation as the env gives it, in the layout of `space`, ChannelsFirst's (derl's
    own): images of `space` ([C, H, W]) that arrive as [H, W, C] are turned. For observations
    from outside derl's envs (Agent.act), whose channels-last images ChannelsFirst never saw."""
    if isinstance(space, gym.spaces.Dict):
        return {k: as_channels_first(s, observation[k]) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        parts = zip(space.spaces, observation, strict=True)
        return tuple(as_channels_first(s, o) for s, o in parts)
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
        return observation
    c, h, w = space.shape
    turned = space.dtype == np.uint8 and channels_last(gym.spaces.Box(0, 255, (h, w, c), np.uint8))
    if turned and np.shape(observation) == (h, w, c):
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)))
    return observation


class ChannelsFirst(gym.ObservationWrapper):
    """[H, W, C] uint8 images as [C, H, W], the layout of derl's CNN and of Atari frame stacks:
    the observation itself, or the images in a Dict or Tuple observation (as SB3's
    VecTransposeImage; gymnasium has no transposing wrapper)."""

    stateless = True

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = channels_first_space(env.observation_space)

    def observation(self, observation):
        return channels_first(self.env.observation_space, observation)


def call_env_fn(env_fn: Callable, render_mode: str | None) -> gym.Env:
    """The user's env, with `render_mode` only when filming (a factory need not take it).
    A factory that cannot be called so, or that raises, is one line (`call_user_function`)."""
    name = getattr(env_fn, "__qualname__", repr(env_fn))
    label = f"env_fn {name}"
    if render_mode is None:
        env = call_user_function(env_fn, label, (), "()")
    elif not takes(env_fn, render_mode=render_mode):
        raise UsageError(
            f"{label} takes no render_mode, so its env cannot be filmed; "
            "let it accept render_mode=None and pass it to the env"
        )
    else:
        kwargs = {"render_mode": render_mode}
        env = call_user_function(env_fn, label, (), "(render_mode=None)", kwargs)
    if not isinstance(env, gym.Env):
        raise UsageError(f"{label} must return a gymnasium.Env, not {type(env).__name__}")
    return env


def has_time_limit(env: gym.Env) -> bool:
    """Whether a TimeLimit wrapper ends `env`'s episodes."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TimeLimit):
            return True
        env = env.env
    return False


def cap_episodes(env: gym.Env, max_episode_steps: int | None) -> gym.Env:
    """`env` with a TimeLimit of `max_episode_steps` where it has none of its own (None: as it
    is). Evaluation uses it: a greedy policy can walk in circles forever in an env without one
    (CliffWalking-v1), and its evaluation would never return."""
    if max_episode_steps is None or has_time_limit(env):
        return env
    return TimeLimit(env, max_episode_steps)


def make_single(
    env_id: str,
    render_mode: str | None = None,
    env_kwargs: dict | None = None,
    env_fn: Callable | None = None,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """One env with the preprocessing of its family and episode statistics of the true reward.

    `env_fn`: the user's factory instead of gymnasium.make(env_id, **env_kwargs).
    `max_episode_steps`: a time limit for an env that has none of its own (`cap_episodes`).
    """
    if env_fn is not None:
        env = cap_episodes(call_env_fn(env_fn, render_mode), max_episode_steps)
        check_action_start(env.action_space, env_id)
        return FlatObservations(image_layout(RecordEpisodeStatistics(env)))
    register_ids(env_id)  # again here: async workers are fresh processes
    env_kwargs = env_kwargs or {}
    try:
        if family(env_id) == "atari":
            env = make_atari(env_id, render_mode=render_mode, **env_kwargs)
        else:
            env = gym.make(env_id, render_mode=render_mode, **env_kwargs)
            env = RecordEpisodeStatistics(cap_episodes(env, max_episode_steps))
    except TypeError as exc:
        if not env_kwargs:
            raise
        raise UsageError(f"--env-kwargs {env_kwargs} do not fit {env_id}: {exc}") from None
    check_action_start(env.action_space, env_id)
    return FlatObservations(image_layout(env))


def check_action_start(space: gym.Space, env_id: str) -> None:
    """derl's policies pick discrete actions from 0: refuse spaces that start elsewhere, which
    would be sent actions they do not have."""
    start = getattr(space, "start", None)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete) and np.any(start != 0):
        raise UsageError(
            f"{env_id}'s action space {space} does not start at 0, and derl's policies pick "
            "actions 0..n-1; wrap the env with gymnasium.wrappers.TransformAction to shift them"
        )


def image_layout(env: gym.Env) -> gym.Env:
    """`env` with channels-last images turned channels-first (`ChannelsFirst`)."""
    return ChannelsFirst(env) if has_channels_last(env.observation_space) else env


def observation_space(env: gym.vector.VectorEnv) -> gym.Space:
    """The observation space of one of `env`'s envs as the env defines it (a Dict stays a Dict),
    which networks are built for; `env.single_observation_space` is what the runner carries."""
    return getattr(env, "structured_observation_space", None) or env.single_observation_space


def user_env_fn(config, env_fn: Callable | None = None) -> Callable | None:
    """The env factory of a run: `env_fn` when given, else the one its config names, if any."""
    from derl.custom import import_function

    if env_fn is not None or not config.env_fn:
        return env_fn
    return import_function(config.env_fn, "env_fn")


def make_envpool(
    env_id: str, fam: str, num_envs: int, env_kwargs: dict | None, env_fn: Callable | None
) -> tuple[gym.vector.VectorEnv, gym.Space]:
    """An EnvPoolVectorEnv with the spaces of gymnasium's own env for `env_id` (one is made
    and closed to read them, which also checks the id and its extra)."""
    from derl.env.envpool import EnvPoolVectorEnv, import_envpool

    if env_fn is not None:
        raise UsageError(
            "--vectorization envpool makes EnvPool's envs; an env_fn needs sync or async"
        )
    import_envpool()
    probe = make_single(env_id, None, env_kwargs)
    spaces = probe.observation_space, probe.action_space, probe.get_wrapper_attr("structured_space")
    probe.close()
    return EnvPoolVectorEnv(env_id, fam, num_envs, spaces[0], spaces[1], env_kwargs), spaces[2]


def make(
    env_id: str,
    num_envs: int = 1,
    seed: int | None = 0,
    vectorization: str = "sync",
    normalize: bool | None = None,
    gamma: float = 0.99,
    env_kwargs: dict | None = None,
    env_fn: Callable | None = None,
    max_episode_steps: int | None = None,
) -> gym.vector.VectorEnv:
    """A gymnasium vector env of `num_envs` copies of `env_id`, reset with `seed`.

    `vectorization`: "sync" (one process), "async" (a process per env) or "envpool" (EnvPool's
    C++ pool, derl.env.envpool). Episodes end with terminated/truncated kept apart; a finished
    env is reset in the same step and its real last observation is in `info["final_obs"]`
    (gymnasium's SAME_STEP autoreset).
    `normalize=None` turns observation and reward normalisation on for MuJoCo and pybullet.
    `env_kwargs` go to gymnasium.make; `env_fn`, a function returning a gymnasium.Env, makes
    each env instead (then `env_id` is only a name). Observations that are not a Box arrive
    flattened (`FlatObservations`); `observation_space(env)` gives their structure.
    `max_episode_steps` limits episodes of envs without a time limit of their own (sync and
    async; EnvPool's envs all have one).
    """
    # family() raises UsageError for unknown ids and missing extras
    fam = "custom" if env_fn is not None else family(env_id)
    if vectorization not in VECTORIZATIONS:
        raise UsageError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    if num_envs < 1:
        raise UsageError(f"num_envs must be >= 1, got {num_envs}")
    try:
        if vectorization == "envpool":
            vector_env, structured = make_envpool(env_id, fam, num_envs, env_kwargs, env_fn)
        else:
            fns = [
                partial(make_single, env_id, None, env_kwargs, env_fn, max_episode_steps)
                for _ in range(num_envs)
            ]
            vector_cls = SyncVectorEnv if vectorization == "sync" else AsyncVectorEnv
            vector_env = vector_cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)
            structured = vector_env.get_attr("structured_space")[0]
    except gym.error.DependencyNotInstalled as exc:
        extra = "mujoco" if fam == "mujoco" else "all"
        raise UsageError(
            f'{env_id!r} cannot be made ({exc}); pip install "derl[{extra}]"'
        ) from None
    env: gym.vector.VectorEnv = vector_env
    if normalize or (normalize is None and fam == "mujoco"):
        env = VecNormalize(env, gamma=gamma)
    # An attribute of derl's own, which observation_space() reads back.
    env.structured_observation_space = structured  # type: ignore[attr-defined]
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env
