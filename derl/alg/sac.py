"""Soft Actor-Critic for continuous (Box) actions.

Haarnoja et al. 2018, https://arxiv.org/abs/1801.01290, with twin Q critics and the learned
temperature of "SAC Algorithms and Applications", https://arxiv.org/abs/1812.05905. The actor is a
tanh-squashed Gaussian rescaled to the action box; the critics regress on the soft Bellman target
of Polyak-averaged copies of themselves; the temperature alpha keeps the entropy near -dim(A).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor

from derl import optim
from derl.alg.base import Algorithm, polyak_update
from derl.distributed import average_gradients
from derl.models import TwinQ
from derl.policies import SACPolicy
from derl.types import Batch, Runner

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


def set_requires_grad(params: Sequence[Tensor], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


# -- the algorithm ------------------------------------------------------------------------------


class SAC(Algorithm):
    """Per batch: a critic update, an actor and temperature update, a Polyak target update.

    Three losses with three optimizers do not fit Alg's one loss and one optimizer, so `step` and
    the state dicts are SAC's own; `learn` is Algorithm's. The actor is the runner's policy.
    """

    def __init__(
        self,
        runner: Runner,
        critic: TwinQ,
        lr: float = 3e-4,
        q_lr: float = 3e-4,
        tau: float = 0.005,
        alpha: float = 1.0,
        autotune: bool = True,
        policy_frequency: int = 1,
    ):
        self.runner, self.critic = runner, critic
        self.policy = cast(SACPolicy, runner.policy)  # or a policy with SACPolicy's methods
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.critic_params: list[Tensor] = list(critic.parameters())
        self.target_params: list[Tensor] = list(self.target_critic.parameters())
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
        actions, next_obs, returns, discounts, weights = batch.require(
            "actions", "next_obs", "returns", "discounts", "weights"
        )
        with torch.no_grad():
            next_actions, next_log_prob = self.policy(next_obs).rsample_with_log_prob()
            next_q1, next_q2 = self.target_critic(next_obs, next_actions)
            target = soft_q_target(returns, discounts, next_q1, next_q2, next_log_prob, self.alpha)
        q1, q2 = self.critic(batch.obs, actions)
        loss = critic_loss(q1, q2, target, weights)
        optim.zero_grad(self.critic_optimizer)
        loss.backward()
        average_gradients(self.critic_params)  # over data-parallel ranks (derl.distributed)
        optim.step(self.critic_optimizer)
        return {"q1": q1.detach().mean(), "q2": q2.detach().mean(), "critic_loss": loss.detach()}

    def update_actor(self, obs: Tensor) -> dict:
        actions, log_prob = self.policy(obs).rsample_with_log_prob()
        set_requires_grad(self.critic_params, False)  # grads flow to the actions, not the critic
        q1, q2 = self.critic(obs, actions)
        set_requires_grad(self.critic_params, True)
        alpha = self.alpha
        loss = actor_loss(log_prob, q1, q2, alpha)
        optim.zero_grad(self.actor_optimizer)
        loss.backward()
        entropy = -log_prob.detach().mean()
        metrics = {"actor_loss": loss.detach(), "alpha": alpha, "entropy": entropy}
        if self.alpha_optimizer is not None:  # its loss sees log_prob detached: either order
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            optim.zero_grad(self.alpha_optimizer)
            alpha_loss.backward()
            metrics["alpha_loss"] = alpha_loss.detach()
        # Data-parallel ranks: one all-reduce for the actor's and the temperature's gradients.
        average_gradients([*self.policy.parameters(), self.log_alpha])
        optim.step(self.actor_optimizer)
        if self.alpha_optimizer is not None:
            optim.step(self.alpha_optimizer)
        return metrics

    def update_target(self) -> None:
        polyak_update(self.target_params, self.critic_params, self.tau)

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
