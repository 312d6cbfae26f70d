"""Networks: NatureCNN for images, MLPs for vectors, action heads, and `make_model`."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from derl.errors import UsageError


def orthogonal_init(layer: nn.Module, gain: float = math.sqrt(2)) -> nn.Module:
    """Orthogonal weights and zero biases, as in openai baselines' actor-critic networks."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class NatureCNN(nn.Module):
    """The Nature DQN torso (Mnih et al. 2015): uint8 [N, C, 84, 84] -> [N, 512] features.

    `features=None` stops after the convolutions ([N, 3136]), for heads with layers of their own.
    """

    def __init__(self, in_channels: int = 4, features: int | None = 512):
        super().__init__()
        self.net = nn.Sequential(
            orthogonal_init(nn.Conv2d(in_channels, 32, 8, stride=4)),
            nn.ReLU(),
            orthogonal_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            orthogonal_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        if features is not None:
            self.net.extend([orthogonal_init(nn.Linear(64 * 7 * 7, features)), nn.ReLU()])
        # oneDNN's convolutions run about 25% faster on channels-last tensors (measured on CPU:
        # forward + backward of a 256 batch, 100 ms -> 78 ms); the maths is unchanged.
        self.net.to(memory_format=torch.channels_last)
        self.out_features = features or 64 * 7 * 7

    def forward(self, obs: Tensor) -> Tensor:
        # One conversion copy, uint8 to float straight into channels-last (2x faster on CPU
        # than .float() then .contiguous(memory_format=...), which copies twice).
        x = torch.empty(obs.shape, device=obs.device, memory_format=torch.channels_last)
        return self.net(x.copy_(obs).div_(255.0))


class MLP(nn.Sequential):
    """MLP torso: tanh (64, 64) by default, the usual choice for actor-critics on vectors."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (64, 64), activation=nn.Tanh):
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [orthogonal_init(nn.Linear(in_features, size)), activation()]
            in_features = size
        super().__init__(*layers)
        self.out_features = in_features


# Distributions skip torch's argument validation (validate_args=False): their inputs come from
# the network, and the checks cost 5-10% of a CartPole run.


class CategoricalHead(nn.Module):
    """Logits for a Discrete action space."""

    def __init__(self, in_features: int, num_actions: int):
        super().__init__()
        self.logits = orthogonal_init(nn.Linear(in_features, num_actions), gain=0.01)

    def forward(self, features: Tensor) -> Distribution:
        return Categorical(logits=self.logits(features), validate_args=False)


class MultiCategoricalHead(nn.Module):
    """Independent logits per component of a MultiDiscrete action space."""

    def __init__(self, in_features: int, nvec: list[int]):
        super().__init__()
        self.nvec = list(nvec)
        self.logits = orthogonal_init(nn.Linear(in_features, sum(self.nvec)), gain=0.01)

    def forward(self, features: Tensor) -> Distribution:
        return MultiCategorical(self.logits(features).split(self.nvec, dim=-1))


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent log std (as in PPO's MuJoCo experiments)."""

    def __init__(self, in_features: int, action_dim: int):
        super().__init__()
        self.mean = orthogonal_init(nn.Linear(in_features, action_dim), gain=0.01)
        self.logstd = nn.Parameter(torch.zeros(action_dim))

    def forward(self, features: Tensor) -> Distribution:
        mean = self.mean(features)
        std = self.logstd.exp().expand_as(mean)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


class MultiCategorical(Distribution):
    """A product of independent categoricals; actions are [..., K] integer tensors."""

    arg_constraints: dict = {}

    def __init__(self, logits: tuple[Tensor, ...]):
        self.dists = [Categorical(logits=lg, validate_args=False) for lg in logits]
        super().__init__(batch_shape=self.dists[0].batch_shape, validate_args=False)

    def sample(self, sample_shape=()) -> Tensor:
        return torch.stack([d.sample(sample_shape) for d in self.dists], dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        return sum(d.log_prob(a) for d, a in zip(self.dists, actions.unbind(-1), strict=True))

    def entropy(self) -> Tensor:
        return sum(d.entropy() for d in self.dists)

    @property
    def mode(self) -> Tensor:
        return torch.stack([d.probs.argmax(-1) for d in self.dists], dim=-1)


class ActorCriticModel(nn.Module):
    """obs -> (action distribution, value). `value_body` None: shared torso."""

    def __init__(
        self, policy_body: nn.Module, head: nn.Module, value_body: nn.Module | None = None
    ):
        super().__init__()
        self.policy_body, self.head, self.value_body = policy_body, head, value_body
        self.value = orthogonal_init(
            nn.Linear((value_body or policy_body).out_features, 1), gain=1.0
        )

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        features = self.policy_body(obs)
        value_features = features if self.value_body is None else self.value_body(obs)
        return self.head(features), self.value(value_features).squeeze(-1)


def make_head(in_features: int, action_space: gym.Space) -> nn.Module:
    """The action head for an action space, or a UsageError naming the spaces that work."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_features, int(action_space.n))
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        return MultiCategoricalHead(in_features, [int(n) for n in action_space.nvec])
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(in_features, action_space.shape[0])
    raise UsageError(
        f"action space {action_space} is not supported by actor-critic algorithms; "
        "they take Discrete, MultiDiscrete and 1-D Box actions"
    )


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def make_model(observation_space: gym.Space, action_space: gym.Space) -> ActorCriticModel:
    """NatureCNN with a shared torso for [C, H, W] uint8 images, separate MLPs for vectors."""
    if is_image(observation_space):
        body = NatureCNN(observation_space.shape[0])
        return ActorCriticModel(body, make_head(body.out_features, action_space))
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UsageError(
            f"observation space {observation_space} is not supported; "
            "use 1-D Box vectors or [C, H, W] uint8 images"
        )
    in_features = observation_space.shape[0]
    policy_body, value_body = MLP(in_features), MLP(in_features)
    return ActorCriticModel(
        policy_body, make_head(policy_body.out_features, action_space), value_body
    )
