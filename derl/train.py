"""`train(config)` and `resume(logdir)`: env -> algorithm -> logdir -> learn, with checkpoints.

Everything that can be refused is checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import derl.env
from derl import checkpoint
from derl.alg import Alg
from derl.alg.base import flush_denormals
from derl.errors import UsageError
from derl.factory import Config, get_alg, spec_of
from derl.logger import Logger

FORMAT = 1


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


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def default_logdir(alg: str, config: Config) -> Path:
    env_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.env_id)
    return Path("runs") / env_name / f"{alg}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def full_state(alg: Alg, config: Config, logger: Logger | None = None) -> dict:
    """Everything a resumed run needs to continue as if it had never stopped."""
    return {
        "format": FORMAT,
        "alg": spec_of(config).name,
        "config": dataclasses.asdict(config),
        "state": alg.state_dict(),
        "rng": rng_state(),
        "logger": logger.state_dict() if logger else {"recent_returns": []},
    }


def config_from_dict(data: dict) -> Config:
    """The config saved in config.json or a checkpoint (extra keys such as `alg` are ignored)."""
    cls = get_alg(data["alg"]).config_cls
    values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
    if data["alg"] in ("sac", "td3") and isinstance(values.get("hidden"), int):
        values["hidden"] = f"{values['hidden']},{values['hidden']}"  # derl 0.2: one width, 2 layers
    return cls(**values)


BEST = "best.pt"  # the policy with the best evaluation so far, in the logdir


class Interrupted(Exception):
    """Ctrl-C was pressed: a checkpoint has been written."""


class Lifecycle:
    """Runs between rollouts: periodic checkpoints and evaluation; Ctrl-C stops at the next one."""

    def __init__(
        self, alg: Alg, config: Config, logdir: Path, logger: Logger, stop_after: int | None = None
    ):
        self.alg, self.config, self.logdir, self.logger = alg, config, logdir, logger
        self.last_checkpoint = self.last_eval = alg.runner.step_count
        self.stop_requested, self.stop_after = False, stop_after
        best = logdir / BEST  # a resumed run keeps the best agent of the steps before it
        self.best_return = checkpoint.load(best)["eval_return"] if best.exists() else -math.inf

    def __call__(self, step: int) -> None:
        if self.stop_requested or (self.stop_after is not None and step >= self.stop_after):
            self.checkpoint(step)
            raise Interrupted
        if step - self.last_checkpoint >= self.config.checkpoint_every:
            self.checkpoint(step)
        if self.config.eval_every and step - self.last_eval >= self.config.eval_every:
            self.evaluate(step)

    def finish(self, step: int) -> None:
        """End of training: a last evaluation (when asked for) and a last checkpoint."""
        if self.config.eval_every and self.last_eval != step:
            self.evaluate(step)
        self.checkpoint(step)

    def checkpoint(self, step: int) -> Path:
        self.logger.flush()
        path = checkpoint.save(
            full_state(self.alg, self.config, self.logger),
            checkpoint.checkpoint_path(self.logdir, step),
        )
        checkpoint.prune(self.logdir, self.config.keep_checkpoints)
        self.last_checkpoint = step
        return path

    def evaluate(self, step: int) -> None:
        from derl.agent import Agent
        from derl.evaluate import evaluate

        agent = Agent.from_alg(self.alg, self.config)
        mean = float(evaluate(agent, self.config.eval_episodes).mean())
        self.logger.scalar("eval/return", mean, step)
        self.last_eval = step
        if mean > self.best_return:
            # Value-based agents can get worse late in training (DQN on CartPole does): keep the
            # best evaluated one, as rl-zoo's best_model, for `derl eval LOGDIR/best.pt`.
            self.best_return = mean
            state = {
                "format": FORMAT,
                "alg": spec_of(self.config).name,
                "config": dataclasses.asdict(self.config),
                "state": {
                    "policy": self.alg.runner.policy.state_dict(),
                    "runner": {"normalizer": agent.normalizer},
                },
                "eval_return": mean,
                "step": step,
            }
            checkpoint.save(state, self.logdir / BEST)

    def on_sigint(self, signum, frame) -> None:
        if self.stop_requested:  # pressed twice: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        print(
            "\nderl: stopping after this update to write a checkpoint (Ctrl-C again to quit now)",
            file=sys.stderr,
        )


@dataclass
class TrainResult:
    alg: Alg
    config: Config
    logdir: Path
    mean_return: float  # over the last 100 episodes
    env_steps: int
    recent_returns: list[float]  # the last 100 episode returns, oldest first
    interrupted: bool = False

    @property
    def agent(self):
        """The trained agent (`agent.act(obs)`, `derl.evaluate.evaluate(agent)`)."""
        from derl.agent import Agent

        return Agent.from_alg(self.alg, self.config)


def train(
    config: Config,
    progress: bool = True,
    resume_state: dict | None = None,
    logdir: Path | None = None,
    stop_after: int | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train the algorithm `config` describes; writes TensorBoard events, config.json, checkpoints.

    `stop_after`: checkpoint and stop once this many env steps are taken (train in chunks;
    `resume` continues to `config.num_train_steps`).
    """
    flush_denormals()  # before torch's worker threads start, so they inherit it
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = spec_of(config)
    device = resolve_device(config.device)
    logdir = logdir or (Path(config.logdir) if config.logdir else default_logdir(spec.name, config))
    if resume_state is None and not restart and (logdir / "config.json").exists():
        raise UsageError(
            f"{logdir} already holds a run; pass another --logdir or `derl resume {logdir}`"
        )
    seed_everything(config.seed)
    env = derl.env.make(
        config.env_id,
        config.num_envs,
        config.seed,
        config.vectorization,
        config.normalize,
        config.gamma,
    )
    try:
        start = resume_state["state"]["runner"]["step_count"] if resume_state else 0
        logger = Logger(
            str(logdir),
            config.num_train_steps,
            progress=progress,
            start_step=start,
            purge=resume_state is not None or restart,
        )
        alg = spec.make(config, env, device, logger)
        if resume_state is not None:
            alg.load_state_dict(resume_state["state"])
            logger.load_state_dict(resume_state["logger"])
            set_rng_state(resume_state["rng"])
        else:
            logdir.mkdir(parents=True, exist_ok=True)
            resolved = {
                "alg": spec.name,
                **dataclasses.asdict(config),
                "logdir": str(logdir),
                "resolved_device": str(device),
            }
            (logdir / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
        lifecycle = Lifecycle(alg, config, logdir, logger, stop_after)
        # First: a checkpoint holds the state before other hooks act at its step (e.g. new
        # noise for noisy nets), so that a resumed run repeats them exactly.
        alg.runner.hooks.insert(0, lifecycle)
        interrupted = False
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, lifecycle.on_sigint) if in_main else None
        try:
            alg.learn(logger)
            lifecycle.finish(alg.runner.step_count)
        except Interrupted:
            interrupted = True
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
            logger.close()
    finally:
        env.close()
    return TrainResult(
        alg,
        config,
        logdir,
        logger.mean_return(),
        alg.runner.step_count,
        list(logger.recent_returns),
        interrupted,
    )


def resume(logdir: str | Path, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Continue the run in `logdir` from its newest good checkpoint to its num_train_steps."""
    logdir = Path(logdir)
    if not (logdir / "config.json").exists():
        raise UsageError(f"{logdir} holds no derl run (no config.json)")
    for path, state in checkpoint.newest_loadable(logdir):
        if isinstance(state, UsageError):
            print(f"derl: {state}; falling back to the previous checkpoint", file=sys.stderr)
            continue
        print(f"derl: resuming from {path}", file=sys.stderr)
        return train(
            config_from_dict({"alg": state["alg"], **state["config"]}),
            progress,
            resume_state=state,
            logdir=logdir,
            stop_after=stop_after,
        )
    # Killed before its first checkpoint (or none survived): the config is all there is.
    print(
        f"derl: no usable checkpoint in {logdir}; starting over from step 0 with its config.json",
        file=sys.stderr,
    )
    config = config_from_dict(json.loads((logdir / "config.json").read_text()))
    return train(config, progress, logdir=logdir, stop_after=stop_after, restart=True)
