"""Twin Delayed DDPG (TD3) for continuous (Box) actions.

Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477: a deterministic actor, twin critics whose
minimum is the target (clipped double Q-learning), clipped Gaussian noise on the target action
(target policy smoothing), and actor and target updates every `policy_frequency` critic updates.
It shares SAC's parts: the replay runner, the twin critics, the action box and its warm-up.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor

from derl import optim
from derl.alg.base import Algorithm, polyak_update
from derl.alg.sac import critic_loss, set_requires_grad
from derl.distributed import average_gradients
from derl.models import TwinQ
from derl.policies import TD3Policy
from derl.types import Batch, Runner


def td3_target(returns: Tensor, discounts: Tensor, next_q1: Tensor, next_q2: Tensor) -> Tensor:
    """y = r + discount * min_i Q'_i(s', a'), a' the target actor's smoothed action."""
    return returns + discounts * torch.min(next_q1, next_q2)


class TD3(Algorithm):
    """Per batch a critic update; every `policy_frequency` batches an actor update and Polyak
    updates of the target actor and critics. The actor is the runner's policy."""

    def __init__(
        self,
        runner: Runner,
        critic: TwinQ,
        lr: float = 3e-4,
        q_lr: float = 3e-4,
        tau: float = 0.005,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_frequency: int = 2,
    ):
        self.runner, self.critic = runner, critic
        self.policy = cast(TD3Policy, runner.policy)  # or a policy with TD3Policy's methods
        self.target_policy = copy.deepcopy(self.policy).requires_grad_(False)
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.critic_params: list[Tensor] = list(critic.parameters())
        self.online: list[Tensor] = [*self.policy.parameters(), *self.critic_params]
        self.targets: list[Tensor] = [
            *self.target_policy.parameters(),
            *self.target_critic.parameters(),
        ]
        self.tau, self.policy_frequency = tau, policy_frequency
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=q_lr, fused=True)
        self.num_updates = 0

    def step(self, batch: Batch) -> dict:
        actions, next_obs, returns, discounts, weights = batch.require(
            "actions", "next_obs", "returns", "discounts", "weights"
        )
        with torch.no_grad():
            next_actions = self.target_policy(next_obs)
            next_actions = self.policy.noisy(next_actions, self.policy_noise, self.noise_clip)
            next_q1, next_q2 = self.target_critic(next_obs, next_actions)
            target = td3_target(returns, discounts, next_q1, next_q2)
        q1, q2 = self.critic(batch.obs, actions)
        loss = critic_loss(q1, q2, target, weights)
        optim.zero_grad(self.critic_optimizer)
        loss.backward()
        average_gradients(self.critic_params)  # over data-parallel ranks (derl.distributed)
        optim.step(self.critic_optimizer)
        self.num_updates += 1
        metrics = {"q1": q1.detach().mean(), "q2": q2.detach().mean(), "critic_loss": loss.detach()}
        if self.num_updates % self.policy_frequency == 0:
            metrics["actor_loss"] = self.update_actor(batch.obs)
            polyak_update(self.targets, self.online, self.tau)
        return metrics

    def update_actor(self, obs: Tensor) -> Tensor:
        """J = -E[Q_1(s, pi(s))], the critic frozen: gradients flow to the actions only."""
        set_requires_grad(self.critic_params, False)
        actions = self.policy(obs)
        q1 = (
            self.critic.q1(obs, actions)
            if hasattr(self.critic, "q1")
            else self.critic(obs, actions)[0]
        )
        set_requires_grad(self.critic_params, True)
        loss = -q1.mean()
        optim.zero_grad(self.actor_optimizer)
        loss.backward()
        average_gradients(self.policy.parameters())
        optim.step(self.actor_optimizer)
        return loss.detach()

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_policy": self.target_policy.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "num_updates": self.num_updates,
            "runner": self.runner.state_dict(),  # with the replay buffer, if it is saved
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_policy.load_state_dict(state["target_policy"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.num_updates = state["num_updates"]
        self.runner.load_state_dict(state["runner"])
