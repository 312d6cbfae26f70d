"""Trained agents: `derl.load(path)` to act with one, `derl.save(alg, config, path)` to keep one."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import derl.env
from derl import checkpoint
from derl.alg.base import Algorithm
from derl.env.make import as_channels_first
from derl.env.normalize import CLIP, EPS, VecNormalize, normalize_obs
from derl.errors import UsageError
from derl.factory.config import Config
from derl.guard import eval_mode
from derl.models import is_image
from derl.types import Policy

# Evaluation's time limit for envs without one of their own (CliffWalking-v1, some env_fn envs):
# a greedy policy can loop there forever, and the evaluation with it.
EVAL_MAX_EPISODE_STEPS = 10_000


class Agent:
    """A trained policy with its observation normalisation frozen: `agent.act(obs)`."""

    def __init__(
        self,
        policy: Policy,
        config: Config,
        observation_space: gym.Space,
        normalizer: dict | None = None,
        env_fn: Callable | None = None,
    ):
        """`observation_space`: the env's own (a Dict stays a Dict); `env_fn`: the factory of
        a run on an env of the user's (derl.train's env_fn), to make envs like it."""
        self.policy, self.config, self.normalizer = policy, config, normalizer
        self.observation_space, self.env_fn = observation_space, env_fn
        self.structured = not isinstance(observation_space, gym.spaces.Box)
        flat = gym.spaces.flatten_space(observation_space) if self.structured else observation_space
        self.obs_shape: tuple[int, ...] = flat.shape or ()
        self.image = is_image(flat)

    @classmethod
    def from_alg(cls, alg: Algorithm, config: Config, env_fn: Callable | None = None) -> Agent:
        """The agent an algorithm is training, normalisation frozen at its current statistics."""
        env = alg.runner.env
        normalizer = env.state_dict() if isinstance(env, VecNormalize) else None
        space = derl.env.observation_space(env)
        return cls(alg.runner.policy, config, space, normalizer, env_fn)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        n = self.normalizer  # a VecNormalize state; checkpoints before 0.3 lack clip and eps
        if n is None or not n.get("norm_obs", True):
            return obs
        return normalize_obs(
            obs, n["obs_mean"], n["obs_var"], n.get("clip", CLIP), n.get("eps", EPS)
        )

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation or a batch of them, as the env takes them. A Dict, Tuple
        or discrete observation is taken as the env gives it (one at a time), or flattened as
        derl.env's envs give it (gymnasium.spaces.flatten; batches too)."""
        if self.structured and (isinstance(obs, dict | tuple) or np.ndim(obs) == 0):
            # channels-last images in it first, as the envs' ChannelsFirst turned them
            obs = as_channels_first(self.observation_space, obs)
            obs = gym.spaces.flatten(self.observation_space, obs)
        obs = self.normalize(np.asarray(obs))
        if self.image and obs.shape[-3:] != self.obs_shape and obs.shape[-1] == self.obs_shape[0]:
            obs = np.moveaxis(obs, -1, -3)  # channels last, as the env gave it (ChannelsFirst)
        single = obs.ndim == len(self.obs_shape)
        obs_t = torch.as_tensor(obs[None] if single else obs, device=self.device)
        obs_t = obs_t if self.image else obs_t.float()
        # Eval mode, as evaluate() and `derl eval` act: noisy layers use their mean weights,
        # and SAC/TD3 never take their random warm-up actions.
        with eval_mode(self.policy):
            actions = self.policy.env_actions(self.policy.act(obs_t, deterministic)["actions"])
        return actions[0] if single else actions

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def make_env(self, num_envs: int = 1, seed: int = 10_000):
        """A vector env like the one it was trained on, unnormalised: `act` normalises. Where
        the env has no time limit of its own, episodes end after EVAL_MAX_EPISODE_STEPS steps."""
        config = self.config
        return derl.env.make(
            config.env_id,
            num_envs,
            seed,
            normalize=False,
            env_kwargs=config.env_kwargs,
            env_fn=self.env_fn,
            max_episode_steps=EVAL_MAX_EPISODE_STEPS,
        )


def load_state(path: str | os.PathLike) -> tuple[Path, dict]:
    """(checkpoint, its state): the file named, or a logdir's newest checkpoint that loads,
    past damaged newer ones (each named on stderr), as `derl resume` does."""
    path = Path(path)
    if not path.is_dir():
        return path, checkpoint.load(path)
    if not checkpoint.list_checkpoints(path):
        raise UsageError(f"no checkpoint in {path / checkpoint.CHECKPOINT_DIR}")
    found, state, skipped = checkpoint.newest_good(path)
    for error in skipped if found is not None else ():
        print(f"derl: {error}; loading the previous checkpoint", file=sys.stderr)
    if found is not None and state is not None:
        return found, state
    raise UsageError(
        f"no checkpoint in {path / checkpoint.CHECKPOINT_DIR} can be loaded (the newest: "
        f"{skipped[0]})"
    )


def load(
    path: str | os.PathLike,
    device: str = "cpu",
    model: Callable | None = None,
    env_fn: Callable | None = None,
) -> Agent:
    """The agent saved in a checkpoint file or in a logdir's newest checkpoint.

    A run trained with a network or an env factory of your own re-imports them by the
    `module:function` its config recorded; pass `model` / `env_fn` where that cannot work
    (a function defined in a script or a test).
    """
    from derl.factory import checkpoint_config, get_alg

    path, state = load_state(path)
    config = checkpoint_config(state, path)
    env_fn = derl.env.user_env_fn(config, env_fn)
    env = derl.env.make(
        config.env_id, 1, seed=0, normalize=False, env_kwargs=config.env_kwargs, env_fn=env_fn
    )
    obs_space, act_space = derl.env.observation_space(env), env.single_action_space
    env.close()
    policy = get_alg(state["alg"]).make_policy(config, obs_space, act_space, model)
    policy.load_state_dict(state["state"]["policy"])
    normalizer = state["state"]["runner"]["normalizer"]
    return Agent(policy.to(device), config, obs_space, normalizer, env_fn)


def save(alg: Algorithm, config: Config, path: str | os.PathLike) -> Path:
    """Write a full checkpoint of a trained `alg` (what `derl.train` writes) to `path`."""
    from derl.snapshot import snapshot

    return checkpoint.save(snapshot(alg, config), path)
