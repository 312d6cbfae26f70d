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
from derl import checkpoint, distributed, lock, tracking
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
    return distributed.checked_device(name, "--device")


def default_logdir(alg: str, config: Config) -> Path:
    env_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.env_id)
    return Path("runs") / env_name / f"{alg}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def restarted_logdir(alg: str, config: Config) -> Path | None:
    """The logdir of the run that a group torchrun restarted (--max-restarts) had begun: its
    --logdir, or the default one whose config.json has this launch's TORCHELASTIC_RUN_ID."""
    if config.logdir:
        logdir = Path(config.logdir)
        return logdir if (logdir / "config.json").exists() else None
    launch_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if launch_id in ("", "none"):
        return None
    default = default_logdir(alg, config)
    prefix = default.name.rsplit("-", 2)[0]  # <alg>-seed<seed>
    for found in sorted(default.parent.glob(f"{prefix}-*/config.json"), reverse=True):
        with contextlib.suppress(UsageError, AttributeError):
            if checkpoint.read_json(found).get("launch_id") == launch_id:
                return found.parent
    return None


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
    config, device = join_group(config, resuming=resume_state is not None or restart)
    main = distributed.is_main()  # rank 0 (or the only process) writes the logdir and logs
    together = distributed.agree  # a refusal on any rank stops every rank, printed once
    if config.track:
        tracking.check_available()
    if config.capture_video_every:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo; read when mujoco loads
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame's frames need no display
    logdir = logdir or (Path(config.logdir) if config.logdir else default_logdir(spec.name, config))
    logdir = distributed.broadcast(logdir)  # rank 0's clock names a default one
    new_run = resume_state is None and not restart
    if new_run:
        together(lambda: check_new_logdir(logdir) if main else None)
    # Data-parallel ranks: their own env seeds (never the same twice in a run), replay and
    # sampling RNGs; the model is built from the same seed everywhere, so it starts the same.
    rank_seed = config.seed + distributed.rank() * config.num_envs
    seed_everything(config.seed)
    env_fn = derl.env.user_env_fn(config, env_fn)
    env = together(
        lambda: derl.env.make(
            config.env_id,
            config.num_envs,
            rank_seed,
            config.vectorization,
            config.normalize,
            config.gamma,
            config.env_kwargs,
            env_fn,
        )
    )
    cleanup.callback(env.close)
    start = resume_state["state"]["runner"]["step_count"] if resume_state else 0
    logger = Logger(
        str(logdir) if main else None,
        planned_steps(config),  # the bar's total: whole rollouts, not the budget it rounds up
        progress=progress and main,
        start_step=start,
        purge=not new_run,
    )
    cleanup.enter_context(logger)  # closed with the exit status, which W&B is told
    rank_config = dataclasses.replace(config, seed=rank_seed)  # the replay's sampling seed
    alg = together(lambda: spec.make(rank_config, env, device, logger, model))
    if config.compile:
        from derl.compile import compile_alg

        compile_alg(alg, device, logger if main else None)
    if resume_state is not None:
        alg.load_state_dict(resume_state["state"])
        logger.load_state_dict(resume_state["logger"])
        set_rng_state(resume_state["rng"])
    elif rank_seed != config.seed:
        seed_everything(rank_seed)
    together(lambda: distributed.check_same_parameters(alg))
    callbacks = callbacks if main else ()  # told once, by rank 0
    schedule = resume_state.get("schedule") if resume_state else None
    lifecycle = Lifecycle(alg, config, logdir, logger, stop_after, callbacks, env_fn, schedule)
    if resume_state is not None:  # checkpoints written before 2026-12-06 hold no callbacks
        lifecycle.load_callback_states(resume_state.get("callbacks", []))
    # may refuse: before writing
    together(lambda: lifecycle.emit("on_training_start", alg.runner.step_count))
    resolved = {
        "alg": spec.name,
        **dataclasses.asdict(config),
        "logdir": str(logdir),
        "resolved_device": str(device),
    }
    if distributed.launched():  # a restarted torchrun group finds its run by this id
        resolved["launch_id"] = os.environ.get("TORCHELASTIC_RUN_ID", "")
    together(lambda: start_logdir(config, logdir, logger, cleanup, resolved, new_run, main))
    # First: a checkpoint holds the state before other hooks act at its step (e.g. new
    # noise for noisy nets), so that a resumed run repeats them exactly.
    alg.runner.hooks.insert(0, lifecycle)
    return Run(config, env, alg, logger, logdir, lifecycle, env_fn)


def deterministic_cuda() -> None:
    """CUDA kernels that give the same bits every time, so that a seed repeats and a resumed
    run continues exactly: cuDNN's deterministic convolutions, cuBLAS with a fixed workspace
    (read when cuBLAS starts, before the first matmul), and torch's deterministic scatters and
    index backward passes (a warning where an op has none).
    https://pytorch.org/docs/stable/notes/randomness.html
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    # derl reads no memory it has not written; filling torch.empty with NaN would cost a GPU
    # replay buffer's size in writes for nothing.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def join_group(config: Config, resuming: bool = False) -> tuple[Config, torch.device]:
    """Under torchrun: join the other processes (once), and take this process's device.
    The config then records the world size in `nproc`."""
    asked = device = resolve_device(config.device)
    if distributed.launched():
        device = distributed.local_device(device)
    if device.type == "cuda":
        if device.index is not None:  # made current: its RNG is the one checkpoints keep
            torch.cuda.set_device(device)  # (a bare "cuda" is the current one already)
        if config.deterministic:
            deterministic_cuda()
    if not distributed.launched():
        return config, device
    distributed.init(config.dist_backend, asked)
    size = distributed.world_size()

    def check_size() -> None:
        if config.nproc != size and (resuming or config.nproc != 1):
            was = "this run was trained with" if resuming else "--nproc asks for"
            raise UsageError(
                f"{was} {config.nproc} process(es), but torchrun started {size}; use "
                f"--nproc-per-node {config.nproc} (x nodes) or `derl resume` (it starts them)"
            )

    distributed.agree(check_size)  # every rank refuses it; one prints it
    return dataclasses.replace(config, nproc=size), device


def start_logdir(
    config: Config,
    logdir: Path,
    logger: Logger,
    cleanup: contextlib.ExitStack,
    resolved: dict,
    new_run: bool,
    main: bool,
) -> None:
    """The first writes, once everything that could be refused was (rank 0's alone)."""
    if not main:
        return
    if new_run:
        create_logdir(logdir)
        cleanup.enter_context(lock.hold(logdir))
        check_new_logdir(logdir)  # another process may have started one meanwhile
    if config.track:  # before config.json: a W&B that cannot start leaves no run to resume
        logger.tracker = tracking.start(config, resolved, logdir)
    if new_run:
        write_config(logdir / "config.json", resolved)


def learn(run: Run) -> TrainResult:
    """Train a built run to its num_train_steps (or until Ctrl-C / stop_after), with a last
    evaluation and checkpoint; a NaN behind a crash is named in one line."""
    alg, lifecycle = run.alg, run.lifecycle
    interrupted, stopped_by = False, ""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lifecycle.on_sigint) if in_main else None
    # SIGTERM too, in a single process: under torchrun, which sends it to the survivors when a
    # rank fails, they would wait at their next collective instead of stopping.
    catch_term = in_main and not distributed.launched()
    previous_term = signal.signal(signal.SIGTERM, lifecycle.on_sigint) if catch_term else None
    try:
        run.logger.start_clock()
        alg.learn(run.logger, lifecycle.on_update if lifecycle.callbacks else None)
        lifecycle.finish(alg.runner.step_count)
        stopped_by = lifecycle.stopped_by  # a callback's stop in the last rollout
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
        if catch_term:
            signal.signal(signal.SIGTERM, previous_term)
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
        for line in (notice, budget_notice(run.config)):
            if line and distributed.is_main():  # once, not once per data-parallel process
                print(line, file=sys.stderr)
        return learn(run)


def on_policy_rollout(config: Config) -> int | None:
    """Env steps of one on-policy rollout over every data-parallel process (None off-policy)."""
    steps = getattr(config, "num_runner_steps", None)
    return None if steps is None else steps * config.num_envs * config.nproc


def planned_steps(config: Config) -> int:
    """The env steps training takes: on-policy runs whole rollouts, so their budget rounds up."""
    rollout = on_policy_rollout(config)
    if rollout is None:
        return config.num_train_steps
    return -(-config.num_train_steps // rollout) * rollout


def budget_notice(config: Config) -> str:
    """A line when on-policy training will take over 10% more env steps than its budget: it runs
    whole rollouts (PPO BipedalWalker-v3 with --num-train-steps 4096 takes 32 x 2048 steps)."""
    rollout, total = on_policy_rollout(config), planned_steps(config)
    if rollout is None or total <= 1.1 * config.num_train_steps:
        return ""
    steps = config.num_runner_steps  # type: ignore[attr-defined]
    processes = f" x --nproc {config.nproc}" if config.nproc > 1 else ""
    return (
        f"derl: rollouts are {rollout:,} env steps (--num-envs {config.num_envs} x "
        f"--num-runner-steps {steps}{processes}), so --num-train-steps "
        f"{config.num_train_steps:,} takes {total:,}"
    )


def check_new_logdir(logdir: Path) -> None:
    """A new run's logdir: a directory to be, or one that holds no run; never overwritten."""
    if logdir.exists() and not logdir.is_dir():
        raise UsageError(f"--logdir {logdir} is a file, not a directory")
    if (logdir / "config.json").exists():
        raise UsageError(
            f"{logdir} already holds a run; pass another --logdir or `derl resume {logdir}`"
        )
    # A run's files without its config.json (deleted, or copied in part): a new run there would
    # overwrite the checkpoints and mix its TensorBoard curves with the old ones.
    leftovers = [
        p.name
        for pattern in ("events.out.tfevents.*", "best.pt", "checkpoints/*.pt")
        for p in sorted(logdir.glob(pattern))
    ]
    if leftovers:
        raise UsageError(
            f"{logdir} holds files of an earlier run ({', '.join(leftovers[:3])}"
            f"{', ...' if len(leftovers) > 3 else ''}) but no config.json; pass another --logdir "
            "or move them away"
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
    device: str | None = None,
    buffer_device: str | None = None,
    checkpoint_minutes: float | None = None,
) -> TrainResult:
    """Continue the run in `logdir` from its newest good checkpoint to its num_train_steps.

    Refused while another process trains in `logdir`, and when checkpoints exist but none can
    be loaded (starting over would replace them). `model` and `env_fn`: as `train`'s, needed
    when the run's own cannot be imported by the name config.json recorded. `device` and
    `buffer_device` move the run (a GPU run continued on a laptop: "cpu");
    `checkpoint_minutes` replaces the run's (it changes when checkpoints are written, not what
    is learnt); the rest of the config is the run's own.
    """
    user: dict[str, Any] = dict(model=model, env_fn=env_fn, callbacks=callbacks)
    moved: dict[str, Any] = {
        k: v for k, v in dict(device=device, buffer_device=buffer_device).items() if v is not None
    }
    if checkpoint_minutes is not None:
        moved["checkpoint_minutes"] = checkpoint_minutes
    logdir = Path(logdir)
    if not logdir.is_dir():
        what = "is not a directory" if logdir.exists() else "does not exist"
        raise UsageError(f"{logdir} {what}; `derl resume` takes the logdir of a run")
    if not (logdir / "config.json").exists():
        raise UsageError(f"{logdir} holds no derl run (no config.json)")
    try:
        config: Config | None = read_config(logdir)
    except UsageError:  # a damaged config.json: a single process goes by its checkpoints
        if distributed.launched():
            raise
        config = None
    if config is not None:
        config = moved_config(config, moved)
    if config is not None and config.nproc > 1 and not distributed.launched():
        raise UsageError(
            f"{logdir} was trained by {config.nproc} processes; continue it from the shell with "
            f"`derl resume {logdir}` (it starts them) or under torchrun"
        )
    if config is not None:
        join_group(config, resuming=True)
    main = distributed.is_main()
    with contextlib.ExitStack() as held:
        distributed.agree(lambda: held.enter_context(lock.hold(logdir)) if main else None)
        # Rank 0 chooses the checkpoint; every other rank continues from its part of it.
        chosen = distributed.agree(lambda: choose_checkpoint(logdir) if main else None)
        path = distributed.broadcast(None if chosen is None else chosen[0])
        if path is None:  # killed before its first checkpoint: the config is all there is
            return train(
                moved_config(read_config(logdir), moved),
                progress,
                logdir=logdir,
                stop_after=stop_after,
                restart=True,
                notice=f"derl: no checkpoint in {logdir}; starting over from step 0 with "
                "config.json",
                **user,
            )

        def own_part() -> dict:
            if chosen is not None:  # rank 0's choice
                return chosen[1]
            return checkpoint.load(checkpoint.rank_path(path, distributed.rank()))

        state = distributed.agree(own_part)
        return train(
            moved_config(checkpoint_config(state, path), moved),
            progress,
            resume_state=state,
            logdir=logdir,
            stop_after=stop_after,
            notice=chosen[2] if chosen is not None else "",
            **user,
        )


def moved_config(config: Config, moved: dict[str, Any]) -> Config:
    """`config` with what `derl resume` changes: --device, --buffer-device,
    --checkpoint-minutes."""
    if "buffer_device" in moved and not hasattr(config, "buffer_device"):
        raise UsageError(
            f"--buffer-device is for the replay buffer of DQN, Rainbow, SAC and TD3; this run is "
            f"{spec_of(config).name.upper()}, which has none"
        )
    config = dataclasses.replace(config, **moved)
    config.validate()
    return config


def choose_checkpoint(logdir: Path) -> tuple[Path, dict, str] | None:
    """The newest checkpoint that loads (path, state, what to tell the user), None when there
    is none; UsageError when there are some but none loads (starting over would replace them)."""
    checkpoint.remove_temporary(logdir)  # under the lock: what killed writes left behind
    path, state, skipped = checkpoint.newest_good(logdir)
    if path is not None and state is not None:
        fallbacks = [f"derl: {error}; falling back to the previous checkpoint" for error in skipped]
        return path, state, "\n".join([*fallbacks, f"derl: resuming from {path}"])
    if skipped:
        raise UsageError(
            f"no checkpoint in {logdir / checkpoint.CHECKPOINT_DIR} can be loaded (the newest: "
            f"{skipped[0]}); move them away to start over from step 0"
        )
    return None
