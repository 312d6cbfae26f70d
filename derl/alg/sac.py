"""Soft Actor-Critic for continuous (Box) actions.

Haarnoja et al. 2018, https://arxiv.org/abs/1801.01290, with twin Q critics and the learned
temperature of "SAC Algorithms and Applications", https://arxiv.org/abs/1812.05905. The actor is a
tanh-squashed Gaussian rescaled to the action box; the critics regress on the soft Bellman target
of Polyak-averaged copies of themselves; the temperature alpha keeps the entropy near -dim(A).
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from derl.alg.base import Alg
from derl.alg.targets import SquashedNormal
from derl.types import Batch

# CleanRL's bounds for the log std, reached smoothly through a tanh (sac_continuous_action.py).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(in_features: int, out_features: int, hidden: tuple[int, ...] = (256, 256)) -> nn.Sequential:
    """ReLU MLP with PyTorch's default init, as in the SAC paper, CleanRL and SB3."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_features, size), nn.ReLU()]
        in_features = size
    return nn.Sequential(*layers, nn.Linear(in_features, out_features))


class BoxActor(nn.Module):
    """What SAC's and TD3's actors share: the action box, and uniform actions in it for the first
    `random_steps` env steps of training (as CleanRL and SB3: diverse first data).

    The warm-up counts env steps acted for in a buffer, so a resumed run knows where it is. Only a
    stochastic act in training mode counts and explores at random.
    """

    def __init__(self, action_space: gym.spaces.Box, random_steps: int = 0):
        super().__init__()
        self.action_dim = action_space.shape[0]
        self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))
        self.register_buffer("steps_acted", torch.zeros((), dtype=torch.int64))
        self.random_steps = random_steps

    def warm_up_actions(self, obs: Tensor) -> Tensor | None:
        """Counts the steps of a training act; uniform actions while warming up, else None."""
        if not self.training:
            return None
        warming_up = int(self.steps_acted) < self.random_steps
        self.steps_acted += obs.shape[0]
        if not warming_up:
            return None
        noise = torch.rand(obs.shape[0], self.action_dim, device=self.low.device)
        return self.low + (self.high - self.low) * noise

    def env_actions(self, actions: Tensor) -> np.ndarray:
        """Actions as the env takes them: numpy, clamped to the box against rounding."""
        return torch.maximum(torch.minimum(actions, self.high), self.low).cpu().numpy()


class SACPolicy(BoxActor):
    """The actor: obs -> SquashedNormal on the action box; uniform actions for `random_steps`.

    Deterministic acts (evaluation) always use the squashed mean.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.spaces.Box,
        hidden: tuple[int, ...] = (256, 256),
        random_steps: int = 0,
    ):
        super().__init__(action_space, random_steps)
        self.net = mlp(obs_dim, 2 * self.action_dim, hidden)  # mean and log std

    def forward(self, obs: Tensor) -> SquashedNormal:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return SquashedNormal(mean, log_std, self.low, self.high)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]:
        """Actions in the box for a batch of observations (no grad)."""
        if deterministic:
            return {"actions": self(obs).mode}
        random = self.warm_up_actions(obs)
        return {"actions": random if random is not None else self(obs).rsample()}


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


# -- the losses: pure maths on tensors --------------------------------------------------------


def soft_q_target(
    returns: Tensor,
    discounts: Tensor,
    next_q1: Tensor,
    next_q2: Tensor,
    next_log_prob: Tensor,
    alpha: Tensor | float,
) -> Tensor:
    """Soft target y = r + discount * (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s')."""
    return returns + discounts * (torch.min(next_q1, next_q2) - alpha * next_log_prob)


def critic_loss(q1: Tensor, q2: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """J_Q = E[w (Q_1 - y)^2 / 2] + E[w (Q_2 - y)^2 / 2], w the replay's importance weights."""
    return 0.5 * (weights * ((q1 - target).pow(2) + (q2 - target).pow(2))).mean()


def actor_loss(log_prob: Tensor, q1: Tensor, q2: Tensor, alpha: Tensor | float) -> Tensor:
    """J_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(s) reparameterised."""
    return (alpha * log_prob - torch.min(q1, q2)).mean()


def temperature_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """J(alpha) = E[-log alpha (log pi + H_target)]: alpha grows while entropy < H_target.

    https://arxiv.org/abs/1812.05905 (automating entropy adjustment), written on log alpha as in
    the authors' code and SB3, so alpha stays positive.
    """
    return -(log_alpha * (log_prob + target_entropy).detach()).mean()


def set_requires_grad(params: list[Tensor], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


# -- the algorithm ------------------------------------------------------------------------------


class SAC(Alg):
    """Per batch: a critic update, an actor and temperature update, a Polyak target update.

    Three losses with three optimizers do not fit Alg's one loss and one optimizer, so `step` and
    the state dicts are SAC's own; `learn` is Alg's. The actor is the runner's policy.
    """

    def __init__(
        self,
        runner,
        critic: TwinQ,
        lr: float = 3e-4,
        q_lr: float = 3e-4,
        tau: float = 0.005,
        alpha: float = 1.0,
        autotune: bool = True,
        policy_frequency: int = 1,
    ):
        self.runner, self.policy, self.critic = runner, runner.policy, critic
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.critic_params = list(critic.parameters())
        self.target_params = list(self.target_critic.parameters())
        self.tau, self.policy_frequency = tau, policy_frequency
        device = next(critic.parameters()).device
        self.log_alpha = torch.tensor(float(np.log(alpha)), device=device, requires_grad=autotune)
        self.target_entropy = -float(self.policy.action_dim)  # the paper's heuristic -dim(A)
        # fused Adam: one kernel for all parameters, faster updates of small MLPs on CPU.
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=q_lr, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr) if autotune else None
        self.num_updates = 0

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    def step(self, batch: Batch) -> dict:
        """One SAC update on a replay batch; returns the metrics to log."""
        metrics = self.update_critic(batch)
        self.num_updates += 1
        # Delayed policy updates (TD3, as CleanRL's SAC): every `policy_frequency` critic updates,
        # `policy_frequency` actor updates, so the actor takes as many steps as the critic.
        if self.num_updates % self.policy_frequency == 0:
            for _ in range(self.policy_frequency):
                metrics.update(self.update_actor(batch.obs))
        self.update_target()
        return metrics

    def update_critic(self, batch: Batch) -> dict:
        with torch.no_grad():
            next_actions, next_log_prob = self.policy(batch.next_obs).rsample_with_log_prob()
            next_q1, next_q2 = self.target_critic(batch.next_obs, next_actions)
            target = soft_q_target(
                batch.returns, batch.discounts, next_q1, next_q2, next_log_prob, self.alpha
            )
        q1, q2 = self.critic(batch.obs, batch.actions)
        loss = critic_loss(q1, q2, target, batch.weights)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"q1": q1.detach().mean(), "q2": q2.detach().mean(), "critic_loss": loss.detach()}

    def update_actor(self, obs: Tensor) -> dict:
        actions, log_prob = self.policy(obs).rsample_with_log_prob()
        set_requires_grad(self.critic_params, False)  # grads flow to the actions, not the critic
        q1, q2 = self.critic(obs, actions)
        set_requires_grad(self.critic_params, True)
        alpha = self.alpha
        loss = actor_loss(log_prob, q1, q2, alpha)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        entropy = -log_prob.detach().mean()
        metrics = {"actor_loss": loss.detach(), "alpha": alpha, "entropy": entropy}
        if self.alpha_optimizer is not None:
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            metrics["alpha_loss"] = alpha_loss.detach()
        return metrics

    @torch.no_grad()
    def update_target(self) -> None:
        """Polyak averaging: target <- (1 - tau) target + tau online, in one fused op."""
        torch._foreach_lerp_(self.target_params, self.critic_params, self.tau)

    def state_dict(self) -> dict:
        alpha_optimizer = self.alpha_optimizer
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": None if alpha_optimizer is None else alpha_optimizer.state_dict(),
            "num_updates": self.num_updates,
            "runner": self.runner.state_dict(),  # with the replay buffer, if it is saved
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.num_updates = state["num_updates"]
        self.runner.load_state_dict(state["runner"])
