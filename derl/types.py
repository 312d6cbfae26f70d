"""Containers that flow between layers: rollouts from runners, batches into losses, loss outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from torch import Tensor


class Batch(SimpleNamespace):
    """Named tensors: `batch.obs`, `vars(batch)`. Merged batches are [B, ...]."""

    def __len__(self) -> int:
        return len(next(iter(vars(self).values())))

    def index(self, idx) -> Batch:
        """The same fields at `idx` along the first dimension."""
        return Batch(**{k: v[idx] for k, v in vars(self).items()})


@dataclass
class Rollout:
    """T steps of N envs from an EnvRunner.

    steps: obs, actions, log_probs, values, rewards, terminated, truncated, each [T, N, ...].
    last_obs: [N, ...] observation after the last step, to bootstrap from.
    final_obs: [K, ...] real last observations of episodes cut by a time limit (truncated and not
      terminated), at `final_index` [K, 2] = (t, env). A truncation bootstraps from these.
    """

    steps: Batch
    last_obs: Tensor
    final_obs: Tensor
    final_index: Tensor


@dataclass
class LossOutput:
    """A scalar loss to minimise, the metrics to log (floats or 0-d tensors), and per-sample
    errors for prioritized replay (`td_errors`, [B]) where the loss has them."""

    loss: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)
    td_errors: Tensor | None = None
