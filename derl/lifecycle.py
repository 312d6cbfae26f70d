"""The run's lifecycle between rollouts: periodic checkpoints and evaluations (the best agent
kept as best.pt), NaN guards before anything is saved, and Ctrl-C stopping at a checkpoint."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from derl import checkpoint, guard
from derl.alg.base import Algorithm
from derl.errors import NonFinite, WriteError
from derl.factory import Config
from derl.logger import Logger
from derl.snapshot import snapshot

BEST = "best.pt"  # the policy with the best evaluation so far, in the logdir


class Interrupted(Exception):
    """Ctrl-C was pressed: a checkpoint has been written."""


class Lifecycle:
    """Runs between rollouts: periodic checkpoints and evaluation; Ctrl-C stops at the next one."""

    def __init__(
        self,
        alg: Algorithm,
        config: Config,
        logdir: Path,
        logger: Logger,
        stop_after: int | None = None,
    ):
        self.alg, self.config, self.logdir, self.logger = alg, config, logdir, logger
        self.last_checkpoint = self.last_eval = self.last_video = alg.runner.step_count
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
        video_every = self.config.capture_video_every
        if video_every and step - self.last_video >= video_every:
            self.capture_video(step)

    def finish(self, step: int) -> None:
        """End of training: a last evaluation and video (when asked for) and a last checkpoint."""
        if self.config.eval_every and self.last_eval != step:
            self.evaluate(step)
        if self.config.capture_video_every and self.last_video != step:
            self.capture_video(step)
        self.checkpoint(step)

    def checkpoint(self, step: int) -> Path:
        state = snapshot(self.alg, self.config, self.logger)
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
            state = snapshot(self.alg, self.config, policy_only=True, eval_return=mean, step=step)
            self.save(state, self.logdir / BEST)

    def capture_video(self, step: int) -> None:
        """One deterministic episode of the agent as it is now, filmed as `derl eval --video`
        films it, to LOGDIR/videos, TensorBoard and W&B (--capture-video-every)."""
        from derl.agent import Agent
        from derl.evaluate import film_episode

        frames, fps, _ = film_episode(Agent.from_alg(self.alg, self.config))
        self.logger.video("eval/video", frames, fps, step)
        self.last_video = step

    def on_sigint(self, signum, frame) -> None:
        if self.stop_requested:  # pressed twice: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        print(
            "\nderl: stopping after this update to write a checkpoint (Ctrl-C again to quit now)",
            file=sys.stderr,
        )
