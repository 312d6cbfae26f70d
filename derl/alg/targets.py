"""Targets of off-policy learning: n-step returns, the C51 projection, SAC's squashed Gaussian."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution


def nstep_returns(
    rewards: Tensor, terminated: Tensor, truncated: Tensor, gamma: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Discounted sums of [B, n] reward windows, cut after the first step that ends an episode.

    Returns (returns, bootstrap_discount, steps), each [B]. The target of a window starting at t
    is returns + bootstrap_discount * V(obs[t + steps]). A window that runs out of steps or ends
    in a truncation bootstraps with gamma^steps (after a truncation obs[t + steps] is the real
    final observation); one that ends in a termination has discount 0. Entries after the first
    end may hold anything (the next episode, NaN): they are ignored.
    """
    n = rewards.shape[1]
    if n == 1:  # the same values, in fewer ops (1-step DQN and SAC sample this every update)
        steps = torch.ones(len(rewards), dtype=torch.long, device=rewards.device)
        return rewards[:, 0], gamma * (~terminated[:, 0].bool()).to(rewards.dtype), steps
    ends = terminated.bool() | truncated.bool()
    ended_before = (ends.int().cumsum(dim=1) - ends.int()) > 0  # an earlier step ended it
    inside = ~ended_before
    steps = inside.sum(dim=1)
    powers = gamma ** torch.arange(n + 1, dtype=rewards.dtype, device=rewards.device)
    returns = (torch.where(inside, rewards, 0.0) * powers[:n]).sum(dim=1)
    ends_terminal = terminated.bool().gather(1, (steps - 1)[:, None]).squeeze(1)
    bootstrap_discount = torch.where(ends_terminal, 0.0, powers[steps])
    return returns, bootstrap_discount, steps


def categorical_projection(
    next_probs: Tensor, returns: Tensor, discounts: Tensor, support: Tensor
) -> Tensor:
    """C51's target: the distribution of returns + discounts * Z' projected onto `support`.

    Algorithm 1 of Bellemare et al. 2017 (https://arxiv.org/abs/1707.06887): atom z_j of the next
    distribution moves to Tz_j = r + discount * z_j, clamped to [v_min, v_max], and its probability
    is split between the two nearest atoms in proportion to closeness. Shapes: next_probs
    [B, atoms], returns and discounts [B] (discount 0: all mass at r), `support` [atoms] evenly
    spaced. Each row keeps its total mass.
    """
    atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (atoms - 1)
    tz = (returns[:, None] + discounts[:, None] * support).clamp(v_min, v_max)
    b = ((tz - v_min) / delta).clamp(0, atoms - 1)  # rounding can push b past the last atom
    # Neighbours lower and lower + 1, with lower <= atoms - 2. The paper's floor/ceil gives
    # l == u when b hits an atom exactly, and both weights (u - b, b - l) are 0, losing the mass;
    # here an exact hit gets weight 1 on `lower` (or on lower + 1 for b = atoms - 1).
    lower = b.floor().clamp(max=atoms - 2)
    upper_weight = b - lower
    lower = lower.long()
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(1, lower, next_probs * (1 - upper_weight))
    projected.scatter_add_(1, lower + 1, next_probs * upper_weight)
    return projected


def tanh_log_abs_det(pre_tanh: Tensor) -> Tensor:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), finite where tanh(u) rounds to +-1."""
    # SAC (https://arxiv.org/abs/1801.01290) Appendix C; the stable form as in Spinning Up.
    return 2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))


def squashed_gaussian_log_prob(
    mean: Tensor,
    log_std: Tensor,
    pre_tanh: Tensor,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
) -> Tensor:
    """log density of a = tanh(u), u ~ N(mean, exp(log_std)), summed over the last dim.

    With `low` and `high` the action is rescaled to the box, a = c + h tanh(u) with
    c = (high + low) / 2 and h = (high - low) / 2, which subtracts sum(log h) more.
    """
    normal = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    log_det = tanh_log_abs_det(pre_tanh)
    if low is not None:
        log_det = log_det + _box(low, high, mean)[1].log()
    return (normal - log_det).sum(-1)


def _box(low, high, like: Tensor) -> tuple[Tensor, Tensor]:
    """(center, half width) of an action box, as tensors of `like`'s dtype and device."""
    low, high = (torch.as_tensor(x, dtype=like.dtype, device=like.device) for x in (low, high))
    return (high + low) / 2, (high - low) / 2


class SquashedNormal(Distribution):
    """tanh(N(mean, exp(log_std))), optionally rescaled to [low, high]: SAC's policy for a Box.

    The last dim is the action. SAC should take `rsample_with_log_prob`, whose log-prob comes from
    the pre-tanh sample; `log_prob(action)` must undo tanh with atanh, inaccurate near the bounds.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, mean: Tensor, log_std: Tensor, low=None, high=None):
        self.loc, self.log_std = mean, log_std
        self.low, self.high = low, high
        self.center, self.half = (0.0, 1.0) if low is None else _box(low, high, mean)
        super().__init__(mean.shape[:-1], mean.shape[-1:], validate_args=False)

    def squash(self, pre_tanh: Tensor) -> Tensor:
        return self.center + self.half * torch.tanh(pre_tanh)

    def rsample_with_log_prob(self, sample_shape=()) -> tuple[Tensor, Tensor]:
        """A reparameterised action and its log-prob (exact even where tanh saturates)."""
        noise = torch.randn(
            self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device
        )
        pre_tanh = self.loc + self.log_std.exp() * noise
        log_prob = squashed_gaussian_log_prob(self.loc, self.log_std, pre_tanh, self.low, self.high)
        return self.squash(pre_tanh), log_prob

    def rsample(self, sample_shape=()) -> Tensor:
        return self.rsample_with_log_prob(sample_shape)[0]

    def log_prob(self, action: Tensor) -> Tensor:
        # Clamp inside (-1, 1), where atanh is finite; the log-prob there is only approximate.
        eps = torch.finfo(action.dtype).eps
        unit = ((action - self.center) / self.half).clamp(-1 + eps, 1 - eps)
        return squashed_gaussian_log_prob(
            self.loc, self.log_std, torch.atanh(unit), self.low, self.high
        )

    @property
    def mode(self) -> Tensor:
        """The squashed mean: SAC's deterministic action (not the density's exact mode)."""
        return self.squash(self.loc)
