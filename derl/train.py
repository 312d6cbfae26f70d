"""`train(config)` and `resume(logdir)`: env -> algorithm -> logdir -> learn, with checkpoints.

Everything that can be refused is checked before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
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
from derl import checkpoint, guard, lock
from derl.alg import Alg
from derl.alg.base import flush_denormals
from derl.errors import DerlError, NonFinite, UsageError, WriteError
from derl.factory import Config, get_alg, spec_of
from derl.logger import Logger

FORMAT = checkpoint.FORMAT


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


def config_from_dict(data: dict, source: str = "the config") -> Config:
    """The config saved in config.json or a checkpoint (extra keys such as `alg` are ignored).

    A damaged one (no or an unknown algorithm, values of the wrong type) is a UsageError
    naming `source`.
    """
    if not isinstance(data, dict) or "alg" not in data:
        raise UsageError(f'{source} names no algorithm (no "alg" key); it is not a derl config')
    try:
        cls = get_alg(data["alg"]).config_cls
        config = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        config.validate()
    except (TypeError, ValueError) as exc:  # UsageError is a ValueError
        raise UsageError(f"{source} is damaged: {exc}") from None
    return config


def checkpoint_config(state: dict, path: Path) -> Config:
    """The config a run's checkpoint (or best.pt) was trained with."""
    if not ("alg" in state and isinstance(state.get("config"), dict) and "state" in state):
        raise UsageError(f"{path} is not a checkpoint of a derl run")
    return config_from_dict({"alg": state["alg"], **state["config"]}, str(path))


def read_config(logdir: Path) -> Config:
    """The config.json of a run."""
    path = logdir / "config.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not JSON, not UTF-8
        raise UsageError(f"{path} is damaged: {exc}") from None
    return config_from_dict(data, str(path))


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
        self.check_metrics()  # before the policy acts again on what the last updates did
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
        state = full_state(self.alg, self.config, self.logger)
        self.check_model(step, state["state"])
        path = checkpoint.checkpoint_path(self.logdir, step)
        self.save(state, path)
        checkpoint.prune(self.logdir, self.config.keep_checkpoints)
        self.last_checkpoint = step
        return path

    def save(self, state: dict, path: Path) -> None:
        try:
            checkpoint.save(state, path)
        except WriteError as exc:  # the file it would have replaced, and all others, are intact
            raise WriteError(f"{exc}; {self.newest_checkpoint('free some space')}") from None

    # -- NaN and infinities: found where they cost nothing, never written to a checkpoint -----

    def check_metrics(self) -> None:
        """The means of the metrics of the updates since the last call, which the logger
        computes anyway (its one device sync): no check in the update loop itself."""
        bad = guard.nonfinite_metric(self.logger.flush())
        if bad is not None:
            raise self.nonfinite(f"train/{bad}", self.logger.step)

    def check_model(self, step: int, state: dict) -> None:
        """Before the model is saved or evaluated: the metrics, every floating-point tensor of
        its `state` (parameters, optimizer moments, target networks; not the runner's: env
        observations are not ours to judge) and the outputs of the policy."""
        self.check_metrics()
        model = {key: value for key, value in state.items() if key != "runner"}
        bad = guard.nonfinite_tensor(guard.floating_tensors(model))
        if bad is not None:
            raise self.nonfinite(f"value in {bad}", step)
        runner = self.alg.runner
        layer = guard.nonfinite_activation(runner.policy, getattr(runner, "obs", None))
        if layer is not None:
            raise self.nonfinite(f"output of the policy's layer {layer}", step)

    def nonfinite_cause(self) -> NonFinite | None:
        """After a crash in training: the NaN or infinity behind it, if there is one."""
        try:
            self.check_model(self.alg.runner.step_count, self.alg.state_dict())
        except NonFinite as exc:
            return exc
        except Exception:  # the crash left nothing to check: the crash is all there is to say
            return None
        return None

    def nonfinite(self, what: str, step: int) -> NonFinite:
        return NonFinite(f"non-finite {what} at env step {step}; {self.newest_checkpoint()}")

    def newest_checkpoint(self, advice: str = "") -> str:
        found = checkpoint.list_checkpoints(self.logdir)
        if not found:
            return "no checkpoint was written before it"
        then = f"{advice}, then " if advice else ""
        return f"the newest good checkpoint is {found[-1]} ({then}derl resume {self.logdir})"

    def evaluate(self, step: int) -> None:
        from derl.agent import Agent
        from derl.evaluate import evaluate

        policy = self.alg.runner.policy
        self.check_model(step, {"policy": policy.state_dict()})  # best.pt never holds NaN weights
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
                    "policy": policy.state_dict(),
                    "runner": {"normalizer": agent.normalizer},
                },
                "eval_return": mean,
                "step": step,
            }
            self.save(state, self.logdir / BEST)

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
    notice: str = "",
) -> TrainResult:
    """Train the algorithm `config` describes; writes TensorBoard events, config.json, checkpoints.

    `stop_after`: checkpoint and stop once this many env steps are taken (train in chunks;
    `resume` continues to `config.num_train_steps`). `resume_state` and `restart` are for
    `resume`, which holds the logdir's lock; a new run takes it itself. `notice` goes to stderr
    once the run is built, so that a refused one prints nothing but its error.
    """
    flush_denormals()  # before torch's worker threads start, so they inherit it
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = spec_of(config)
    device = resolve_device(config.device)
    logdir = logdir or (Path(config.logdir) if config.logdir else default_logdir(spec.name, config))
    new_run = resume_state is None and not restart
    if new_run:
        check_new_logdir(logdir)
    seed_everything(config.seed)
    env = derl.env.make(
        config.env_id,
        config.num_envs,
        config.seed,
        config.vectorization,
        config.normalize,
        config.gamma,
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(env.close)
        start = resume_state["state"]["runner"]["step_count"] if resume_state else 0
        logger = Logger(
            str(logdir),
            config.num_train_steps,
            progress=progress,
            start_step=start,
            purge=not new_run,
        )
        alg = spec.make(config, env, device, logger)
        if resume_state is not None:
            alg.load_state_dict(resume_state["state"])
            logger.load_state_dict(resume_state["logger"])
            set_rng_state(resume_state["rng"])
        if new_run:  # everything that could be refused was: the first write
            create_logdir(logdir)
            cleanup.enter_context(lock.hold(logdir))
            check_new_logdir(logdir)  # another process may have started one meanwhile
            resolved = {
                "alg": spec.name,
                **dataclasses.asdict(config),
                "logdir": str(logdir),
                "resolved_device": str(device),
            }
            write_config(logdir / "config.json", resolved)
        lifecycle = Lifecycle(alg, config, logdir, logger, stop_after)
        if notice:
            print(notice, file=sys.stderr)
        alg.runner.hooks.append(lifecycle)
        interrupted = False
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, lifecycle.on_sigint) if in_main else None
        try:
            alg.learn(logger)
            lifecycle.finish(alg.runner.step_count)
        except Interrupted:
            interrupted = True
        except DerlError:
            raise
        except Exception as crash:
            # NaN can crash torch before a check sees it (sampling refuses NaN probabilities):
            # one line saying so instead of torch's traceback, when that is what happened.
            cause = lifecycle.nonfinite_cause()
            if cause is None:
                raise
            raise cause from crash
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
            logger.close()
    return TrainResult(
        alg,
        config,
        logdir,
        logger.mean_return(),
        alg.runner.step_count,
        list(logger.recent_returns),
        interrupted,
    )


def check_new_logdir(logdir: Path) -> None:
    """A new run's logdir: a directory to be, or one that holds no run; never overwritten."""
    if logdir.exists() and not logdir.is_dir():
        raise UsageError(f"--logdir {logdir} is a file, not a directory")
    if (logdir / "config.json").exists():
        raise UsageError(
            f"{logdir} already holds a run; pass another --logdir or `derl resume {logdir}`"
        )


def create_logdir(logdir: Path) -> None:
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the way, no permission, a read-only or pseudo file system
        raise UsageError(f"cannot create --logdir {logdir}: {exc.strerror or exc}") from None


def write_config(path: Path, data: dict) -> None:
    """Written whole or not at all, so that a killed start never leaves a damaged config.json."""
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def resume(logdir: str | Path, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Continue the run in `logdir` from its newest good checkpoint to its num_train_steps.

    Refused while another process trains in `logdir`, and when checkpoints exist but none can
    be loaded (starting over would replace them).
    """
    logdir = Path(logdir)
    if not logdir.is_dir():
        what = "is not a directory" if logdir.exists() else "does not exist"
        raise UsageError(f"{logdir} {what}; `derl resume` takes the logdir of a run")
    if not (logdir / "config.json").exists():
        raise UsageError(f"{logdir} holds no derl run (no config.json)")
    with lock.hold(logdir):
        skipped: list[UsageError] = []
        for path, state in checkpoint.newest_loadable(logdir):
            if isinstance(state, checkpoint.NewerFormat):
                raise state  # an older checkpoint would continue, and overwrite this one
            if isinstance(state, UsageError):
                skipped.append(state)
                continue
            fallbacks = [
                f"derl: {error}; falling back to the previous checkpoint" for error in skipped
            ]
            return train(
                checkpoint_config(state, path),
                progress,
                resume_state=state,
                logdir=logdir,
                stop_after=stop_after,
                notice="\n".join([*fallbacks, f"derl: resuming from {path}"]),
            )
        if skipped:
            raise UsageError(
                f"no checkpoint in {logdir / checkpoint.CHECKPOINT_DIR} can be loaded (the newest: "
                f"{skipped[0]}); move them away to start over from step 0"
            )
        # Killed before its first checkpoint: the config is all there is.
        return train(
            read_config(logdir),
            progress,
            logdir=logdir,
            stop_after=stop_after,
            restart=True,
            notice=f"derl: no checkpoint in {logdir}; starting over from step 0 with config.json",
        )
