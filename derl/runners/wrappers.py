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
    """Yields `num_minibatches` shuffled minibatches per epoch, `num_epochs` times per batch."""

    def __init__(self, runner: Runner, num_epochs: int, num_minibatches: int):
        super().__init__(runner)
        self.num_epochs, self.num_minibatches = num_epochs, num_minibatches

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.runner:
            if self.num_minibatches == 1:  # one minibatch is the whole batch: order is irrelevant
                yield from (batch for _ in range(self.num_epochs))
                continue
            size = len(batch)
            for _ in range(self.num_epochs):
                perm = torch.randperm(size, device=batch.obs.device)
                for idx in perm.chunk(self.num_minibatches):
                    yield batch.index(idx)
