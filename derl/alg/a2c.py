"""A2C (Mnih et al. 2016, https://arxiv.org/abs/1602.01783), the synchronous variant."""

from __future__ import annotations

from derl.alg.base import AlgLoss, entropy_bonus, explained_variance
from derl.policies import ActorCriticPolicy
from derl.types import Batch, LossOutput


class A2CLoss(AlgLoss):
    """-log pi(a|s) * A  +  c_v * (V(s) - R)^2 / 2  -  c_e * H[pi(.|s)].

    The squared error is halved as in PPOLoss, so `value_loss_coef` means the same in both:
    1.0 is baselines' and SB3's vf_coef of 0.5 on the plain mean squared error.
    """

    def __init__(
        self, policy: ActorCriticPolicy, value_loss_coef: float = 1.0, entropy_coef: float = 0.01
    ):
        self.policy, self.value_loss_coef, self.entropy_coef = policy, value_loss_coef, entropy_coef

    def __call__(self, batch: Batch) -> LossOutput:
        actions, old_values, advantages, value_targets = batch.require(
            "actions", "values", "advantages", "value_targets"
        )
        dist, values = self.policy(batch.obs)
        policy_loss = -(dist.log_prob(actions) * advantages).mean()
        value_loss = 0.5 * (values - value_targets).pow(2).mean()
        loss = policy_loss + self.value_loss_coef * value_loss
        entropy = entropy_bonus(dist, self.entropy_coef)
        if entropy.requires_grad:
            loss = loss - self.entropy_coef * entropy
        return LossOutput(
            loss,
            {
                "policy_loss": policy_loss.detach(),
                "value_loss": value_loss.detach(),
                "entropy": entropy.detach(),
                "explained_variance": explained_variance(old_values, value_targets),
            },
        )
