"""Networks: NatureCNN for images, MLPs for vectors, action heads, and `make_model`."""

from __future__ import annotations

import math
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from derl.distributions import MultiCategorical
from derl.errors import UsageError
from derl.noisy import DuelingHead, NoisyLinear


def orthogonal_init(layer: nn.Module, gain: float = math.sqrt(2)) -> nn.Module:
    """Orthogonal weights and zero biases, as in openai baselines' actor-critic networks."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def default_init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """torch's own init, kept (SB3's `ortho_init=False`)."""
    return layer


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


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
    """MLP: tanh (64, 64) with orthogonal init by default, the usual torso of actor-critics on
    vectors. `out_features` adds a last linear layer; `orthogonal=False` keeps torch's default
    init (SAC's and TD3's networks, as in their papers, CleanRL and SB3)."""

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...] = (64, 64),
        activation: type[nn.Module] = nn.Tanh,
        out_features: int | None = None,
        orthogonal: bool = True,
    ):
        layers: list[nn.Module] = []
        for size in (*hidden, out_features) if out_features is not None else hidden:
            linear = nn.Linear(in_features, size)
            layers.append(orthogonal_init(linear) if orthogonal else linear)
            layers.append(activation())
            in_features = size
        if out_features is not None:
            layers.pop()  # no activation after the output layer
        super().__init__(*layers)
        self.out_features = in_features


# Distributions skip torch's argument validation (validate_args=False): their inputs come from
# the network, and the checks cost 5-10% of a CartPole run.


class CategoricalHead(nn.Module):
    """Logits for a Discrete action space."""

    def __init__(self, in_features: int, num_actions: int, init=orthogonal_init):
        super().__init__()
        self.logits = init(nn.Linear(in_features, num_actions), gain=0.01)

    def forward(self, features: Tensor) -> Distribution:
        return Categorical(logits=self.logits(features), validate_args=False)


class MultiCategoricalHead(nn.Module):
    """Independent logits per component of a MultiDiscrete action space."""

    def __init__(self, in_features: int, nvec: list[int], init=orthogonal_init):
        super().__init__()
        self.nvec = list(nvec)
        self.logits = init(nn.Linear(in_features, sum(self.nvec)), gain=0.01)

    def forward(self, features: Tensor) -> Distribution:
        return MultiCategorical(self.logits(features).split(self.nvec, dim=-1))


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent log std (as in PPO's MuJoCo experiments),
    starting at `log_std_init` (rl-zoo's MuJoCo recipes start at -2 or so: less noise)."""

    def __init__(
        self, in_features: int, action_dim: int, log_std_init: float = 0.0, init=orthogonal_init
    ):
        super().__init__()
        self.mean = init(nn.Linear(in_features, action_dim), gain=0.01)
        self.logstd = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, features: Tensor) -> Distribution:
        mean = self.mean(features)
        std = self.logstd.exp().expand_as(mean)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


class ActorCriticModel(nn.Module):
    """obs -> (action distribution, value). `value_body` None: shared torso."""

    def __init__(
        self,
        policy_body: nn.Module,
        head: nn.Module,
        value_body: nn.Module | None = None,
        init=orthogonal_init,
    ):
        super().__init__()
        self.policy_body, self.head, self.value_body = policy_body, head, value_body
        self.value = init(nn.Linear((value_body or policy_body).out_features, 1), gain=1.0)

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        features = self.policy_body(obs)
        value_features = features if self.value_body is None else self.value_body(obs)
        return self.head(features), self.value(value_features).squeeze(-1)


def make_head(
    in_features: int, action_space: gym.Space, log_std_init: float = 0.0, init=orthogonal_init
) -> nn.Module:
    """The action head for an action space, or a UsageError naming the spaces that work."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_features, int(action_space.n), init)
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        return MultiCategoricalHead(in_features, [int(n) for n in action_space.nvec], init)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(in_features, action_space.shape[0], log_std_init, init)
    raise UsageError(
        f"action space {action_space} is not supported by actor-critic algorithms; "
        "they take Discrete, MultiDiscrete and 1-D Box actions"
    )


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def make_model(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: tuple[int, ...] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
    ortho_init: bool = True,
) -> ActorCriticModel:
    """NatureCNN with a shared torso for [C, H, W] uint8 images; for vectors, separate policy
    and value MLPs of `hidden` units with `activation` ("tanh" or "relu"). `ortho_init`:
    orthogonal init as openai baselines (else torch's); `log_std_init`: the Gaussian's start."""
    init = orthogonal_init if ortho_init else default_init
    if is_image(observation_space):
        body = NatureCNN(observation_space.shape[0])
        return ActorCriticModel(
            body, make_head(body.out_features, action_space, log_std_init, init), init=init
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UsageError(
            f"observation space {observation_space} is not supported; "
            "use 1-D Box vectors or [C, H, W] uint8 images"
        )
    in_features, act = observation_space.shape[0], ACTIVATIONS[activation]
    policy_body = MLP(in_features, hidden, act, orthogonal=ortho_init)
    value_body = MLP(in_features, hidden, act, orthogonal=ortho_init)
    head = make_head(policy_body.out_features, action_space, log_std_init, init)
    return ActorCriticModel(policy_body, head, value_body, init)


# -- Q networks: DQN's (dueling, noisy, distributional) and the twin critics of SAC and TD3 -----


class QNetwork(nn.Module):
    """obs -> Q values [B, A], or return-distribution logits [B, A, atoms] when atoms > 1."""

    def __init__(self, torso: nn.Module, head: nn.Module, support: Tensor | None = None):
        super().__init__()
        self.torso, self.head = torso, head
        self.register_buffer("support", support if support is not None else torch.zeros(0))

    @property
    def distributional(self) -> bool:
        return len(self.support) > 1

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.torso(obs))

    def q_values(self, obs: Tensor) -> Tensor:
        out = self(obs)
        return (out.softmax(-1) * self.support).sum(-1) if self.distributional else out


def make_q_network(
    observation_space: gym.Space,
    num_actions: int,
    dueling: bool = True,
    noisy: bool = False,
    atoms: int = 1,
    v_range: tuple[float, float] = (-10, 10),
    hidden: int | None = None,
    sigma0: float = 0.5,
) -> QNetwork:
    """NatureCNN convolutions for images, a ReLU MLP for vectors, then a (dueling) head;
    `noisy`: NoisyLinear layers of initial noise scale `sigma0` in the head."""
    if is_image(observation_space):
        torso, hidden = NatureCNN(observation_space.shape[0], features=None), hidden or 512
    else:
        hidden = hidden or 256
        torso = MLP(observation_space.shape[0], (hidden,), activation=nn.ReLU)
    if dueling:
        head = DuelingHead(torso.out_features, num_actions, atoms, noisy, hidden, sigma0)
    else:
        linear = partial(NoisyLinear, sigma0=sigma0) if noisy else nn.Linear
        head = nn.Sequential(
            linear(torso.out_features, hidden), nn.ReLU(), linear(hidden, num_actions * atoms)
        )
        if atoms > 1:
            head.append(nn.Unflatten(-1, (num_actions, atoms)))
    support = torch.linspace(*v_range, atoms) if atoms > 1 else None
    return QNetwork(torso, head, support)


class EnsembleLinear(nn.Module):
    """`n` independent Linear layers run as one batched matmul: [n, B, in] -> [n, B, out].

    Each member starts as nn.Linear does (weights and biases uniform in +-1/sqrt(in)).
    """

    def __init__(self, n: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        weight = torch.empty(n, in_features, out_features).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.empty(n, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Two Q networks on concat(obs, action); the min of both fights overestimation (TD3).

    Both run as one ensemble (a batched matmul per layer, not two MLPs): with 256-unit layers on
    a CPU, the critic update is bound by the number of ops, and this halves it.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        sizes = (obs_dim + action_dim, *hidden, 1)
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [EnsembleLinear(2, a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([obs, actions], dim=-1)
        q1, q2 = self.net(x.expand(2, *x.shape)).squeeze(-1)
        return q1, q2
