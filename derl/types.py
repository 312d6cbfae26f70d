"""Containers that flow between layers: rollouts from runners, batches into losses, loss outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from torch import Tensor, nn


@dataclass
class Batch:
    """The named tensors that flow from runners into losses; absent fields are None.

    From an EnvRunner: obs, actions, rewards, terminated, truncated and what the policy's `act`
    returns (log_probs, values), [T, N, ...]; GAE adds advantages and value_targets; merged
    batches are [B, ...]. From replay: obs, actions, returns (n-step), discounts, next_obs and
    weights (importance weights, 1 for uniform replay). A runner or policy with fields of its
    own declares them in a subclass (`@dataclass class MyBatch(Batch): ...`).
    """

    obs: Tensor
    actions: Tensor | None = None
    rewards: Tensor | None = None
    terminated: Tensor | None = None
    truncated: Tensor | None = None
    log_probs: Tensor | None = None
    values: Tensor | None = None
    advantages: Tensor | None = None
    value_targets: Tensor | None = None
    next_obs: Tensor | None = None
    returns: Tensor | None = None
    discounts: Tensor | None = None
    weights: Tensor | None = None

    def tensors(self) -> dict[str, Tensor]:
        """The fields that are set, by name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def __len__(self) -> int:
        return len(self.obs)

    def index(self, idx: Any) -> Batch:
        """The same fields at `idx` along the first dimension."""
        return type(self)(**{k: v[idx] for k, v in self.tensors().items()})

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """`fn` applied to every field that is set."""
        return type(self)(**{k: fn(v) for k, v in self.tensors().items()})

    def require(self, *names: str) -> tuple[Tensor, ...]:
        """The fields `names`, which must be set (a ValueError names any that is not)."""
        values = tuple(getattr(self, name) for name in names)
        missing = [name for name, value in zip(names, values, strict=True) if value is None]
        if missing:
            raise ValueError(f"{type(self).__name__} lacks {', '.join(missing)}")
        return values

    def replace(self, **changes: Tensor) -> Batch:
        """A new batch with `changes`; this one is left as it was."""
        return dataclasses.replace(self, **changes)


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


class Policy(Protocol):
    """What runners, algorithms and evaluation need from a policy: an `nn.Module` that acts.

    `act` returns at least "actions" (actor-critics add "log_probs" and "values");
    `env_actions` turns those actions into what the env's `step` takes.
    """

    def act(self, obs: Tensor, deterministic: bool = False) -> dict[str, Tensor]: ...

    def env_actions(self, actions: Tensor) -> np.ndarray: ...

    # The nn.Module methods the layers above use.
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = ...) -> Any: ...

    def parameters(self, recurse: bool = ...) -> Iterator[nn.Parameter]: ...

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]: ...

    def train(self, mode: bool = ...) -> Any: ...

    def eval(self) -> Any: ...


class Runner(Protocol):
    """What algorithms, runner wrappers and the training loop need from a runner: an EnvRunner,
    or wrappers around one (transforms, minibatches, replay) that forward its attributes."""

    @property
    def policy(self) -> Policy: ...

    @property
    def env(self) -> gym.vector.VectorEnv: ...

    @property
    def hooks(self) -> list[Callable[[int], None]]:
        """Called with step_count between rollouts (checkpoints, evaluation)."""
        ...

    @property
    def step_count(self) -> int: ...

    @property
    def rollout_start(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
