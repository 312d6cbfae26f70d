"""`--compile`: the update and acting through `torch.compile`, the compile time reported once.

What is compiled:
- PPO, A2C, DQN/Rainbow: the loss (`Alg.loss_fn`), forward and backward: AOTAutograd fuses the
  loss's element-wise maths and the network's backward into few kernels. The optimizer is fused
  Adam already, one kernel.
- SAC, TD3: the actor's and the twin critics' forward passes (their updates call several
  networks under different `requires_grad` settings, which `torch.compile` of a whole update would
  split into many graphs).
- Acting (`policy.act`) of PPO and A2C on CUDA only (DQN's act branches on its random draws,
  which would break the graph; SAC's and TD3's networks are compiled already). On the CPU a
  compiled act was slower than the eager one: 56 against 43 us per env step in PPO CartPole
  (8 envs), where the compiled loss saved 46.
On CUDA with mode "reduce-overhead" (CUDA graphs: a step replays recorded kernels instead of
launching each one from Python); on the CPU with inductor's default mode.

Compiling takes seconds to a minute on the first update (and again for a new shape, e.g. an eval
batch): it is printed, and logged as `time/compile_s`. Off by default: on this project's CPU
benchmarks it shortens PPO's and A2C's MLP updates but not a short run's wall time, and the
compiled kernels round differently from eager ones (a compiled run is deterministic, but not
bit-equal to an eager run of the same seed). See the README's benchmarks.

Where torch's compiler fails on a part (on the one GPU tried so far, an H200 with torch 2.11,
inductor failed on acting's graph; results/gpu/2026-12-04-h200), that part runs eagerly and
stderr says so in one line: a compiler bug costs speed, not the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from derl.distributed import first_line
from derl.policies import ActorCriticPolicy
from derl.types import LossOutput


class Timed:
    """`fn` compiled; the first call, which compiles, is timed and `report`ed once."""

    def __init__(self, fn: Callable, name: str, report: Callable[[str, float], None], **kwargs):
        self.fn, self.name, self.report = torch.compile(fn, **kwargs), name, report
        self.eager = fn  # for NaN probes with forward hooks (derl.guard)
        self.first, self.failed = True, False
        # CUDA graphs write every replay's outputs into the same memory, but the runner keeps
        # acting's outputs for a whole rollout and the logger keeps the loss's metrics until
        # it writes them: they get copies of their own.
        # https://pytorch.org/docs/stable/torch.compiler_cudagraph_trees.html
        self.owned = kwargs.get("mode") == "reduce-overhead"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        start = time.perf_counter()
        try:
            out = self.fn(*args, **kwargs)
        except RuntimeError as exc:
            if not compiler_error(exc):
                raise
            # A compiler bug must not end a run (met on an H200 with torch 2.11: inductor failed
            # on acting's graph): say it once and go on eagerly, as the run would without it.
            self.failed = True
            cause = getattr(exc, "inner_exception", None) or exc  # the backend's own error
            print(
                f"derl: --compile failed for {self.name} ({type(cause).__name__}: "
                f"{first_line(cause)}); it runs eagerly",
                file=sys.stderr,
            )
            return self.eager(*args, **kwargs)
        if self.first:
            self.first = False
            self.report(self.name, time.perf_counter() - start)
        return owned(out) if self.owned else out


def compiler_error(exc: BaseException) -> bool:
    from torch._dynamo.exc import TorchDynamoException  # loaded already where anything compiled

    return isinstance(exc, TorchDynamoException)


def owned(out: Any) -> Any:
    """`out` with every tensor in it cloned (a loss's clone keeps its autograd graph)."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, dict):
        return {key: owned(value) for key, value in out.items()}
    if isinstance(out, LossOutput):
        return LossOutput(owned(out.loss), owned(out.metrics), owned(out.td_errors))
    return out


def compile_alg(alg: Any, device: torch.device, logger: Any = None) -> None:
    """Compile `alg`'s update and its policy's `act` in place (state dicts are unchanged)."""
    mode = "reduce-overhead" if device.type == "cuda" else None

    def report(name: str, seconds: float) -> None:
        print(f"derl: compiled {name} in {seconds:.1f} s (--compile)", file=sys.stderr)
        if logger is not None:
            logger.scalar(f"time/compile_s/{name.replace(' ', '_')}", seconds, 0)

    policy = alg.runner.policy
    if hasattr(alg, "loss_fn"):  # Alg: PPO, A2C, DQN
        # A scheduled float (PPO's annealed clip range) would be a constant of the compiled
        # graph, compiled again at every new value until torch gives up after 8 and runs the
        # loss eagerly: as a 0-d tensor it is an input, which apply_schedules updates in place.
        for name in alg.schedules:
            if name != "lr":  # the optimizer's, not the loss's
                value = float(getattr(alg.loss, name))
                setattr(alg.loss, name, torch.tensor(value, dtype=torch.float32, device=device))
        alg.loss_fn = Timed(alg.loss, "the loss", report, mode=mode)
        if isinstance(policy, ActorCriticPolicy) and device.type == "cuda":  # see above
            policy.act = Timed(policy.act, "acting", report, mode=mode)  # type: ignore[method-assign]
        return
    for module in (alg.critic, alg.target_critic, policy):  # SAC, TD3: acting included
        module.compile(mode=mode)
    if hasattr(alg, "target_policy"):
        alg.target_policy.compile(mode=mode)
