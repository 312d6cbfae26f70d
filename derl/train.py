"""`train(config)` and `resume(logdir)`: env -> algorithm -> logdir -> learn, with checkpoints.

Everything that can be refused is checked before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import derl.env
from derl import checkpoint, lock, tracking
from derl.alg.base import Algorithm, flush_denormals
from derl.callbacks import Callback
from derl.custom import function_name
from derl.errors import DerlError, UsageError
from derl.factory import Config, checkpoint_config, read_config, spec_of
from derl.lifecycle import Interrupted, Lifecycle, Stopped
from derl.logger import Logger
from derl.snapshot import seed_everything, set_rng_state

if TYPE_CHECKING:
    from derl.agent import Agent


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def default_logdir(alg: str, config: Config) -> Path:
    env_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.env_id)
    return Path("runs") / env_name / f"{alg}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class TrainResult:
    alg: Algorithm
    config: Config
    logdir: Path
    mean_return: float  # over the last 100 episodes
    env_steps: int
    recent_returns: list[float]  # the last 100 episode returns, oldest first
    interrupted: bool = False  # Ctrl-C (or stop_after): stopped at a checkpoint
    stopped_by: str = ""  # the callback that stopped training, if one did
    env_fn: Callable | None = None  # the user's env factory, if the run had one

    @property
    def agent(self) -> Agent:
        """The trained agent (`agent.act(obs)`, `derl.evaluate.evaluate(agent)`)."""
        from derl.agent import Agent

        return Agent.from_alg(self.alg, self.config, self.env_fn)


@dataclass
class Run:
    """A run built and ready to learn: its env, algorithm, logger, logdir and lifecycle."""

    config: Config
    env: object
    alg: Algorithm
    logger: Logger
    logdir: Path
    lifecycle: Lifecycle
    env_fn: Callable | None = None


def with_user_code(config: Config, model: Callable | None, env_fn: Callable | None) -> Config:
    """`config` recording the user's network and env factory by name (config.json, checkpoints),
    so that `derl resume` and `derl.load` can import them again."""
    names: dict[str, Any] = {}
    if model is not None:
        names["model"] = function_name(model)
    if env_fn is not None:
        names["env_fn"] = function_name(env_fn)
    return dataclasses.replace(config, **names) if names else config


def build(
    config: Config,
    cleanup: contextlib.ExitStack,
    progress: bool = True,
    resume_state: dict | None = None,
    logdir: Path | None = None,
    stop_after: int | None = None,
    restart: bool = False,
    model: Callable | None = None,
    env_fn: Callable | None = None,
    callbacks: Sequence[Callback] = (),
) -> Run:
    """Env -> algorithm -> logdir, restored from `resume_state` when given. Everything that can
    be refused is checked before the first write; what needs closing goes on `cleanup`.
    `model`, `env_fn`, `callbacks`: as `train`'s."""
    config = with_user_code(config, model, env_fn)
    flush_denormals()  # before torch's worker threads start, so they inherit it
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = spec_of(config)
    device = resolve_device(config.device)
    if config.track:
        tracking.check_available()
    if config.capture_video_every:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo; read when mujoco loads
    logdir = logdir or (Path(config.logdir) if config.logdir else default_logdir(spec.name, config))
    new_run = resume_state is None and not restart
    if new_run:
        check_new_logdir(logdir)
    seed_everything(config.seed)
    env_fn = derl.env.user_env_fn(config, env_fn)
    env = derl.env.make(
        config.env_id,
        config.num_envs,
        config.seed,
        config.vectorization,
        config.normalize,
        config.gamma,
        config.env_kwargs,
        env_fn,
    )
    cleanup.callback(env.close)
    start = resume_state["state"]["runner"]["step_count"] if resume_state else 0
    logger = Logger(
        str(logdir), config.num_train_steps, progress=progress, start_step=start, purge=not new_run
    )
    cleanup.enter_context(logger)  # closed with the exit status, which W&B is told
    alg = spec.make(config, env, device, logger, model)
    if resume_state is not None:
        alg.load_state_dict(resume_state["state"])
        logger.load_state_dict(resume_state["logger"])
        set_rng_state(resume_state["rng"])
    lifecycle = Lifecycle(alg, config, logdir, logger, stop_after, callbacks, env_fn)
    lifecycle.emit("on_training_start", alg.runner.step_count)  # may refuse: before writing
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
    if config.track:  # before config.json: a W&B that cannot start leaves no run to resume
        logger.tracker = tracking.start(config, resolved, logdir)
    if new_run:
        write_config(logdir / "config.json", resolved)
    # First: a checkpoint holds the state before other hooks act at its step (e.g. new
    # noise for noisy nets), so that a resumed run repeats them exactly.
    alg.runner.hooks.insert(0, lifecycle)
    return Run(config, env, alg, logger, logdir, lifecycle, env_fn)


def learn(run: Run) -> TrainResult:
    """Train a built run to its num_train_steps (or until Ctrl-C / stop_after), with a last
    evaluation and checkpoint; a NaN behind a crash is named in one line."""
    alg, lifecycle = run.alg, run.lifecycle
    interrupted, stopped_by = False, ""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lifecycle.on_sigint) if in_main else None
    try:
        alg.learn(run.logger, lifecycle.on_update if lifecycle.callbacks else None)
        lifecycle.finish(alg.runner.step_count)
    except Interrupted:
        interrupted = True
    except Stopped as stop:
        stopped_by = stop.callback
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
        run.logger.flush()  # build() put the closing on the run's cleanup
    lifecycle.emit("on_training_end", alg.runner.step_count)
    return TrainResult(
        alg,
        run.config,
        run.logdir,
        run.logger.mean_return(),
        alg.runner.step_count,
        list(run.logger.recent_returns),
        interrupted,
        stopped_by,
        run.env_fn,
    )


def train(
    config: Config,
    progress: bool = True,
    resume_state: dict | None = None,
    logdir: Path | None = None,
    stop_after: int | None = None,
    restart: bool = False,
    notice: str = "",
    *,
    model: Callable | None = None,
    env_fn: Callable | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train the algorithm `config` describes; writes TensorBoard events, config.json, checkpoints.

    `model`: your network, a function (observation_space, action_space, config) -> nn.Module
    that encodes a batch of observations into [batch, features] (derl's --hidden MLPs and the
    algorithm's heads go on top). `env_fn`: a function returning a gymnasium.Env, made instead
    of `config.env_id` (it may take render_mode=, for videos). Both are recorded in config.json
    as module:function. `callbacks`: derl.callbacks.Callback objects told of the run's events.

    `stop_after`: checkpoint and stop once this many env steps are taken (train in chunks;
    `resume` continues to `config.num_train_steps`). `resume_state` and `restart` are for
    `resume`, which holds the logdir's lock; a new run takes it itself. `notice` goes to stderr
    once the run is built, so that a refused one prints nothing but its error.
    """
    with contextlib.ExitStack() as cleanup:
        run = build(
            config,
            cleanup,
            progress,
            resume_state,
            logdir,
            stop_after,
            restart,
            model,
            env_fn,
            callbacks,
        )
        if notice:
            print(notice, file=sys.stderr)
        return learn(run)


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


def resume(
    logdir: str | Path,
    progress: bool = True,
    stop_after: int | None = None,
    *,
    model: Callable | None = None,
    env_fn: Callable | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Continue the run in `logdir` from its newest good checkpoint to its num_train_steps.

    Refused while another process trains in `logdir`, and when checkpoints exist but none can
    be loaded (starting over would replace them). `model` and `env_fn`: as `train`'s, needed
    when the run's own cannot be imported by the name config.json recorded.
    """
    user: dict[str, Any] = dict(model=model, env_fn=env_fn, callbacks=callbacks)
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
                **user,
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
            **user,
        )
