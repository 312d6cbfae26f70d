"""DQN (Mnih et al. 2015) with every Rainbow part (Hessel et al. 2018, arXiv:1710.02298):
double Q-learning, dueling heads, n-step returns, prioritized replay, noisy nets and C51."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from derl.alg.base import Alg, AlgLoss, polyak_update
from derl.models import QNetwork
from derl.noisy import NoisyLinear, reset_noise
from derl.policies import EpsilonGreedyPolicy
from derl.returns import categorical_projection
from derl.types import Batch, LossOutput, Runner

if TYPE_CHECKING:
    from derl.runners.replay import ExperienceReplay


class DQNLoss(AlgLoss):
    """TD error of Q(s, a) towards R + gamma^n Q_target(s', argmax_a' Q(s', a')), Huber (Nature
    DQN, SB3) or squared (`td_loss="mse"`, CleanRL), weighted by importance weights; or, with
    atoms, the cross-entropy to the projected target distribution (C51, Bellemare et al. 2017).

    Huber's gradient is capped at |TD| = 1, so the few terminal transitions (target r) cannot pull
    Q down against the many bootstrapped ones: with CleanRL's CartPole settings (lr 2.5e-4, one
    update per 10 steps, target copied every 500) Q then grows without bound (1e4 by 40k steps)
    and the greedy policy is constant; with MSE the same run learns.
    """

    def __init__(
        self, q_network: QNetwork, target: QNetwork, double: bool = True, td_loss: str = "huber"
    ):
        if td_loss not in ("huber", "mse"):
            raise ValueError(f"td_loss must be huber or mse, got {td_loss!r}")
        self.q_network, self.target, self.double = q_network, target, double
        self.td_loss = F.huber_loss if td_loss == "huber" else F.mse_loss

    @torch.no_grad()
    def next_actions(self, next_obs: Tensor) -> Tensor:
        chooser = self.q_network if self.double else self.target
        return chooser.q_values(next_obs).argmax(-1)

    def __call__(self, batch: Batch) -> LossOutput:
        if self.q_network.distributional:
            return self.distributional(batch)
        actions, next_obs, returns, discounts, weights = batch.require(
            "actions", "next_obs", "returns", "discounts", "weights"
        )
        q = self.q_network(batch.obs).gather(1, actions.long()[:, None]).squeeze(1)
        with torch.no_grad():
            next_q = self.target(next_obs)
            if self.double:
                next_q = next_q.gather(1, self.next_actions(next_obs)[:, None]).squeeze(1)
            else:
                next_q = next_q.max(1).values  # the target's own argmax: one forward, not two
            target = returns + discounts * next_q
        td = target - q
        loss = (weights * self.td_loss(q, target, reduction="none")).mean()
        return LossOutput(
            loss,
            {"q": q.detach().mean(), "td_error": td.detach().abs().mean()},
            td_errors=td.detach(),
        )

    def distributional(self, batch: Batch) -> LossOutput:
        actions, next_obs, returns, discounts, weights = batch.require(
            "actions", "next_obs", "returns", "discounts", "weights"
        )
        rows = torch.arange(len(actions), device=actions.device)
        log_probs = self.q_network(batch.obs).log_softmax(-1)[rows, actions.long()]
        with torch.no_grad():
            next_logits = self.target(next_obs)[rows, self.next_actions(next_obs)]
            target = categorical_projection(
                next_logits.softmax(-1), returns, discounts, self.q_network.support
            )
        cross_entropy = -(target * log_probs).sum(-1)  # the priority too, as in Rainbow
        q = (log_probs.exp() * self.q_network.support).sum(-1)
        loss = (weights * cross_entropy).mean()
        return LossOutput(
            loss,
            {"q": q.detach().mean(), "td_error": cross_entropy.detach().mean()},
            td_errors=cross_entropy.detach(),
        )


class DQN(Alg):
    """Alg plus what DQN does after each update: priorities, the target network, new noise.

    `replay` is the ExperienceReplay the batches come from (the runner, or inside it): DQN
    hands it the TD errors of each batch as priorities and logs its importance exponent.
    """

    loss: DQNLoss
    replay: ExperienceReplay

    def __init__(
        self,
        runner: Runner,
        loss: DQNLoss,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float | None,
        target_update_period: int,
        tau: float = 1.0,
        replay: ExperienceReplay | None = None,
        schedules: dict[str, Callable[[int], float]] | None = None,
    ):
        super().__init__(runner, loss, optimizer, max_grad_norm, schedules)
        self.replay = replay if replay is not None else cast("ExperienceReplay", runner)
        self.target_update_period, self.tau = target_update_period, tau
        self.last_target_update = 0
        self.online_params: list[Tensor] = list(loss.q_network.parameters())
        self.target_params: list[Tensor] = list(loss.target.parameters())
        # Noisy nets explore with new noise every `train_freq` env steps (every rollout), from
        # the first step on: with noise drawn only per update, one near-deterministic policy
        # would fill the whole warm-up part of the buffer.
        # Only a noisy network has noise to redraw: walking a plain one's modules three times
        # per update cost a 1-env CartPole run about 5% of its time.
        self.noisy = any(isinstance(m, NoisyLinear) for m in loss.q_network.modules())
        if self.noisy:
            runner.hooks.append(lambda step: reset_noise(loss.q_network))

    def after_update(self, out: LossOutput) -> None:
        if out.td_errors is not None:
            self.replay.update_priorities(out.td_errors)
        step = self.runner.step_count
        if step - self.last_target_update >= self.target_update_period:
            polyak_update(self.target_params, self.online_params, self.tau)  # tau 1: a copy
            self.last_target_update = step
        if self.noisy:
            reset_noise(self.loss.q_network)  # new noise per update, not per forward pass
            reset_noise(self.loss.target)

    def step(self, batch: Batch) -> dict:
        metrics = super().step(batch)
        policy = cast(EpsilonGreedyPolicy, self.runner.policy)
        return {**metrics, "epsilon": policy.epsilon, "per_beta": self.replay.beta}

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
