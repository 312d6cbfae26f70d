"""Action distributions: torch's categorical without its per-call checks, a product of
categoricals (MultiDiscrete actions) and SAC's tanh-squashed Gaussian on an action box."""

from __future__ import annotations

import functools
import math
import operator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution


class Categorical(torch.distributions.Categorical):
    """torch's Categorical, the same numbers, without the checks that cost it most per call.

    `sample` draws as `torch.multinomial`'s one-sample path does, argmax(p / q) with q ~ Exp(1)
    (the same random numbers, so the same actions and the same RNG state after), but skips its
    validation of p: four ops and two host syncs a call, which stall a CUDA rollout every step
    and took 60 of the 360 us of a PPO CartPole act on the CPU. `log_prob` of one action per
    row gathers it without broadcasting first. tests/test_distributions.py holds both to torch's.
    https://github.com/pytorch/pytorch/issues/11931#issuecomment-625882503 (the argmax trick)
    """

    def sample(self, sample_shape=()) -> Tensor:
        if sample_shape:
            return super().sample(sample_shape)
        probs = self.probs
        return (probs / torch.empty_like(probs).exponential_(1)).argmax(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if value.shape != self.logits.shape[:-1]:
            return super().log_prob(value)
        return self.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)


class MultiCategorical(Distribution):
    """A product of independent categoricals; actions are [..., K] integer tensors."""

    arg_constraints: dict = {}

    def __init__(self, logits: tuple[Tensor, ...]):
        self.dists = [Categorical(logits=lg, validate_args=False) for lg in logits]
        super().__init__(batch_shape=self.dists[0].batch_shape, validate_args=False)

    def sample(self, sample_shape=()) -> Tensor:
        return torch.stack([d.sample(sample_shape) for d in self.dists], dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        parts = [d.log_prob(a) for d, a in zip(self.dists, actions.unbind(-1), strict=True)]
        return functools.reduce(operator.add, parts)

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
