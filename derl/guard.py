"""Finds NaN and infinities in training metrics and in model state, as cheaply as possible.

`derl.train` stops at the first one (exit 3), before a poisoned checkpoint is written: a NaN
never becomes finite again, so every update after it is wasted and every checkpoint lost.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import cast

import torch
from torch import Tensor, nn

from derl.types import Policy


def nonfinite_metric(means: dict[str, float]) -> str | None:
    """The first metric whose mean is NaN or infinite. A mean is non-finite as soon as one of
    the values averaged is, so the means the logger computes anyway cover every update."""
    return next((key for key, value in means.items() if not math.isfinite(value)), None)


def floating_tensors(state, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """(dotted name, tensor) for every floating-point tensor in a nested state dict."""
    if isinstance(state, Tensor):
        if state.is_floating_point():
            yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from floating_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from floating_tensors(value, f"{prefix}.{i}" if prefix else str(i))


@torch.no_grad()
def nonfinite_tensor(named: Iterable[tuple[str, Tensor]]) -> str | None:
    """The name of the first tensor holding a NaN or an infinity, or None.

    One device sync when all are finite: a norm is NaN or infinite when any element is (or when
    a huge finite tensor overflows it, which the exact check that follows tells apart).
    """
    tensors = list(named)
    by_device: dict[torch.device, list[Tensor]] = {}
    for _, t in tensors:  # optimizer step counts can live on the CPU beside CUDA parameters
        by_device.setdefault(t.device, []).append(t.detach())
    norms = [torch.stack(torch._foreach_norm(ts)).float() for ts in by_device.values()]
    if all(bool(n.isfinite().all()) for n in norms):
        return None
    return next((name for name, t in tensors if not bool(torch.isfinite(t).all())), None)


@torch.no_grad()
def nonfinite_activation(policy: Policy, obs: Tensor | None) -> str | None:
    """The first layer of `policy` whose output is NaN or infinite when it acts on `obs`.

    Weights can be finite and still so large that the outputs overflow (an absurd learning rate
    gets there in one update): such a policy cannot act, sample or be evaluated. A deterministic
    act draws no random numbers and counts no steps, so probing it changes nothing.
    """
    if obs is None:
        return None
    found: list[str] = []

    def hook_for(name: str):
        def hook(module, args, output) -> None:
            if not found and isinstance(output, Tensor) and output.is_floating_point():
                if not bool(torch.isfinite(output).all()):
                    found.append(name)

        return hook

    handles = [
        module.register_forward_hook(hook_for(name))
        for name, module in policy.named_modules()
        if name  # the policy itself returns a dict or a distribution
    ]
    # A user's network may hold dropout (random draws) or batch norm (running statistics): the
    # probe runs in eval mode, on a fork of torch's RNG, so that it changes nothing that a
    # checkpoint taken just before has saved, and a resumed run stays bit for bit.
    try:
        # a broken policy may fail to act: the hooks saw why
        with eval_mode(policy), torch.random.fork_rng(), contextlib.suppress(Exception):
            # the eager act under --compile: hooks would break torch.compile's graph apart
            getattr(policy.act, "eager", policy.act)(obs, deterministic=True)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


@contextlib.contextmanager
def eval_mode(network: nn.Module | Policy) -> Iterator[None]:
    """`network` in eval mode (noisy layers act with their mean weights, dropout draws nothing,
    batch norm keeps its running statistics), then back in the mode it was in."""
    module = cast(nn.Module, network)  # every derl policy is one
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
