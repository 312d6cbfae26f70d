"""Networks: NatureCNN for images, MLPs for vectors, action heads, and `make_model`."""

from __future__ import annotations

import contextlib
import math
from functools import partial
from typing import TypeGuard, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from derl.custom import one_line
from derl.distributions import Categorical, MultiCategorical
from derl.errors import UsageError
from derl.guard import eval_mode
from derl.noisy import DuelingHead, NoisyLinear

# The layers with a weight and a bias that the inits below take.
_Layer = TypeVar("_Layer", bound=nn.Linear | nn.Conv2d)


def orthogonal_init(layer: _Layer, gain: float = math.sqrt(2)) -> _Layer:
    """Orthogonal weights and zero biases, as in openai baselines' actor-critic networks."""
    nn.init.orthogonal_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def default_init(layer: _Layer, gain: float = 1.0) -> _Layer:
    """torch's own init, kept (SB3's `ortho_init=False`)."""
    return layer


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def conv_size(size: int) -> int:
    """The side of the Nature CNN's last feature map for an image side of `size` (84 -> 7)."""
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        size = (size - kernel) // stride + 1
    return size


class NatureCNN(nn.Module):
    """The Nature DQN torso (Mnih et al. 2015): uint8 [N, C, 84, 84] -> [N, 512] features
    (other image sizes from 36x36 on work as well).

    `features=None` stops after the convolutions ([N, 3136]), for heads with layers of their own.
    """

    def __init__(
        self, in_channels: int = 4, features: int | None = 512, size: tuple[int, ...] = (84, 84)
    ):
        super().__init__()
        if min(size) < 36:  # 8x8 stride 4, 4x4 stride 2, 3x3: nothing is left of smaller ones
            raise UsageError(
                f"the Nature CNN needs images of at least 36x36 pixels, not {size[0]}x{size[1]}; "
                "pass a network of your own (--model module:function)"
            )
        flat = 64 * conv_size(size[0]) * conv_size(size[1])
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
            self.net.extend([orthogonal_init(nn.Linear(flat, features)), nn.ReLU()])
        # oneDNN's convolutions run about 25% faster on channels-last tensors (measured on CPU:
        # forward + backward of a 256 batch, 100 ms -> 78 ms); the maths is unchanged.
        # Module.to takes memory_format; torch's stub for it does not say so.
        self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.out_features = features or flat

    def forward(self, obs: Tensor) -> Tensor:
        # One conversion copy, uint8 to float straight into channels-last. (It was an in-place
        # copy into torch.empty: the same speed on the CPU, but torch 2.11's inductor failed to
        # compile it for CUDA graphs, seen on an H200 with --compile.)
        x = obs.to(torch.float32, memory_format=torch.channels_last, copy=True)  # never obs itself
        return self.net(x.div_(255.0))


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


class StateDependentNormal(Distribution):
    """gSDE's actions (Raffin et al. 2022, https://arxiv.org/abs/2005.05719): a = mean + z @ E,
    with z the policy's last hidden features and E ~ N(0, sigma^2) a [features, actions] matrix
    per env, redrawn only now and then. The noise is then a function of the state, smooth along a
    trajectory, where i.i.d. noise shakes every step. Per action dimension the density is
    N(mean, z^2 @ sigma^2). As in the paper, z is detached: the features learn through the mean.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, mean: Tensor, latent: Tensor, std: Tensor, exploration: Tensor):
        self.loc, self.latent, self.exploration = mean, latent, exploration
        # + 1e-6: a finite density where the features are all 0 (as SB3's gSDE)
        self.normal = Normal(mean, ((latent**2) @ (std**2) + 1e-6).sqrt(), validate_args=False)
        super().__init__(mean.shape[:-1], mean.shape[-1:], validate_args=False)

    def sample(self, sample_shape=()) -> Tensor:
        """mean + z @ E with each env's own E; a batch of another size (say, one evaluation env)
        shares the first env's."""
        with torch.no_grad():
            if len(self.latent) == len(self.exploration):
                noise = torch.bmm(self.latent[:, None], self.exploration)[:, 0]
            else:
                noise = self.latent @ self.exploration[0]
            return self.loc + noise

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.normal.log_prob(actions).sum(-1)

    def entropy(self) -> Tensor:
        return self.normal.entropy().sum(-1)

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def mean(self) -> Tensor:
        return self.loc


class GSDEHead(nn.Module):
    """gSDE for a Box action space: a mean layer, a [features, actions] log std matrix and the
    exploration matrices of `num_envs` envs (a buffer: checkpoints keep them). `resample()`
    draws new ones; the factories call it before each rollout (SB3's sde_sample_freq=-1)."""

    exploration: Tensor  # a buffer

    def __init__(
        self,
        in_features: int,
        action_dim: int,
        num_envs: int,
        log_std_init: float = 0.0,
        init=orthogonal_init,
    ):
        super().__init__()
        self.mean = init(nn.Linear(in_features, action_dim), gain=0.01)
        self.logstd = nn.Parameter(torch.full((in_features, action_dim), float(log_std_init)))
        self.register_buffer("exploration", torch.zeros(num_envs, in_features, action_dim))

    def forward(self, features: Tensor) -> Distribution:
        latent = features.detach()
        return StateDependentNormal(
            self.mean(features), latent, self.logstd.exp(), self.exploration
        )

    @torch.no_grad()
    def resample(self) -> None:
        self.exploration.copy_(torch.randn_like(self.exploration) * self.logstd.exp())


class ActorCriticModel(nn.Module):
    """obs -> (action distribution, value). `value_body` None: shared torso; `encoder`: a
    network both bodies read the observation through."""

    def __init__(
        self,
        policy_body: nn.Module,
        head: nn.Module,
        value_body: nn.Module | None = None,
        init=orthogonal_init,
        encoder: nn.Module | None = None,
    ):
        super().__init__()
        self.policy_body, self.head, self.value_body = policy_body, head, value_body
        self.value = init(nn.Linear(out_features(value_body or policy_body), 1), gain=1.0)
        self.encoder = encoder  # shared by both bodies; None: they read the observation

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        x = obs if self.encoder is None else self.encoder(obs)
        features = self.policy_body(x)
        value_features = features if self.value_body is None else self.value_body(x)
        return self.head(features), self.value(value_features).squeeze(-1)


def make_head(
    in_features: int,
    action_space: gym.Space,
    log_std_init: float = 0.0,
    init=orthogonal_init,
    sde_envs: int = 0,
) -> nn.Module:
    """The action head for an action space, or a UsageError naming the spaces that work.
    `sde_envs` > 0: gSDE for a Box space, with exploration matrices for that many envs."""
    if sde_envs:
        if not (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1):
            raise UsageError(f"--use-sde needs a 1-D Box action space, not {action_space}")
        return GSDEHead(in_features, action_space.shape[0], sde_envs, log_std_init, init)
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


def out_features(module: nn.Module) -> int:
    """The width of an encoder's or torso's [B, features] output: its `out_features`."""
    return int(cast(int, module.out_features))


def is_image(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def is_vector(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    """A 1-D Box: the MLPs read it as it is, with no encoder in front."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1


# -- encoders: observations of any gymnasium space -> a batch of feature vectors ---------------
#
# derl's runners and replay buffers carry one array per step. An env whose observations are not
# a Box (Dict, Tuple, Discrete, MultiDiscrete, MultiBinary) is flattened by derl.env
# (gymnasium.spaces.flatten: one-hot for discrete parts), and the network splits the flat vector
# back into its parts here: one encoder per part, images through a CNN.


def unflatten(space: gym.Space, x: Tensor):
    """A batch of observations as derl carries them -> the structure of `space`: a Dict as a
    dict of tensors, a Tuple as a tuple, a Box as a tensor of its shape (uint8 images as uint8),
    discrete parts as float one-hot vectors. The inverse of gymnasium.spaces.flatten, batched."""
    if isinstance(space, gym.spaces.Dict):
        parts = x.split([gym.spaces.flatdim(s) for s in space.spaces.values()], dim=-1)
        return {k: unflatten(s, p) for (k, s), p in zip(space.spaces.items(), parts, strict=True)}
    if isinstance(space, gym.spaces.Tuple):
        parts = x.split([gym.spaces.flatdim(s) for s in space.spaces], dim=-1)
        return tuple(unflatten(s, p) for s, p in zip(space.spaces, parts, strict=True))
    if isinstance(space, gym.spaces.Box):
        x = x.reshape(x.shape[0], *space.shape)
        return x.to(torch.uint8) if is_image(space) else x.float()
    return x.float()  # Discrete, MultiDiscrete, MultiBinary: flattened to one-hot / bits


def example_batch(space: gym.Space) -> Tensor:
    """One observation of `space`, as the runner hands it to the network."""
    if isinstance(space, gym.spaces.Box):
        dtype = torch.uint8 if is_image(space) else torch.float32
        return torch.as_tensor(space.sample(), dtype=dtype)[None]
    flat = gym.spaces.flatten(space, space.sample())
    return torch.as_tensor(np.asarray(flat), dtype=torch.float32)[None]


class Flatten(nn.Module):
    """[B, ...] -> [B, prod(...)]: the encoder of a vector, of a discrete part's one-hot and of
    any Box that is not an image."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.space, self.out_features = space, gym.spaces.flatdim(space)

    def forward(self, obs: Tensor) -> Tensor:
        return obs.reshape(obs.shape[0], -1).float()


class ImageEncoder(nn.Module):
    """An image part of a flattened observation: reshaped to [B, C, H, W], then NatureCNN."""

    def __init__(self, space: gym.spaces.Box, features: int | None = 512):
        super().__init__()
        self.shape, self.cnn = space.shape, NatureCNN(space.shape[0], features, space.shape[1:])
        self.out_features = self.cnn.out_features

    def forward(self, obs: Tensor) -> Tensor:
        return self.cnn(obs.reshape(obs.shape[0], *self.shape))


class MultiInputEncoder(nn.Module):
    """Dict and Tuple observations: one encoder per part, features concatenated."""

    def __init__(self, space: gym.spaces.Dict | gym.spaces.Tuple, cnn_features: int | None = 512):
        super().__init__()
        parts = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
        self.sizes = [gym.spaces.flatdim(s) for s in parts]
        self.encoders = nn.ModuleList(part_encoder(s, cnn_features) for s in parts)
        self.out_features = sum(out_features(e) for e in self.encoders)

    def forward(self, obs: Tensor) -> Tensor:
        parts = obs.split(self.sizes, dim=-1)
        return torch.cat([e(p) for e, p in zip(self.encoders, parts, strict=True)], dim=-1)


def part_encoder(space: gym.Space, cnn_features: int | None) -> nn.Module:
    if is_image(space):
        return ImageEncoder(space, cnn_features)
    return make_encoder(space, cnn_features)


def make_encoder(space: gym.Space, cnn_features: int | None = 512) -> nn.Module:
    """derl's encoder for an observation space (an `out_features` attribute gives its width):
    NatureCNN for uint8 [C, H, W] images, one encoder per part for Dict and Tuple, a flatten
    for everything else."""
    if is_image(space):
        return NatureCNN(space.shape[0], cnn_features, space.shape[1:])
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        return MultiInputEncoder(space, cnn_features)
    if isinstance(space, gym.spaces.Box | gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return Flatten(space)
    if isinstance(space, gym.spaces.MultiBinary):
        return Flatten(space)
    raise UsageError(
        f"observation space {space} is not supported; derl takes Box, Discrete, "
        "MultiDiscrete, MultiBinary, and Dict or Tuple of those"
    )


class UserEncoder(nn.Module):
    """A user's network (`--model module:function`) as an encoder: it gets the observations in
    their structure (`unflatten`) and returns [B, features]."""

    def __init__(self, space: gym.Space, module: nn.Module, name: str = "--model"):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise UsageError(f"{name} must return a torch.nn.Module, not {type(module).__name__}")
        self.space, self.module = space, module
        self.out_features = self.probe(name)

    def probe(self, name: str) -> int:
        """The width F of the network's [B, F] features, found by a forward pass on a batch of
        two sample observations and checked against its `out_features` where it has one: a
        network that cannot work is refused here, in one line, not with a traceback at the
        first step. Two observations, so that a network that loses or joins the batch
        dimension shows it. Eval mode on a fork of torch's RNG: batch norm takes a batch of
        any size there and keeps its running statistics, dropout draws nothing, and the
        weights initialised after this are those of a network without the probe."""
        tensors = [*self.module.parameters(), *self.module.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        obs = unflatten(self.space, torch.cat([example_batch(self.space)] * 2).to(device))
        # Lazy layers (nn.LazyLinear) draw their weights at this first forward pass: that must
        # advance the RNG as any layer's initialisation does, or the next layer derl builds
        # would draw the same numbers.
        lazy = any(
            isinstance(p, nn.parameter.UninitializedParameter) for p in self.module.parameters()
        )
        rng = contextlib.nullcontext() if lazy else torch.random.fork_rng(devices=[])
        try:
            with torch.no_grad(), rng, eval_mode(self.module):
                features = self.module(obs)
        except Exception as exc:  # the user's code: say which network, and what it raised
            space = self.space
            shape = f" of shape {space.shape}" if isinstance(space, gym.spaces.Box) else ""
            raise UsageError(
                f"{name} fails on a batch of 2 observations ({type(space).__name__}{shape}): "
                f"{one_line(exc)}; it must map them to [batch, features] (see "
                "docs/custom-network.md)"
            ) from exc
        if not isinstance(features, Tensor):
            raise UsageError(
                f"{name} returned {type(features).__name__} for a batch of observations; its "
                "network must return one [batch, features] tensor"
            )
        if features.ndim != 2 or features.shape[0] != 2:
            raise UsageError(
                f"{name} returned shape {tuple(features.shape)} for a batch of 2 observations; "
                "it must return [batch, features], here [2, F] (e.g. x.flatten(1), not "
                "x.flatten() or x.reshape(1, -1))"
            )
        if not features.is_floating_point():
            raise UsageError(
                f"{name} returned {str(features.dtype).removeprefix('torch.')} values; its "
                "features must be floats (e.g. .float() on its output)"
            )
        declared, width = getattr(self.module, "out_features", None), features.shape[1]
        if isinstance(declared, int) and declared != width:
            raise UsageError(
                f"{name}: its network's out_features is {declared}, but its output has {width} "
                f"features; set out_features to {width}, or remove it (derl then reads it from "
                "the output)"
            )
        return width

    def forward(self, obs: Tensor) -> Tensor:
        return self.module(unflatten(self.space, obs))


def make_model(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: tuple[int, ...] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
    ortho_init: bool = True,
    encoder: nn.Module | None = None,
    sde_envs: int = 0,
) -> ActorCriticModel:
    """The actor-critic of an observation space. Vectors (and no `encoder`): separate policy and
    value MLPs of `hidden` units with `activation`. Anything else: an encoder (derl's, see
    `make_encoder`, or the one given) shared by both, then the MLPs; with no hidden layers the
    heads sit on the encoder itself (the Nature CNN actor-critic of the Atari presets).
    `ortho_init`: orthogonal init as openai baselines (else torch's); `log_std_init`: the
    Gaussian's start; `sde_envs` > 0: gSDE (`GSDEHead`) for that many envs."""
    init = orthogonal_init if ortho_init else default_init
    act = ACTIVATIONS[activation]
    if encoder is None and is_vector(observation_space):
        in_features = observation_space.shape[0]
        policy_body = MLP(in_features, hidden, act, orthogonal=ortho_init)
        value_body = MLP(in_features, hidden, act, orthogonal=ortho_init)
        head = make_head(policy_body.out_features, action_space, log_std_init, init, sde_envs)
        return ActorCriticModel(policy_body, head, value_body, init)
    encoder = encoder if encoder is not None else make_encoder(observation_space)
    if not hidden:
        head = make_head(out_features(encoder), action_space, log_std_init, init, sde_envs)
        return ActorCriticModel(encoder, head, init=init)
    policy_body = MLP(out_features(encoder), hidden, act, orthogonal=ortho_init)
    value_body = MLP(out_features(encoder), hidden, act, orthogonal=ortho_init)
    head = make_head(policy_body.out_features, action_space, log_std_init, init, sde_envs)
    return ActorCriticModel(policy_body, head, value_body, init, encoder)


# -- Q networks: DQN's (dueling, noisy, distributional) and the twin critics of SAC and TD3 -----


class QNetwork(nn.Module):
    """obs -> Q values [B, A], or return-distribution logits [B, A, atoms] when atoms > 1."""

    support: Tensor  # a buffer: the atoms' returns, empty when atoms == 1

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
    hidden: tuple[int, ...] = (256, 256),
    sigma0: float = 0.5,
    activation: str = "relu",
    encoder: nn.Module | None = None,
) -> QNetwork:
    """A torso, then a (dueling) head with one hidden layer of `hidden[-1]` units. The torso:
    an MLP of `hidden[:-1]` on vectors; on anything else an encoder (the NatureCNN convolutions
    for images, or the one given) followed by that MLP. `noisy`: NoisyLinear layers of initial
    noise scale `sigma0` in the head."""
    if not hidden:
        raise UsageError("DQN's head needs a hidden layer: --hidden must name at least one size")
    act = ACTIVATIONS[activation]
    *torso_sizes, head_size = hidden
    torso: nn.Module
    if encoder is None and is_vector(observation_space):
        torso = MLP(observation_space.shape[0], tuple(torso_sizes), act)
    else:
        encoder = encoder if encoder is not None else make_encoder(observation_space, None)
        torso = encoder
        if torso_sizes:
            mlp = MLP(out_features(encoder), tuple(torso_sizes), act)
            torso = nn.Sequential(encoder, mlp)
            # nn.Module's __setattr__ takes any attribute; mypy reads the type of __getattr__'s.
            torso.out_features = mlp.out_features  # type: ignore[assignment]
    head: nn.Module
    if dueling:
        head = DuelingHead(out_features(torso), num_actions, atoms, noisy, head_size, sigma0, act)
    else:
        linear = partial(NoisyLinear, sigma0=sigma0) if noisy else nn.Linear
        layers: list[nn.Module] = [
            linear(out_features(torso), head_size),
            act(),
            linear(head_size, num_actions * atoms),
        ]
        if atoms > 1:
            layers.append(nn.Unflatten(-1, (num_actions, atoms)))
        head = nn.Sequential(*layers)
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

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: tuple[int, ...] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
        encoder: nn.Module | None = None,
    ):
        super().__init__()
        self.encoder = encoder  # the observation's, shared by both critics; None: read as is
        obs_dim = out_features(encoder) if encoder is not None else obs_dim
        sizes = (obs_dim + action_dim, *hidden, 1)
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [EnsembleLinear(2, a, b), activation()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        obs = obs if self.encoder is None else self.encoder(obs)
        x = torch.cat([obs, actions], dim=-1)
        q1, q2 = self.net(x.expand(2, *x.shape)).squeeze(-1)
        return q1, q2

    def q1(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The first critic alone: TD3's actor loss reads no other, and computing the second
        there cost a sixth of a TD3 update."""
        x = torch.cat([obs if self.encoder is None else self.encoder(obs), actions], dim=-1)
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                x = torch.addmm(layer.bias[0], x, layer.weight[0])
            else:
                x = layer(x)
        return x.squeeze(-1)
