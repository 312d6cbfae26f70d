"""Trained agents: `derl.load(path)` to act with one, `derl.save(alg, config, path)` to keep one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import derl.env
from derl import checkpoint
from derl.env.normalize import CLIP, EPS, VecNormalize, normalize_obs
from derl.errors import UsageError
from derl.models import is_image
from derl.policies import ActorCriticPolicy


class Agent:
    """A trained policy with its observation normalisation frozen: `agent.act(obs)`."""

    def __init__(
        self, policy: ActorCriticPolicy, config, observation_space, normalizer: dict | None = None
    ):
        self.policy, self.config, self.normalizer = policy, config, normalizer
        self.obs_shape, self.image = observation_space.shape, is_image(observation_space)

    @classmethod
    def from_alg(cls, alg, config) -> Agent:
        """The agent an algorithm is training, normalisation frozen at its current statistics."""
        env = alg.runner.env
        normalizer = env.state_dict() if isinstance(env, VecNormalize) else None
        return cls(alg.runner.policy, config, env.single_observation_space, normalizer)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        if self.normalizer is None:
            return obs
        n = self.normalizer  # a VecNormalize state; checkpoints before 0.3 lack clip and eps
        return normalize_obs(
            obs, n["obs_mean"], n["obs_var"], n.get("clip", CLIP), n.get("eps", EPS)
        )

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation or a batch of them, as the env takes them."""
        obs = self.normalize(np.asarray(obs))
        single = obs.ndim == len(self.obs_shape)
        obs_t = torch.as_tensor(obs[None] if single else obs, device=self.device)
        obs_t = obs_t if self.image else obs_t.float()
        actions = self.policy.env_actions(self.policy.act(obs_t, deterministic)["actions"])
        return actions[0] if single else actions

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def make_env(self, num_envs: int = 1, seed: int = 10_000):
        """A vector env like the one it was trained on, unnormalised: `act` normalises."""
        return derl.env.make(self.config.env_id, num_envs, seed, normalize=False)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest checkpoint of a logdir."""
    path = Path(path)
    if path.is_dir():
        found = checkpoint.list_checkpoints(path)
        if not found:
            raise UsageError(f"no checkpoint in {path / checkpoint.CHECKPOINT_DIR}")
        return found[-1]
    return path


def load(path: str | os.PathLike, device: str = "cpu") -> Agent:
    """The agent saved in a checkpoint file or in a logdir's newest checkpoint."""
    from derl.factory import checkpoint_config, get_alg

    path = resolve_checkpoint(path)
    state = checkpoint.load(path)
    config = checkpoint_config(state, path)
    env = derl.env.make(config.env_id, 1, seed=0, normalize=False)
    obs_space, act_space = env.single_observation_space, env.single_action_space
    env.close()
    policy = get_alg(state["alg"]).make_policy(config, obs_space, act_space)
    policy.load_state_dict(state["state"]["policy"])
    return Agent(policy.to(device), config, obs_space, state["state"]["runner"]["normalizer"])


def save(alg, config, path: str | os.PathLike) -> Path:
    """Write a full checkpoint of a trained `alg` (what `derl.train` writes) to `path`."""
    from derl.snapshot import snapshot

    return checkpoint.save(snapshot(alg, config), path)
