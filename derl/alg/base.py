"""AlgLoss computes a loss and its metrics; Alg turns losses into updates over a runner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from derl import optim
from derl.distributed import average_gradients
from derl.types import Batch, LossOutput, Runner

if TYPE_CHECKING:
    from derl.logger import Logger


class AlgLoss(ABC):
    """A loss over a batch. It returns its metrics instead of logging them."""

    @abstractmethod
    def __call__(self, batch: Batch) -> LossOutput: ...


def explained_variance(predictions: Tensor, targets: Tensor) -> Tensor:
    """1 - Var[targets - predictions] / Var[targets]: 1 is perfect, 0 is no better than the mean."""
    return 1 - (targets - predictions).var() / targets.var().clamp_min(1e-8)


def entropy_bonus(dist: torch.distributions.Distribution, coef: float | Tensor) -> Tensor:
    """The mean entropy of `dist`, to subtract `coef` times from a loss where it `requires_grad`.

    At a coefficient of 0 it is a metric only, computed without gradient: the bonus would add
    0 to the loss and zeros to the gradients (the same numbers), for a backward pass through
    the entropy that cost 5% of a PPO CartPole update. A tensor coefficient (a scheduled one
    under --compile) always takes the bonus: a branch on its value would split the graph.
    """
    with torch.set_grad_enabled(
        torch.is_grad_enabled() and (isinstance(coef, Tensor) or coef != 0)
    ):
        return dist.entropy().mean()


def linear_schedule(start: float, num_steps: int, end: float = 0.0) -> Callable[[int], float]:
    """`start` at step 0 falling linearly to `end` at `num_steps` (and staying there)."""
    return lambda step: start + (end - start) * min(step / num_steps, 1.0)


class Algorithm(Protocol):
    """What `derl.train`, checkpoints and evaluation need from an algorithm.

    `Alg` is the one-loss, one-optimizer implementation; SAC and TD3 implement `step` and their
    state dicts themselves and inherit `learn` from here.
    """

    runner: Runner  # an EnvRunner, or runner wrappers around one (they forward its attributes)

    def step(self, batch: Batch) -> dict:
        """One update on `batch`; returns the metrics to log."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def learn(
        self, logger: Logger | None = None, on_update: Callable[[int, dict], None] | None = None
    ) -> None:
        """Train until the runner has taken its `num_train_steps` env steps; `on_update` is told
        each update's step count and metrics (derl.callbacks)."""
        flush_denormals()
        for batch in self.runner:
            metrics = self.step(batch)
            if logger is not None:
                logger.record(metrics, self.runner.step_count)
            if on_update is not None:
                on_update(self.runner.step_count, metrics)


class Alg(Algorithm):
    """`for batch in runner: loss -> backward -> clip -> optimizer step`, metrics to a logger.

    `schedules` maps a name to a function of the env step count: "lr" sets the optimizer's
    learning rate, any other name the loss attribute of that name (e.g. PPO's "clip_range").
    They are read at the step count where the batch's rollout started, as CleanRL does: the first
    update uses the initial values and the last rollout does not train at a learning rate of 0.
    """

    def __init__(
        self,
        runner: Runner,
        loss: AlgLoss,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float | None = None,
        schedules: dict[str, Callable[[int], float]] | None = None,
    ):
        self.runner, self.loss, self.optimizer = runner, loss, optimizer
        self.max_grad_norm, self.schedules = max_grad_norm, dict(schedules or {})
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.loss_fn: Callable[[Batch], LossOutput] = loss  # torch.compile(loss) with --compile

    def apply_schedules(self) -> dict[str, float]:
        values = {name: fn(self.runner.rollout_start) for name, fn in self.schedules.items()}
        for name, value in values.items():
            if name == "lr":
                for group in self.optimizer.param_groups:
                    group["lr"] = value
            elif isinstance(current := getattr(self.loss, name), torch.Tensor):
                current.fill_(value)  # --compile: an input of the compiled graph (derl.compile)
            else:
                setattr(self.loss, name, value)
        return values

    def step(self, batch: Batch) -> dict:
        """One gradient update on `batch`; returns the metrics to log."""
        scheduled = self.apply_schedules()
        out = self.loss_fn(batch)
        optim.zero_grad(self.optimizer)
        out.loss.backward()
        average_gradients(self.params)  # data-parallel ranks: the gradient of all their batches
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        grad_norm = clip_grad_norm(self.params, max_norm)
        optim.step(self.optimizer)
        self.after_update(out)
        metrics = {**out.metrics, "loss": out.loss.detach(), "grad_norm": grad_norm}
        return {**metrics, "lr": self.optimizer.param_groups[0]["lr"], **scheduled}

    def after_update(self, out: LossOutput) -> None:
        """What an algorithm does after each update (target networks, priorities); none here."""

    def state_dict(self) -> dict:
        return {
            "policy": self.runner.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "runner": self.runner.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.runner.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.runner.load_state_dict(state["runner"])


@torch.no_grad()
def clip_grad_norm(params: list[Tensor], max_norm: float) -> Tensor:
    """torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True): its ops, in its order,
    without its regrouping of the gradients by device and dtype on every call (half of its 130 us
    per PPO CartPole update on this project's CPU). Gradients on several devices or dtypes go
    through torch's."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or len({(g.device, g.dtype) for g in grads}) > 1:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


@torch.no_grad()
def polyak_update(targets: list[Tensor], online: list[Tensor], tau: float) -> None:
    """target <- (1 - tau) target + tau online for every pair, in one fused op (tau 1: a copy)."""
    torch._foreach_lerp_(targets, online, tau)


def flush_denormals() -> None:
    """Computes with denormal floats as 0, from here on in this process.

    Adam's moments of rarely-active weights decay into denormals, which the CPU computes 10-100x
    slower: flushing them made DQN's CPU Adam step 6x faster on CartPole. The flag is per thread
    and torch's worker threads copy it when they start, so it takes full effect when called
    before torch's first parallel op (`derl.train` calls it first thing).
    https://pytorch.org/docs/stable/generated/torch.set_flush_denormal.html
    """
    torch.set_flush_denormal(True)
