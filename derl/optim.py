"""TensorFlow's RMSprop, for recipes tuned with it (openai baselines' A2C).

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
