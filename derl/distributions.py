"""Action distributions torch does not have: a product of categoricals (MultiDiscrete actions)
and SAC's tanh-squashed Gaussian on an action box."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution


class MultiCategorical(Distribution):
    """A product of independent categoricals; actions are [..., K] integer tensors."""

    arg_constraints: dict = {}

    def __init__(self, logits: tuple[Tensor, ...]):
        self.dists = [Categorical(logits=lg, validate_args=False) for lg in logits]
        super().__init__(batch_shape=self.dists[0].batch_shape, validate_args=False)

    def sample(self, sample_shape=()) -> Tensor:
        return torch.stack([d.sample(sample_shape) for d in self.dists], dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        return sum(d.log_prob(a) for d, a in zip(self.dists, actions.unbind(-1), strict=True))

    def entropy(self) -> Tensor:
        return sum(d.entropy() for d in self.dists)

    @property
    def mode(self) -> Tensor:
        return torch.stack([d.probs.argmax(-1) for d in self.dists], dim=-1)


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
        self.center: Tensor | float
        self.half: Tensor | float
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
