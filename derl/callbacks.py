"""Callbacks: your code at the events of a run, `derl.train(config, callbacks=[...])`.

Subclass `Callback` and override the events you need. Each gets an `Event` with the env step
count, the algorithm, the config, the logdir and the latest metrics. Returning False from any
event stops training cleanly: a last evaluation (when the run evaluates) and a checkpoint are
written at the next point between rollouts, and `derl resume` could continue it later.

Events, in the order of a run:
- `on_training_start`: the run is built, before anything is written (a resumed run: at its
  checkpoint's step); raising an error here refuses the run;
- `on_update`: after every gradient update, with that update's metrics (tensors: reading one
  with `.item()` waits for the device);
- `on_rollout`: between rollouts (the last rollout was collected and trained on), with the means
  of the metrics since the previous one and the mean return of the last 100 episodes;
- `on_evaluation`: an evaluation finished (`event.eval_return`, the mean over eval_episodes);
- `on_checkpoint`: a checkpoint was written (`event.path`); after the evaluation of the same step;
- `on_training_end`: training ended (done, stopped by a callback, or Ctrl-C), after the last
  checkpoint. Not called when training fails with an error.

A callback with state of its own (a patience count) returns it from `state_dict`; checkpoints
save it and `derl.resume(..., callbacks=[...])` hands it back to the callback of the same class
at the same position in the list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Event:
    """What a callback is told: `step` (env steps so far, over all envs) and the rest."""

    step: int
    alg: Any  # the derl.alg.Algorithm being trained
    config: Any  # its derl.factory.Config
    logdir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # on_checkpoint: the checkpoint written
    eval_return: float | None = None  # on_evaluation: the mean return


class Callback:
    """Override any event; return False from one to stop training (None or True go on)."""

    def on_training_start(self, event: Event) -> bool | None:
        return None

    def on_update(self, event: Event) -> bool | None:
        return None

    def on_rollout(self, event: Event) -> bool | None:
        return None

    def on_checkpoint(self, event: Event) -> bool | None:
        return None

    def on_evaluation(self, event: Event) -> bool | None:
        return None

    def on_training_end(self, event: Event) -> bool | None:
        return None

    def state_dict(self) -> dict:
        """What this callback must carry over a resume (patience, the best return so far):
        plain data only (numbers, strings, lists, dicts, tensors, numpy arrays). Each checkpoint
        saves it; {} saves nothing."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """A resumed run hands back what `state_dict` returned at its checkpoint, before
        `on_training_start`."""


class StopOnReward(Callback):
    """Stop once the agent reaches `threshold`: by default the mean return of an evaluation
    (the run needs `eval_every`), or with `source="train"` the mean return of the last 100
    training episodes (noisier: exploration is on)."""

    def __init__(self, threshold: float, source: str = "eval"):
        if source not in ("eval", "train"):
            raise ValueError(f'source must be "eval" or "train", got {source!r}')
        self.threshold, self.source = threshold, source

    def on_training_start(self, event: Event) -> None:
        if self.source == "eval" and not event.config.eval_every:
            raise ValueError(
                "StopOnReward reads evaluations, but the config has eval_every=0; "
                'set eval_every or use StopOnReward(threshold, source="train")'
            )

    def on_evaluation(self, event: Event) -> bool:
        return not (
            self.source == "eval"
            and event.eval_return is not None
            and event.eval_return >= self.threshold
        )

    def on_rollout(self, event: Event) -> bool:
        mean = event.metrics.get("episode/return_mean", float("nan"))
        return not (self.source == "train" and mean >= self.threshold)  # nan: go on


class SaveEvery(Callback):
    """Save the agent every `every` env steps (at the first point between rollouts after each
    multiple) to `directory` (default LOGDIR/agents) as `agent-<step>.pt`, which `derl.load`
    and `derl eval` read. Checkpoints are for resuming and keep only the newest few; these stay."""

    def __init__(self, every: int, directory: str | Path | None = None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.directory = every, directory
        self.saved_index = 0

    def on_training_start(self, event: Event) -> None:
        self.saved_index = event.step // self.every  # a resumed run does not save again

    def on_rollout(self, event: Event) -> None:
        if event.step // self.every > self.saved_index:
            self.save(event)

    def on_training_end(self, event: Event) -> None:
        if event.step // self.every > self.saved_index:
            self.save(event)

    def save(self, event: Event) -> Path:
        from derl import checkpoint
        from derl.snapshot import snapshot

        directory = Path(self.directory) if self.directory else event.logdir / "agents"
        state = snapshot(event.alg, event.config, policy_only=True, step=event.step)
        path = checkpoint.save(state, directory / f"agent-{event.step}.pt")
        self.saved_index = event.step // self.every
        return path
