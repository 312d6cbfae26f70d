"""Runner wrappers: compose on an EnvRunner and are iterated the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from derl.types import Batch, Runner


class RunnerWrapper:
    """Delegates attributes (step_count, env, policy, ...) to the wrapped runner."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)


class Transform(RunnerWrapper):
    """Applies callables in order to every item the wrapped runner yields."""

    def __init__(self, runner: Runner, transforms: Iterable[Callable[[Any], Any]]):
        super().__init__(runner)
        self.transforms = list(transforms)

    def __iter__(self) -> Iterator[Any]:
        for item in self.runner:
            for transform in self.transforms:
                item = transform(item)
            yield item


class Minibatches(RunnerWrapper):
    """Yields `num_minibatches` shuffled minibatches per epoch, `num_epochs` times per batch.

    `per_epoch` transforms turn each item the wrapped runner yields into the batch anew before
    every epoch (e.g. GAE with the critic as it is after the last epoch's updates); without
    them the runner's items are the batches.
    """

    def __init__(
        self,
        runner: Runner,
        num_epochs: int,
        num_minibatches: int,
        per_epoch: Iterable[Callable[[Any], Any]] = (),
    ):
        super().__init__(runner)
        self.num_epochs, self.num_minibatches = num_epochs, num_minibatches
        self.per_epoch = list(per_epoch)

    def epoch_batch(self, item: Any) -> Batch:
        for transform in self.per_epoch:
            item = transform(item)
        return item

    def __iter__(self) -> Iterator[Batch]:
        for item in self.runner:
            if self.num_minibatches == 1 and not self.per_epoch:
                yield from (item for _ in range(self.num_epochs))  # order is irrelevant
                continue
            for _ in range(self.num_epochs):
                batch = self.epoch_batch(item)
                if self.num_minibatches == 1:
                    yield batch
                    continue
                perm = torch.randperm(len(batch), device=batch.obs.device)
                for idx in perm.chunk(self.num_minibatches):
                    yield batch.index(idx)
