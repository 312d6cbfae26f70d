"""Policies: what acts. An actor-critic samples actions and reports log-probs and values."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from derl.models import ActorCriticModel, make_model


class ActorCriticPolicy(nn.Module):
    """`act` for rollouts (no grad, env-ready actions) and `forward` for training (grad)."""

    def __init__(self, model: ActorCriticModel, action_space: gym.Space):
        super().__init__()
        self.model = model
        # Gaussian samples are clipped to the box when sent to the env; the loss sees the raw ones.
        self.clip = isinstance(action_space, gym.spaces.Box)
        if self.clip:
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        return self.model(obs)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]:
        """Actions, their log-probs and state values for a batch of observations."""
        dist, values = self.model(obs)
        actions = dist.mode if deterministic else dist.sample()
        return {"actions": actions, "log_probs": dist.log_prob(actions), "values": values}

    def env_actions(self, actions: Tensor) -> np.ndarray:
        """Actions as the env takes them: numpy, inside the action box."""
        if self.clip:
            actions = torch.maximum(torch.minimum(actions, self.high), self.low)
        return actions.cpu().numpy()

    @torch.no_grad()
    def value(self, obs: Tensor) -> Tensor:
        return self.model(obs)[1]


def make_actor_critic(
    env: gym.vector.VectorEnv, device: torch.device | str = "cpu"
) -> ActorCriticPolicy:
    """The default actor-critic for a vector env's spaces (see `make_model`), on `device`."""
    model = make_model(env.single_observation_space, env.single_action_space)
    return ActorCriticPolicy(model, env.single_action_space).to(device)
