"""Policies: what acts. `act(obs, deterministic)` -> {"actions", ...} without gradients, and
`env_actions(actions)` -> what the env takes. An actor-critic also reports log-probs and values;
DQN acts epsilon-greedily in its Q values; SAC's and TD3's actors act in a Box."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from derl.distributed import world_size
from derl.distributions import SquashedNormal
from derl.models import MLP, ActorCriticModel, QNetwork, out_features
from derl.noise import PinkNoise
from derl.types import Policy as Policy  # the protocol these implement, re-exported


class ActorCriticPolicy(nn.Module):
    """`act` for rollouts (no grad, env-ready actions) and `forward` for training (grad)."""

    low: Tensor  # buffers, with a Box action space
    high: Tensor

    def __init__(self, model: ActorCriticModel, action_space: gym.Space):
        super().__init__()
        self.model = model
        # Gaussian samples are clipped to the box when sent to the env; the loss sees the raw ones.
        self.clip = isinstance(action_space, gym.spaces.Box)
        if isinstance(action_space, gym.spaces.Box):
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


class EpsilonGreedyPolicy(nn.Module):
    """Greedy in Q, random with probability epsilon, decided per env; epsilon is annealed
    linearly over the env steps this policy has acted for (kept in its state)."""

    steps: Tensor  # a buffer

    def __init__(
        self,
        q_network: QNetwork,
        num_actions: int,
        initial_eps: float = 1.0,
        final_eps: float = 0.01,
        exploration_steps: int = 1,
    ):
        super().__init__()
        self.q_network, self.num_actions = q_network, num_actions
        self.initial_eps, self.final_eps = initial_eps, final_eps
        self.exploration_steps = max(exploration_steps, 1)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        # `steps` counts as a Python int, which epsilon reads and acting adds to: reading the
        # buffer on a GPU would wait for the device, and adding to it costs a torch op per env
        # step. The buffer is written when a state is saved and read when one is loaded.
        self.num_steps = 0
        self.register_load_state_dict_post_hook(_reread_steps)

    def state_dict(self, *args, **kwargs):
        self.steps.fill_(self.num_steps)
        return super().state_dict(*args, **kwargs)

    @property
    def epsilon(self) -> float:
        frac = min(self.num_steps / self.exploration_steps, 1.0)
        return self.initial_eps + (self.final_eps - self.initial_eps) * frac

    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]:
        """Training acts give actions on the CPU, on every device: the env takes them there, and
        exploring steps need no network at all."""
        if deterministic:
            return {"actions": self.greedy(obs)}
        n = obs.shape[0]
        # Drawn with numpy's global generator (seeded by seed_everything, saved in checkpoints):
        # a numpy draw costs under a microsecond here and a torch op 2-5, and these draws are
        # most of a 1-env DQN's acting while epsilon is high.
        u = np.random.random_sample((2, n))
        explore = u[0] < self.epsilon
        # floor(u * A) of a float64 u in [0, 1) is uniform over the A actions
        actions = torch.from_numpy((u[1] * self.num_actions).astype(np.int64))
        # Not `self.num_steps += n`: that goes through nn.Module.__setattr__, 5 us a step. The
        # schedule runs on the env steps of all data-parallel ranks, as every other one does.
        object.__setattr__(self, "num_steps", self.num_steps + n * world_size())
        if explore.all():
            # The Q network's answer would go unused. On a GPU this skips a forward pass and a
            # wait for the device: SB3 skips them likewise, and early in training (epsilon near
            # 1) they were most of derl's GPU DQN step (0.55x SB3 on Breakout, 2026-12-04).
            return {"actions": actions}
        return {"actions": torch.where(torch.from_numpy(explore), actions, self.greedy(obs).cpu())}

    @torch.no_grad()
    def greedy(self, obs: Tensor) -> Tensor:
        return self.q_network.q_values(obs).argmax(-1)

    def env_actions(self, actions: Tensor) -> np.ndarray:
        return actions.cpu().numpy()


# CleanRL's bounds for SAC's log std, reached smoothly through a tanh (sac_continuous_action.py).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class BoxActor(nn.Module):
    """What SAC's and TD3's actors share: the action box, and uniform actions in it for the first
    `random_steps` env steps of training (as CleanRL and SB3: diverse first data).

    The warm-up counts env steps acted for in a buffer, so a resumed run knows where it is. Only a
    stochastic act in training mode counts and explores at random.
    """

    low: Tensor  # buffers
    high: Tensor
    steps_acted: Tensor

    def __init__(
        self, action_space: gym.spaces.Box, random_steps: int = 0, encoder: nn.Module | None = None
    ):
        super().__init__()
        self.encoder = encoder  # None: the MLP reads the observation as it is
        self.action_dim = action_space.shape[0]
        self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))
        self.register_buffer("steps_acted", torch.zeros((), dtype=torch.int64))
        self.random_steps = random_steps
        # The count only grows: once past the warm-up it is never read again, which on CUDA
        # would synchronise the device at every step. Loading a state may set it back.
        self.warmed_up = False
        self.register_load_state_dict_post_hook(_not_warmed_up)

    def encode(self, obs: Tensor) -> Tensor:
        return obs if self.encoder is None else self.encoder(obs)

    def warm_up_actions(self, obs: Tensor) -> Tensor | None:
        """Counts the steps of a training act; uniform actions while warming up, else None."""
        if not self.training:
            return None
        warming_up = not self.warmed_up and int(self.steps_acted) < self.random_steps
        # Global env steps (all data-parallel ranks), as `learning_starts` counts them.
        self.steps_acted.add_(obs.shape[0] * world_size())
        if not warming_up:
            self.warmed_up = True
            return None
        noise = torch.rand(obs.shape[0], self.action_dim, device=self.low.device)
        return self.low + (self.high - self.low) * noise

    def env_actions(self, actions: Tensor) -> np.ndarray:
        """Actions as the env takes them: numpy, clamped to the box against rounding."""
        return torch.maximum(torch.minimum(actions, self.high), self.low).cpu().numpy()


def _not_warmed_up(actor: BoxActor, incompatible_keys) -> None:
    actor.warmed_up = False


def _reread_steps(policy: EpsilonGreedyPolicy, incompatible_keys) -> None:
    policy.num_steps = int(policy.steps)


class SACPolicy(BoxActor):
    """The actor: obs -> SquashedNormal on the action box; uniform actions for `random_steps`.

    Deterministic acts (evaluation) always use the squashed mean. With `noise_type="pink"`,
    stochastic acts take their Gaussian noise from a pink noise sequence per env (a batch row).
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.spaces.Box,
        hidden: tuple[int, ...] = (256, 256),
        random_steps: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        encoder: nn.Module | None = None,
        noise_type: str = "normal",
        num_envs: int = 1,
    ):
        super().__init__(action_space, random_steps, encoder)
        # Outputs the mean and the log std of each action dimension.
        in_features = out_features(encoder) if encoder is not None else obs_dim
        self.net = MLP(in_features, hidden, activation, 2 * self.action_dim, orthogonal=False)
        # Pink noise in place of the i.i.d. N(0, 1) draw of acting (derl.noise); a submodule
        # only then, so that other checkpoints keep their keys.
        self.pink = PinkNoise(num_envs, self.action_dim) if noise_type == "pink" else None

    def forward(self, obs: Tensor) -> SquashedNormal:
        mean, log_std = self.net(self.encode(obs)).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return SquashedNormal(mean, log_std, self.low, self.high)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]:
        """Actions in the box for a batch of observations (no grad)."""
        if deterministic:
            return {"actions": self(obs).mode}
        random = self.warm_up_actions(obs)
        if random is not None:
            return {"actions": random}
        dist = self(obs)
        if self.pink is None:
            return {"actions": dist.rsample()}
        noise = self.pink(obs.shape[0])
        return {"actions": dist.squash(dist.loc + dist.log_std.exp() * noise)}


# Ornstein-Uhlenbeck acting noise: SB3's OrnsteinUhlenbeckActionNoise defaults (mean 0).
OU_THETA, OU_DT = 0.15, 1e-2


class TD3Policy(BoxActor):
    """The actor: obs -> an action in the box (tanh, rescaled); uniform for `random_steps` first,
    then with acting noise of `exploration_noise` half-widths of the box: i.i.d. Gaussian, or
    with `noise_type="ou"` an Ornstein-Uhlenbeck process per env (one per row of the batch).

    OU noise is correlated in time, x <- x - theta x dt + sigma sqrt(dt) N(0, 1), so an action
    is pushed the same way for hundreds of steps: what lets TD3 find the flag of
    MountainCarContinuous (rl-zoo's recipe). Its state is a buffer, so a resumed run continues
    the same process; unlike SB3's it is not reset at episode ends (the policy does not see
    them), which changes only where a new episode's noise starts.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.spaces.Box,
        hidden: tuple[int, ...] = (256, 256),
        random_steps: int = 0,
        exploration_noise: float = 0.1,
        activation: type[nn.Module] = nn.ReLU,
        encoder: nn.Module | None = None,
        noise_type: str = "normal",
        num_envs: int = 1,
    ):
        super().__init__(action_space, random_steps, encoder)
        in_features = out_features(encoder) if encoder is not None else obs_dim
        self.net = MLP(in_features, hidden, activation, self.action_dim, orthogonal=False)
        self.exploration_noise, self.noise_type = exploration_noise, noise_type
        if noise_type == "ou":  # only then: other checkpoints keep their keys
            self.register_buffer("ou_state", torch.zeros(num_envs, self.action_dim))
            self.other_ou: dict[int, Tensor] = {}  # processes of other batch sizes: ou_noisy

    def forward(self, obs: Tensor) -> Tensor:
        unit = torch.tanh(self.net(self.encode(obs)))
        return self.low + (self.high - self.low) * (unit + 1) / 2

    def noisy(self, actions: Tensor, scale: float, clip: float | None = None) -> Tensor:
        """`actions` plus N(0, scale) noise (clipped to +-clip) in half-widths, kept in the box."""
        half = (self.high - self.low) / 2
        noise = torch.randn_like(actions) * scale
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        return torch.maximum(torch.minimum(actions + noise * half, self.high), self.low)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]:
        if deterministic:
            return {"actions": self(obs)}
        random = self.warm_up_actions(obs)
        if random is not None:
            return {"actions": random}
        if self.noise_type == "ou":
            return {"actions": self.ou_noisy(self(obs))}
        return {"actions": self.noisy(self(obs), self.exploration_noise)}

    def ou_noisy(self, actions: Tensor) -> Tensor:
        """`actions` plus the next value of each env's OU process (half-widths), in the box."""
        state: Tensor = self.ou_state  # type: ignore[assignment]  # a buffer when noise_type="ou"
        if state.shape[0] != actions.shape[0]:
            # Another batch size than training's (a stochastic `derl eval` of one env, say): its
            # own processes, outside the state dict, so that training's never change.
            state = self.other_ou.setdefault(actions.shape[0], torch.zeros_like(actions))
        sigma = self.exploration_noise
        state.add_(-OU_THETA * OU_DT * state + sigma * OU_DT**0.5 * torch.randn_like(state))
        half = (self.high - self.low) / 2
        return torch.maximum(torch.minimum(actions + state * half, self.high), self.low)
