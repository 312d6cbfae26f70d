"""What a checkpoint holds: one function builds the full state a resumed run needs and the
policy-only state of `best.pt` and `derl.save`; the RNG states that make a resume exact."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
import torch

from derl import checkpoint
from derl.alg.base import Algorithm
from derl.factory import Config, spec_of
from derl.logger import Logger


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    # The generator of the GPU this process trains on, and only when CUDA is in use: asking for
    # every GPU's would start a CUDA context on each of them, in every process.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, list):  # earlier checkpoints held every visible GPU's: take this one's
        index = torch.cuda.current_device() if torch.cuda.is_available() else len(cuda)
        cuda = cuda[index] if index < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():  # a run moved to the CPU needs none
        torch.cuda.set_rng_state(cuda)


def snapshot(
    alg: Algorithm,
    config: Config,
    logger: Logger | None = None,
    policy_only: bool = False,
    **extra: Any,
) -> dict:
    """A checkpoint's state. In full: everything a resumed run needs to continue as if it had
    never stopped (model, optimizers, runner with env states and replay, RNGs, logger). With
    `policy_only`: what acting needs, the policy and the observation normalisation, plus
    `extra` (e.g. best.pt's eval_return and step)."""
    state = {"format": checkpoint.FORMAT, "alg": spec_of(config).name}
    state["config"] = dataclasses.asdict(config)
    if policy_only:
        from derl.env.normalize import VecNormalize

        env = alg.runner.env
        normalizer = env.state_dict() if isinstance(env, VecNormalize) else None
        policy = {"policy": alg.runner.policy.state_dict(), "runner": {"normalizer": normalizer}}
        return {**state, "state": policy, **extra}
    return {
        **state,
        "state": alg.state_dict(),
        "rng": rng_state(),
        "logger": logger.state_dict() if logger else {"recent_returns": []},
        **extra,
    }
