"""`derl.env.make`: one entry point from an env id to a vector env ready for training."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics

from derl.env.atari import make_atari
from derl.env.families import family, register_ids
from derl.env.normalize import VecNormalize
from derl.errors import UsageError

VECTORIZATIONS = ("sync", "async")


def make_single(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One env with the preprocessing of its family and episode statistics of the true reward."""
    register_ids(env_id)  # again here: async workers are fresh processes
    if family(env_id) == "atari":
        return make_atari(env_id, render_mode=render_mode)
    return RecordEpisodeStatistics(gym.make(env_id, render_mode=render_mode))


def make(
    env_id: str,
    num_envs: int = 1,
    seed: int | None = 0,
    vectorization: str = "sync",
    normalize: bool | None = None,
    gamma: float = 0.99,
) -> gym.vector.VectorEnv:
    """A gymnasium vector env of `num_envs` copies of `env_id`, reset with `seed`.

    Episodes end with terminated/truncated kept apart; a finished env is reset in the same step
    and its real last observation is in `info["final_obs"]` (gymnasium's SAME_STEP autoreset).
    `normalize=None` turns observation and reward normalisation on for MuJoCo and pybullet.
    """
    fam = family(env_id)  # raises UsageError for unknown ids and missing extras
    if vectorization not in VECTORIZATIONS:
        raise UsageError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    if num_envs < 1:
        raise UsageError(f"num_envs must be >= 1, got {num_envs}")
    fns = [partial(make_single, env_id) for _ in range(num_envs)]
    vector_cls = SyncVectorEnv if vectorization == "sync" else AsyncVectorEnv
    try:
        env = vector_cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    except gym.error.DependencyNotInstalled as exc:
        extra = "mujoco" if fam == "mujoco" else "all"
        raise UsageError(
            f'{env_id!r} cannot be made ({exc}); pip install "derl[{extra}]"'
        ) from None
    if normalize or (normalize is None and fam == "mujoco"):
        env = VecNormalize(env, gamma=gamma)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env
