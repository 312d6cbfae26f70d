"""The run's lifecycle between rollouts: periodic checkpoints and evaluations (the best agent
kept as best.pt), NaN guards before anything is saved, Ctrl-C stopping at a checkpoint, and the
user's callbacks (derl.callbacks) told of each event."""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from derl import checkpoint, distributed, guard
from derl.alg.base import Algorithm
from derl.callbacks import Callback, Event
from derl.errors import NonFinite, UsageError, WriteError
from derl.factory import Config
from derl.logger import Logger
from derl.snapshot import snapshot

BEST = "best.pt"  # the policy with the best evaluation so far, in the logdir


class Interrupted(Exception):
    """Ctrl-C was pressed: a checkpoint has been written."""


class Stopped(Exception):
    """A callback stopped training: the last evaluation and checkpoint have been written."""

    def __init__(self, callback: str):
        super().__init__(callback)
        self.callback = callback


class Lifecycle:
    """Runs between rollouts: periodic checkpoints and evaluation; Ctrl-C stops at the next one."""

    def __init__(
        self,
        alg: Algorithm,
        config: Config,
        logdir: Path,
        logger: Logger,
        stop_after: int | None = None,
        callbacks: Sequence[Callback] = (),
        env_fn: Callable | None = None,
        schedule: dict | None = None,
    ):
        self.alg, self.config, self.logdir, self.logger = alg, config, logdir, logger
        self.start = self.last_checkpoint = self.last_eval = alg.runner.step_count
        self.last_checkpoint_time = time.monotonic()
        self.checkpointed: int | None = None  # the step of the last checkpoint this process wrote
        self.clock_checkpoint = (
            False  # data-parallel: the ranks agreed on a checkpoint by the clock
        )
        self.last_video = self.start
        # A resumed run evaluates and films at the steps the run would have without the stop:
        # counting from the resume instead, a run stopped more often than every `eval_every`
        # steps (a suite killed each sitting) would never evaluate. Checkpoints written before
        # 2026-12-06 hold no schedule: their runs count from the resume, as they always did.
        if schedule:
            self.last_eval, self.last_video = schedule["last_eval"], schedule["last_video"]
        self.stop_requested, self.stop_after = False, stop_after
        self.sigint = False  # Ctrl-C or SIGTERM; acted on at once, or once the ranks agree
        self.ctrl_c = False  # a SIGINT came: a second one quits at once
        # A callback's stop (`vote`) stops a single process at once; data-parallel ranks stop
        # together at their next exchange. Callbacks run on rank 0 only.
        self.callbacks, self.vote, self.stopped_by = list(callbacks), "", ""
        self.env_fn = env_fn  # the user's env factory, for evaluation envs
        self.metrics: dict = {}  # the means of the metrics at the last point between rollouts
        self.best_return = best_return(logdir / BEST)
        self.exchange = distributed.Exchange(alg.runner) if distributed.world_size() > 1 else None
        if self.exchange is not None:
            logger.deferred = []  # each rank's episodes reach rank 0 at the exchanges

    def __call__(self, step: int) -> None:
        self.check_metrics()  # before the policy acts again on what the last updates did
        if step > self.start:
            self.emit("on_rollout", step)
        stopping = self.stop_after is not None and step >= self.stop_after
        checkpoint_due = step - self.last_checkpoint >= self.config.checkpoint_every
        eval_due = bool(self.config.eval_every) and step - self.last_eval >= self.config.eval_every
        if self.exchange is not None and (
            self.exchange.due(step) or stopping or checkpoint_due or eval_due
        ):
            self.exchange_with_ranks(step)
        if self.exchange is None:
            checkpoint_due = checkpoint_due or self.clock_due()
        else:  # each rank's clock differs: a checkpoint by the clock waits for an exchange
            checkpoint_due = checkpoint_due or self.clock_checkpoint
            self.clock_checkpoint = False
        if not self.stopped_by:
            if self.stop_requested or stopping:
                self.checkpoint(step)
                raise Interrupted
            # Evaluation and video first: a checkpoint of the same step then records them as
            # done, and a run resumed from it does not evaluate that step twice. (They change
            # nothing in training.)
            if eval_due:
                self.evaluate(step)
            video_every = self.config.capture_video_every
            if video_every and step - self.last_video >= video_every:
                self.capture_video(step)
            if checkpoint_due:
                self.checkpoint(step)
        if self.stopped_by:
            self.finish(step)
            raise Stopped(self.stopped_by)

    # -- callbacks ----------------------------------------------------------------------------

    def emit(self, name: str, step: int, **fields) -> None:
        """Tell every callback of event `name`; one returning False stops the run (the first
        such callback is named in the TrainResult)."""
        if not self.callbacks:
            return
        metrics = fields.pop("metrics", None)
        if metrics is None:
            metrics = {f"train/{k}": v for k, v in self.metrics.items()}
            metrics["episode/return_mean"] = self.logger.mean_return()
        event = Event(step, self.alg, self.config, self.logdir, metrics, **fields)
        for callback in self.callbacks:
            if getattr(callback, name)(event) is False and not self.vote:
                self.vote = type(callback).__name__
        if self.exchange is None:
            self.stopped_by = self.vote

    def callback_states(self) -> list[dict]:
        """Each callback's `state_dict`, by position and class, for the checkpoint."""
        states = []
        for callback in self.callbacks:
            name = type(callback).__qualname__
            state = callback.state_dict() if hasattr(callback, "state_dict") else {}
            if bad := checkpoint.not_plain(state, f"{name}.state_dict()"):
                raise UsageError(
                    f"{bad}: checkpoints hold plain data only (numbers, strings, lists, "
                    "dicts, tensors, numpy arrays); return those from state_dict"
                )
            states.append({"name": name, "state": checkpoint.to_plain(state)})
        return states

    def load_callback_states(self, states: list[dict]) -> None:
        """A resumed run: each callback gets the state that the callback at the same position
        saved, when it is of the same class. A saved state that no callback takes is dropped
        with one warning line (the callbacks were passed in another order, or left out)."""
        for i, saved in enumerate(states):
            callback = self.callbacks[i] if i < len(self.callbacks) else None
            name = type(callback).__qualname__ if callback is not None else None
            if callback is not None and name == saved["name"]:
                if saved["state"] and hasattr(callback, "load_state_dict"):
                    callback.load_state_dict(checkpoint.from_plain(saved["state"]))
            elif saved["state"]:
                now = f"is a {name}" if name else "was not passed"
                print(
                    f"derl: warning: the checkpoint holds the state of callback {i}, a "
                    f"{saved['name']}, but callback {i} {now}: that state is dropped (pass "
                    "the callbacks in the run's order to keep it)",
                    file=sys.stderr,
                )

    def exchange_with_ranks(self, step: int) -> None:
        """Data-parallel runs: the ranks' episodes to rank 0's logger, and a stop (Ctrl-C on
        any rank, a callback on rank 0) agreed by all, so that they stop at the same step."""
        assert self.exchange is not None and self.logger.deferred is not None
        episodes, self.logger.deferred = self.logger.deferred, []
        agreed = self.exchange(step, episodes, self.sigint, self.vote, self.clock_due())
        self.clock_checkpoint = agreed["checkpoint"]
        if distributed.is_main():
            for episode in agreed["episodes"]:
                self.logger.write_episode(*episode)
        self.stop_requested = self.stop_requested or agreed["stop"]
        self.stopped_by = self.stopped_by or agreed["stopped_by"]

    def on_update(self, step: int, metrics: dict) -> None:
        """After each update (Algorithm.learn calls it); a stop takes effect between rollouts."""
        self.emit("on_update", step, metrics=metrics)

    def finish(self, step: int) -> None:
        """End of training: a last evaluation and video (when asked for) and a last checkpoint."""
        if self.exchange is not None and self.exchange.last != step:
            self.exchange_with_ranks(step)  # the last episodes and statistics
        if self.config.eval_every and self.last_eval != step:
            self.evaluate(step)
        if self.config.capture_video_every and self.last_video != step:
            self.capture_video(step)
        if self.checkpointed != step:  # a callback can stop the run at a checkpoint's step
            self.checkpoint(step)

    def checkpoint(self, step: int) -> Path:
        schedule = {"last_eval": self.last_eval, "last_video": self.last_video}
        state = snapshot(
            self.alg, self.config, self.logger, schedule=schedule, callbacks=self.callback_states()
        )
        self.check_model(step, state["state"])
        path = checkpoint.checkpoint_path(self.logdir, step)
        if self.exchange is not None:
            # Each rank saves its own envs, replay and RNG. Rank 0's file, written once every
            # rank's is, completes the checkpoint: a resume never finds one with a part missing.
            if not distributed.is_main():
                self.save(state, checkpoint.rank_path(path, distributed.rank()))
            distributed.barrier()
        if distributed.is_main():
            self.save(state, path)
            checkpoint.prune(self.logdir, self.config.keep_checkpoints)
        self.last_checkpoint, self.last_checkpoint_time = step, time.monotonic()
        self.checkpointed = step
        self.emit("on_checkpoint", step, path=path)
        return path

    def clock_due(self) -> bool:
        """`checkpoint_minutes` of wall time have passed since the last checkpoint: a run killed
        without warning (SIGKILL, a machine taken back) loses at most that much, whatever its
        speed. Where the checkpoints fall changes nothing in training (they draw no random
        numbers), so a run with them continues as one without."""
        minutes = self.config.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self.last_checkpoint_time >= 60 * minutes

    def save(self, state: dict, path: Path) -> None:
        try:
            checkpoint.save(state, path)
        except WriteError as exc:  # the file it would have replaced, and all others, are intact
            raise WriteError(f"{exc}; {self.newest_checkpoint('free some space')}") from None

    # -- NaN and infinities: found where they cost nothing, never written to a checkpoint -----

    def check_metrics(self, write: bool = False) -> None:
        """The means of the metrics of the updates since the last call, which the logger
        computes anyway (its one device sync): no check in the update loop itself. `write`:
        the logger writes its point now (checkpoints and evaluations: the steps a resumed run
        starts from)."""
        means = self.logger.flush(write)
        self.metrics = means or self.metrics
        bad = guard.nonfinite_metric(means)
        if bad is not None:
            raise self.nonfinite(f"train/{bad}", self.logger.step)

    def check_model(self, step: int, state: dict) -> None:
        """Before the model is saved or evaluated: the metrics, every floating-point tensor of
        its `state` (parameters, optimizer moments, target networks; not the runner's: env
        observations are not ours to judge) and the outputs of the policy."""
        self.check_metrics(write=True)
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
        if not distributed.is_main():  # the parameters are rank 0's: it evaluates them
            self.last_eval = step
            return
        agent = Agent.from_alg(self.alg, self.config, self.env_fn)
        mean = float(evaluate(agent, self.config.eval_episodes).mean())
        self.logger.scalar("eval/return", mean, step)
        self.last_eval = step
        if mean > self.best_return:
            # Value-based agents can get worse late in training (DQN on CartPole does): keep the
            # best evaluated one, as rl-zoo's best_model, for `derl eval LOGDIR/best.pt`.
            self.best_return = mean
            state = snapshot(self.alg, self.config, policy_only=True, eval_return=mean, step=step)
            self.save(state, self.logdir / BEST)
        self.emit("on_evaluation", step, eval_return=mean)

    def capture_video(self, step: int) -> None:
        """One deterministic episode of the agent as it is now, filmed as `derl eval --video`
        films it, to LOGDIR/videos, TensorBoard and W&B (--capture-video-every)."""
        from derl.agent import Agent
        from derl.evaluate import film_episode

        self.last_video = step
        if not distributed.is_main():
            return
        try:
            frames, fps, _ = film_episode(Agent.from_alg(self.alg, self.config, self.env_fn))
            self.logger.video("eval/video", frames, fps, step)
        except Exception as exc:  # a video is not worth the run: train on, checkpoint included
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            print(f"derl: warning: no video at step {step}: {reason}", file=sys.stderr)

    def on_sigint(self, signum, frame) -> None:
        """Ctrl-C (SIGINT) or SIGTERM (a scheduler, `timeout`, a kill of the process group):
        stop after this update with a checkpoint. A second Ctrl-C quits at once; SIGTERM never
        does, since a process group's kill may bring it beside a SIGINT, or twice."""
        if signum == signal.SIGINT and self.ctrl_c:  # pressed twice: stop now
            raise KeyboardInterrupt
        self.ctrl_c = self.ctrl_c or signum == signal.SIGINT
        if self.sigint:
            return  # stopping already
        self.sigint = True
        if self.exchange is None:
            self.stop_requested = True
        elif not distributed.is_main():
            return  # rank 0 says it once
        how = "Ctrl-C again to quit now" if signum == signal.SIGINT else "SIGTERM"
        print(
            f"\nderl: stopping after this update to write a checkpoint ({how})",
            file=sys.stderr,
        )


def best_return(path: Path) -> float:
    """The evaluation `best.pt` was kept for, so that a resumed run keeps the best agent of the
    steps before it; -inf without one. A damaged best.pt does not stop the resume: it says so,
    and the next evaluation writes a new one."""
    if not path.exists():
        return -math.inf
    try:
        return float(checkpoint.load(path)["eval_return"])
    except (UsageError, KeyError, TypeError, ValueError) as exc:
        if distributed.is_main():
            print(
                f"derl: {path} cannot be read ({exc}); the next evaluation replaces it",
                file=sys.stderr,
            )
        return -math.inf
