"""`train(config)`: env -> algorithm -> logdir -> learn. Everything that can be refused is checked
before anything is written."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import derl.env
from derl.alg import Alg
from derl.errors import UsageError
from derl.factory import Config, spec_of
from derl.logger import Logger


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_logdir(alg: str, config: Config) -> Path:
    env_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.env_id)
    return Path("runs") / env_name / f"{alg}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class TrainResult:
    alg: Alg
    logdir: Path
    mean_return: float  # over the last 100 episodes
    env_steps: int
    recent_returns: list[float]  # the last 100 episode returns, oldest first


def train(config: Config, progress: bool = True) -> TrainResult:
    """Train the algorithm `config` describes; writes TensorBoard events and config.json."""
    spec = spec_of(config)
    device = resolve_device(config.device)
    logdir = Path(config.logdir) if config.logdir else default_logdir(spec.name, config)
    if (logdir / "config.json").exists():
        raise UsageError(f"{logdir} already holds a run; pass another --logdir")
    seed_everything(config.seed)
    env = derl.env.make(config.env_id, config.num_envs, config.seed, config.vectorization,
                        config.normalize, config.gamma)
    try:
        logger = Logger(str(logdir), config.num_train_steps, progress=progress)
        alg = spec.make(config, env, device, logger)
        logdir.mkdir(parents=True, exist_ok=True)
        resolved = {"alg": spec.name, **dataclasses.asdict(config), "logdir": str(logdir),
                    "resolved_device": str(device)}
        (logdir / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
        try:
            alg.learn(logger)
        finally:
            logger.close()
    finally:
        env.close()
    return TrainResult(alg, logdir, logger.mean_return(), alg.runner.step_count,
                       list(logger.recent_returns))
