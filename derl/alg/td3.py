"""Twin Delayed DDPG (TD3) for continuous (Box) actions.

Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477: a deterministic actor, twin critics whose
minimum is the target (clipped double Q-learning), clipped Gaussian noise on the target action
(target policy smoothing), and actor and target updates every `policy_frequency` critic updates.
It shares SAC's parts: the replay runner, the twin critics, the action box and its warm-up.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import torch
from torch import Tensor

from derl.alg.base import Alg
from derl.alg.sac import BoxActor, TwinQ, critic_loss, mlp, set_requires_grad
from derl.types import Batch


class TD3Policy(BoxActor):
    """The actor: obs -> an action in the box (tanh, rescaled); acting adds Gaussian noise of
    `exploration_noise` half-widths of the box, and is uniform for `random_steps` first."""

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.spaces.Box,
        hidden: tuple[int, ...] = (256, 256),
        random_steps: int = 0,
        exploration_noise: float = 0.1,
    ):
        super().__init__(action_space, random_steps)
        self.net = mlp(obs_dim, self.action_dim, hidden)
        self.exploration_noise = exploration_noise

    def forward(self, obs: Tensor) -> Tensor:
        return self.low + (self.high - self.low) * (torch.tanh(self.net(obs)) + 1) / 2

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
        return {"actions": self.noisy(self(obs), self.exploration_noise)}


def td3_target(returns: Tensor, discounts: Tensor, next_q1: Tensor, next_q2: Tensor) -> Tensor:
    """y = r + discount * min_i Q'_i(s', a'), a' the target actor's smoothed action."""
    return returns + discounts * torch.min(next_q1, next_q2)


class TD3(Alg):
    """Per batch a critic update; every `policy_frequency` batches an actor update and Polyak
    updates of the target actor and critics. The actor is the runner's policy."""

    def __init__(
        self,
        runner,
        critic: TwinQ,
        lr: float = 3e-4,
        q_lr: float = 3e-4,
        tau: float = 0.005,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_frequency: int = 2,
    ):
        self.runner, self.policy, self.critic = runner, runner.policy, critic
        self.target_policy = copy.deepcopy(self.policy).requires_grad_(False)
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.critic_params = list(critic.parameters())
        self.online = [*self.policy.parameters(), *self.critic_params]
        self.targets = [*self.target_policy.parameters(), *self.target_critic.parameters()]
        self.tau, self.policy_frequency = tau, policy_frequency
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=q_lr, fused=True)
        self.num_updates = 0

    def step(self, batch: Batch) -> dict:
        with torch.no_grad():
            next_actions = self.target_policy(batch.next_obs)
            next_actions = self.policy.noisy(next_actions, self.policy_noise, self.noise_clip)
            next_q1, next_q2 = self.target_critic(batch.next_obs, next_actions)
            target = td3_target(batch.returns, batch.discounts, next_q1, next_q2)
        q1, q2 = self.critic(batch.obs, batch.actions)
        loss = critic_loss(q1, q2, target, batch.weights)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        self.num_updates += 1
        metrics = {"q1": q1.detach().mean(), "q2": q2.detach().mean(), "critic_loss": loss.detach()}
        if self.num_updates % self.policy_frequency == 0:
            metrics["actor_loss"] = self.update_actor(batch.obs)
            with torch.no_grad():
                torch._foreach_lerp_(self.targets, self.online, self.tau)
        return metrics

    def update_actor(self, obs: Tensor) -> Tensor:
        """J = -E[Q_1(s, pi(s))], the critic frozen: gradients flow to the actions only."""
        set_requires_grad(self.critic_params, False)
        q1, _ = self.critic(obs, self.policy(obs))
        set_requires_grad(self.critic_params, True)
        loss = -q1.mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
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
