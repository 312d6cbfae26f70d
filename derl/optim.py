"""Optimizer steps: torch's fused Adam without its per-call wrapping, and TensorFlow's RMSprop.

`step(optimizer)` is `optimizer.step()`; for a fused torch Adam it calls torch's fused kernel
itself. torch's `Optimizer.step` wraps that one kernel in a profiler record, hook checks and a
regrouping of the tensors by device and dtype on every call: about 70 of its 120 us for the 12
tensors of PPO's CartPole networks on this project's CPU. The kernel gets the arguments torch
gives it, so parameters and state are torch's bit for bit (tests/test_optim.py).

TensorFlow's RMSprop differs from torch's in two ways that matter early in training: its running
average of squared gradients starts at 1 (torch's starts at 0, so the first steps divide by
sqrt(0.01 g^2)), and its epsilon sits inside the square root. Over the first 5 updates of
derl's A2C on CartPole-v1 (lr 7e-4, eps 1e-5), torch's RMSprop moved the parameters 657 times
further than this one (tests/test_optim.py). rl-zoo ships `RMSpropTFLike` for the same reason:
https://github.com/DLR-RM/stable-baselines3/blob/master/stable_baselines3/common/sb2_compat/rmsprop_tf_like.py
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer
from torch.optim import optimizer as torch_optimizer


def zero_grad(optimizer: Optimizer) -> None:
    """`optimizer.zero_grad(set_to_none=True)`, without the profiler record torch makes of it."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def step(optimizer: Optimizer) -> None:
    """`optimizer.step()`, straight through the fused kernel where torch would take it there."""
    if not fused_adam_ready(optimizer):
        optimizer.step()
        return
    with torch.no_grad():
        for group in optimizer.param_groups:
            params = group["params"]
            states = [optimizer.state[p] for p in params]
            steps = [state["step"] for state in states]
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)  # as torch.optim.adam._fused_adam does, in its order
            torch._fused_adam_(
                params,
                [p.grad for p in params],
                [state["exp_avg"] for state in states],
                [state["exp_avg_sq"] for state in states],
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                grad_scale=None,
                found_inf=None,
            )


def fused_adam_ready(optimizer: Optimizer) -> bool:
    """Whether torch's step would be one call of the fused Adam kernel on these tensors: a plain
    torch Adam with fused=True, its state made by a first step, every parameter with a dense
    gradient, one device and dtype, float lr and betas, no amsgrad, capturable or hooks."""
    if type(optimizer) is not torch.optim.Adam or not optimizer.state:
        return False
    if (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or torch_optimizer._global_optimizer_pre_hooks
        or torch_optimizer._global_optimizer_post_hooks
    ):
        return False
    for group in optimizer.param_groups:
        if not group["fused"] or group["amsgrad"] or group["capturable"]:
            return False
        if group["differentiable"] or group.get("decoupled_weight_decay", False):
            return False
        if any(isinstance(v, torch.Tensor) for v in (group["lr"], *group["betas"])):
            return False
        kinds = set()
        for p in group["params"]:
            if p.grad is None or p.grad.is_sparse or not optimizer.state.get(p):
                return False
            kinds.add((p.device, p.dtype))
        if len(kinds) > 1:
            return False
    return True


class RMSpropTF(Optimizer):
    """v <- alpha v + (1 - alpha) g^2 (v starts at 1);  p <- p - lr g / sqrt(v + eps)."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-10):
        if lr <= 0 or not 0 <= alpha < 1 or eps < 0:
            raise ValueError(f"invalid RMSpropTF settings lr={lr}, alpha={alpha}, eps={eps}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            averages = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)  # TF's initial accumulator
                averages.append(state["square_avg"])
            torch._foreach_mul_(averages, group["alpha"])
            torch._foreach_addcmul_(averages, grads, grads, value=1 - group["alpha"])
            denominators = torch._foreach_add(averages, group["eps"])
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])
        return loss
