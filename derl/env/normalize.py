"""Running observation and reward normalisation for a vector env, with state to save and freeze.

gymnasium has vector NormalizeObservation / NormalizeReward, but they leave `final_obs` (needed to
bootstrap a time-limit truncation) unnormalised, do not clip, and keep their statistics in objects
without a state dict. This wrapper does the three things SB3's VecNormalize does and no more.
"""

from __future__ import annotations

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.wrappers.utils import RunningMeanStd

CLIP, EPS = 10.0, 1e-8  # SB3 VecNormalize's defaults


def normalize_obs(
    obs: np.ndarray, mean: np.ndarray, var: np.ndarray, clip: float = CLIP, eps: float = EPS
) -> np.ndarray:
    """(obs - mean) / sqrt(var + eps), clipped to +-clip: training and frozen agents alike."""
    return np.clip((obs - mean) / np.sqrt(var + eps), -clip, clip).astype(np.float32)


class VecNormalize(VectorWrapper):
    """Normalise observations by running mean/std and rewards by the return's std.

    Images (uint8 observations of 3 dimensions) keep their pixels, and only the rewards are
    normalised, as SB3 does: derl's networks scale images by 1/255 themselves, and its runner
    stores them as uint8, which a normalised frame does not fit."""

    def __init__(self, env: VectorEnv, gamma: float = 0.99, clip: float = CLIP, eps: float = EPS):
        super().__init__(env)
        space = env.single_observation_space
        self.norm_obs = not (space.dtype == np.uint8 and len(space.shape or ()) == 3)
        self.obs_rms = RunningMeanStd(shape=space.shape)
        self.return_rms = RunningMeanStd(shape=())
        self.returns = np.zeros(env.num_envs)
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.training = True  # False freezes the statistics (evaluation)

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return obs
        return normalize_obs(obs, self.obs_rms.mean, self.obs_rms.var, self.clip, self.eps)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.returns[:] = 0
        if self.training:
            self.obs_rms.update(obs)
        return self.normalize_obs(obs), info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if self.training:
            self.obs_rms.update(obs)
            self.returns = self.returns * self.gamma + rewards
            self.return_rms.update(self.returns)
        self.returns[terminated | truncated] = 0
        if "final_obs" in info:  # an object array, None where no episode ended
            final_obs = info["final_obs"].copy()
            for i in np.flatnonzero(info["_final_obs"]):
                final_obs[i] = self.normalize_obs(final_obs[i])
            info["final_obs"] = final_obs
        scaled = rewards / np.sqrt(self.return_rms.var + self.eps)
        return (
            self.normalize_obs(obs),
            np.clip(scaled, -self.clip, self.clip),
            terminated,
            truncated,
            info,
        )

    def state_dict(self) -> dict:
        return {
            "obs_mean": self.obs_rms.mean,
            "obs_var": self.obs_rms.var,
            "obs_count": self.obs_rms.count,
            "ret_mean": self.return_rms.mean,
            "ret_var": self.return_rms.var,
            "ret_count": self.return_rms.count,
            "returns": self.returns.copy(),
            "norm_obs": self.norm_obs,
            "clip": self.clip,
            "eps": self.eps,
        }

    def load_state_dict(self, state: dict) -> None:
        for prefix, rms in (("obs", self.obs_rms), ("ret", self.return_rms)):
            rms.mean = np.asarray(state[f"{prefix}_mean"], dtype=np.float64)
            rms.var = np.asarray(state[f"{prefix}_var"], dtype=np.float64)
            rms.count = float(state[f"{prefix}_count"])
        if len(state["returns"]) == self.num_envs:
            self.returns = np.array(state["returns"], dtype=np.float64)
