"""PPO with the clipped surrogate (Schulman et al. 2017, https://arxiv.org/abs/1707.06347)."""

from __future__ import annotations

import torch

from derl.alg.base import AlgLoss, entropy_bonus, explained_variance
from derl.policies import ActorCriticPolicy
from derl.types import Batch, LossOutput


class PPOLoss(AlgLoss):
    """-min(r A, clip(r, 1-e, 1+e) A)  +  c_v * value loss  -  c_e * entropy, r = pi / pi_old."""

    def __init__(
        self,
        policy: ActorCriticPolicy,
        clip_range: float = 0.1,
        value_loss_coef: float = 0.5,
        entropy_coef: float = 0.01,
        clip_value_loss: bool = True,
    ):
        self.policy, self.clip_range = policy, clip_range
        self.value_loss_coef, self.entropy_coef = value_loss_coef, entropy_coef
        self.clip_value_loss = clip_value_loss

    def __call__(self, batch: Batch) -> LossOutput:
        eps = self.clip_range
        actions, old_log_probs, old_values, adv, value_targets = batch.require(
            "actions", "log_probs", "values", "advantages", "value_targets"
        )
        dist, values = self.policy(batch.obs)
        log_ratio = dist.log_prob(actions) - old_log_probs
        ratio = log_ratio.exp()
        policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()

        value_loss = (values - value_targets).pow(2)
        if self.clip_value_loss:  # as in openai baselines' ppo2: stay near the old values too
            clipped = old_values + (values - old_values).clamp(-eps, eps)
            value_loss = torch.max(value_loss, (clipped - value_targets).pow(2))
        value_loss = 0.5 * value_loss.mean()

        loss = policy_loss + self.value_loss_coef * value_loss
        entropy = entropy_bonus(dist, self.entropy_coef)
        if entropy.requires_grad:
            loss = loss - self.entropy_coef * entropy
        with torch.no_grad():  # KL estimator k3 from http://joschu.net/blog/kl-approx.html
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > eps).float().mean()
        return LossOutput(
            loss,
            {
                "policy_loss": policy_loss.detach(),
                "value_loss": value_loss.detach(),
                "entropy": entropy.detach(),
                "approx_kl": approx_kl,
                "clip_fraction": clip_fraction,
                "explained_variance": explained_variance(old_values, value_targets),
            },
        )
