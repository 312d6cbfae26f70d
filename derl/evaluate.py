"""Evaluate a policy: run whole episodes and return their true returns."""

from __future__ import annotations

import numpy as np
import torch

import derl.env
from derl.env.normalize import VecNormalize


def evaluate(policy, env_id: str, num_episodes: int = 10, seed: int = 10_000,
             deterministic: bool = True, normalizer: VecNormalize | None = None,
             num_envs: int = 1) -> np.ndarray:
    """Returns of `num_episodes` episodes on fresh envs (Atari: the game score, all lives).

    `normalizer` is the training env's VecNormalize, if any: its statistics are used frozen.
    """
    env = derl.env.make(env_id, num_envs, seed, normalize=False)
    if normalizer is not None:
        env = VecNormalize(env, gamma=normalizer.gamma, clip=normalizer.clip)
        env.load_state_dict(normalizer.state_dict())
        env.training = False
    device = next(policy.parameters()).device
    obs, _ = env.reset(seed=seed)
    returns: list[float] = []
    while len(returns) < num_episodes:
        obs_t = torch.as_tensor(np.asarray(obs), device=device)
        if obs_t.dtype != torch.uint8:
            obs_t = obs_t.float()
        actions = policy.act(obs_t, deterministic=deterministic)["actions"]
        obs, _, _, _, info = env.step(policy.env_actions(actions))
        final = info.get("final_info", {})
        if "episode" in final:
            returns += [float(r) for r in final["episode"]["r"][final["_episode"]]]
    env.close()
    return np.array(returns[:num_episodes])
