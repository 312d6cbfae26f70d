"""DQN (Mnih et al. 2015) with every Rainbow part (Hessel et al. 2018, arXiv:1710.02298):
double Q-learning, dueling heads, n-step returns, prioritized replay, noisy nets and C51."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derl.alg.base import Alg, AlgLoss
from derl.alg.targets import categorical_projection
from derl.models import MLP, NatureCNN, is_image
from derl.noisy import DuelingHead, NoisyLinear
from derl.types import Batch, LossOutput


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
) -> QNetwork:
    """NatureCNN convolutions for images, a ReLU MLP for vectors, then a (dueling) head."""
    if is_image(observation_space):
        torso, hidden = NatureCNN(observation_space.shape[0], features=None), hidden or 512
    else:
        hidden = hidden or 256
        torso = MLP(observation_space.shape[0], (hidden,), activation=nn.ReLU)
    if dueling:
        head = DuelingHead(torso.out_features, num_actions, atoms, noisy, hidden=hidden)
    else:
        linear = NoisyLinear if noisy else nn.Linear
        head = nn.Sequential(
            linear(torso.out_features, hidden), nn.ReLU(), linear(hidden, num_actions * atoms)
        )
        if atoms > 1:
            head.append(nn.Unflatten(-1, (num_actions, atoms)))
    support = torch.linspace(*v_range, atoms) if atoms > 1 else None
    return QNetwork(torso, head, support)


class EpsilonGreedyPolicy(nn.Module):
    """Greedy in Q, random with probability epsilon, decided per env; epsilon is annealed
    linearly over the env steps this policy has acted for (kept in its state)."""

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

    @property
    def epsilon(self) -> float:
        frac = min(self.steps.item() / self.exploration_steps, 1.0)
        return self.initial_eps + (self.final_eps - self.initial_eps) * frac

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]:
        if deterministic:
            return {"actions": self.q_network.q_values(obs).argmax(-1)}
        n = obs.shape[0]
        explore = torch.rand(n, device=obs.device) < self.epsilon
        actions = torch.randint(self.num_actions, (n,), device=obs.device)
        self.steps += n
        if not explore.all():  # when every env explores, the Q network's answer goes unused
            actions = torch.where(explore, actions, self.q_network.q_values(obs).argmax(-1))
        return {"actions": actions}

    def env_actions(self, actions: Tensor) -> np.ndarray:
        return actions.cpu().numpy()


class DQNLoss(AlgLoss):
    """TD error of Q(s, a) towards R + gamma^n Q_target(s', argmax_a' Q(s', a')), Huber-weighted
    by importance weights; or, with atoms, the cross-entropy to the projected target
    distribution (C51, Bellemare et al. 2017)."""

    def __init__(self, q_network: QNetwork, target: QNetwork, double: bool = True):
        self.q_network, self.target, self.double = q_network, target, double

    @torch.no_grad()
    def next_actions(self, next_obs: Tensor) -> Tensor:
        chooser = self.q_network if self.double else self.target
        return chooser.q_values(next_obs).argmax(-1)

    def __call__(self, batch: Batch) -> LossOutput:
        if self.q_network.distributional:
            return self.distributional(batch)
        q = self.q_network(batch.obs).gather(1, batch.actions.long()[:, None]).squeeze(1)
        with torch.no_grad():
            next_q = self.target(batch.next_obs)
            if self.double:
                next_q = next_q.gather(1, self.next_actions(batch.next_obs)[:, None]).squeeze(1)
            else:
                next_q = next_q.max(1).values  # the target's own argmax: one forward, not two
            target = batch.returns + batch.discounts * next_q
        td = target - q
        loss = (batch.weights * F.huber_loss(q, target, reduction="none")).mean()
        return LossOutput(
            loss,
            {"q": q.detach().mean(), "td_error": td.detach().abs().mean()},
            td_errors=td.detach(),
        )

    def distributional(self, batch: Batch) -> LossOutput:
        rows = torch.arange(len(batch.actions), device=batch.actions.device)
        log_probs = self.q_network(batch.obs).log_softmax(-1)[rows, batch.actions.long()]
        with torch.no_grad():
            next_logits = self.target(batch.next_obs)[rows, self.next_actions(batch.next_obs)]
            target = categorical_projection(
                next_logits.softmax(-1), batch.returns, batch.discounts, self.q_network.support
            )
        cross_entropy = -(target * log_probs).sum(-1)  # the priority too, as in Rainbow
        q = (log_probs.exp() * self.q_network.support).sum(-1)
        loss = (batch.weights * cross_entropy).mean()
        return LossOutput(
            loss,
            {"q": q.detach().mean(), "td_error": cross_entropy.detach().mean()},
            td_errors=cross_entropy.detach(),
        )


class DQN(Alg):
    """Alg plus what DQN does after each update: priorities, the target network, new noise."""

    def __init__(
        self,
        runner,
        loss: DQNLoss,
        optimizer,
        max_grad_norm: float | None,
        target_update_period: int,
        tau: float = 1.0,
    ):
        super().__init__(runner, loss, optimizer, max_grad_norm)
        self.target_update_period, self.tau = target_update_period, tau
        self.last_target_update = 0
        networks = (loss.q_network, loss.target)
        self.noisy_layers = [m for n in networks for m in n.modules() if isinstance(m, NoisyLinear)]

    def after_update(self, out: LossOutput) -> None:
        self.runner.update_priorities(out.td_errors)
        step = self.runner.step_count
        if step - self.last_target_update >= self.target_update_period:
            online, target = self.loss.q_network.parameters(), self.loss.target.parameters()
            torch._foreach_lerp_(list(target), list(online), self.tau)  # tau 1: a hard copy
            self.last_target_update = step
        for layer in self.noisy_layers:
            layer.reset_noise()  # new noise per update, not per forward pass

    def step(self, batch: Batch) -> dict:
        metrics = super().step(batch)
        policy = self.runner.policy
        return {**metrics, "epsilon": policy.epsilon, "per_beta": self.runner.beta}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "target": self.loss.target.state_dict(),
            "last_target_update": self.last_target_update,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.loss.target.load_state_dict(state["target"])
        self.last_target_update = state["last_target_update"]


def make_target(q_network: QNetwork) -> QNetwork:
    """A frozen copy to bootstrap from."""
    target = copy.deepcopy(q_network)
    target.requires_grad_(False)
    return target
