"""Rollout transforms: GAE, merging time and batch, advantage normalisation."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
from torch import Tensor

from derl.returns import gae
from derl.types import Batch, Rollout


class ValuePolicy(Protocol):
    """A policy with a value head (actor-critics)."""

    def value(self, obs: Tensor) -> Tensor: ...


class GAE:
    """A rollout with `advantages` and `value_targets` (= advantages + values) added: a new
    rollout, the one it was given is left as it was.

    `recompute_values`: the values of the rollout's observations come from the policy's critic
    now, not from acting time, and replace them (for PPO's per-epoch recomputation)."""

    def __init__(
        self,
        policy: ValuePolicy,
        gamma: float = 0.99,
        lam: float = 0.95,
        recompute_values: bool = False,
    ):
        self.policy, self.gamma, self.lam = policy, gamma, lam
        self.recompute_values = recompute_values

    def __call__(self, rollout: Rollout) -> Rollout:
        steps = rollout.steps
        rewards, values, terminated, truncated = steps.require(
            "rewards", "values", "terminated", "truncated"
        )
        if self.recompute_values:
            values = self.policy.value(steps.obs.flatten(0, 1)).view_as(values)
        final_values = torch.zeros_like(values)
        if len(rollout.final_index):
            t, i = rollout.final_index.unbind(1)
            final_values[t, i] = self.policy.value(rollout.final_obs)
        advantages = gae(
            rewards,
            values,
            self.policy.value(rollout.last_obs),
            terminated,
            truncated,
            final_values,
            self.gamma,
            self.lam,
        )
        steps = steps.replace(
            values=values, advantages=advantages, value_targets=advantages + values
        )
        return dataclasses.replace(rollout, steps=steps)


class MergeTimeBatch:
    """[T, N, ...] rollout steps -> one [T * N, ...] batch."""

    def __call__(self, rollout: Rollout) -> Batch:
        return rollout.steps.map(lambda v: v.flatten(0, 1))


class NormalizeAdvantages:
    """Advantages to zero mean and unit std within a batch (as in openai baselines' PPO)."""

    def __init__(self, eps: float = 1e-8):
        self.eps = eps
        self.last: tuple[Batch, Batch] | None = None

    def __call__(self, batch: Batch) -> Batch:
        # With one minibatch per epoch, Minibatches hands over the same batch every epoch.
        if self.last is not None and self.last[0] is batch:
            return self.last[1]
        (adv,) = batch.require("advantages")
        normalized = batch.replace(advantages=(adv - adv.mean()) / (adv.std() + self.eps))
        self.last = (batch, normalized)
        return normalized
