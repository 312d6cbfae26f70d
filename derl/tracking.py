"""`--track`: the run's scalars, videos and config in Weights & Biases.

The only module that imports wandb, and only when --track is on. The Logger hands it what it
writes to TensorBoard, so W&B gets the same numbers on the same env-step axis (`global_step`).
Explicit logging rather than wandb's `sync_tensorboard` (CleanRL's way), which patches
TensorBoard's writer from inside: that would be a second path for the data, behind the Logger's
back, and tied to the internals of TensorBoard's and torch's writers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, cast

from derl.errors import UsageError

RUN_ID = "wandb-run-id"  # in the logdir: `derl resume` continues the same W&B run
STEP = "global_step"  # the x axis of every chart, as in CleanRL's runs


def check_available() -> None:
    """Before anything is written: --track without wandb installed is one line, not a traceback."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UsageError('--track needs wandb: pip install "derl[wandb]"') from None


class Tracker:
    """One W&B run. Scalars of one env step go in one row: each wandb.log call is a message to
    wandb's service process (0.2 to 0.4 ms measured), too much to pay for each metric."""

    def __init__(self, run: Any) -> None:  # a wandb Run (wandb is optional: no import here)
        self.run = run
        self.row: dict = {}
        self.row_step: int | None = None

    def log(self, tag: str, value, step: int) -> None:
        # A new row when the step changes, and when a tag comes twice at one step (two episodes
        # that end together): each value gets its point, as in TensorBoard.
        if step != self.row_step or tag in self.row:
            self.commit()
            self.row_step = step
        self.row[tag] = value

    def video(self, tag: str, path: Path, step: int) -> None:
        import wandb

        video_format = cast(Literal["gif", "mp4", "webm", "ogg"], path.suffix[1:])
        self.log(tag, wandb.Video(str(path), format=video_format), step)

    def commit(self) -> None:
        if self.row:
            self.run.log({**self.row, STEP: self.row_step})
            self.row.clear()

    def finish(self, exit_code: int = 0) -> None:
        """Marks the W&B run finished (0) or failed, with derl's exit status."""
        self.commit()
        self.run.finish(exit_code=exit_code)


def start(config, resolved: dict, logdir: Path) -> Tracker:
    """A W&B run for the derl run in `logdir`: a new one, or the one an earlier process of it
    started (whose id LOGDIR/wandb-run-id keeps). `resolved` is what config.json holds."""
    import wandb

    id_file = logdir / RUN_ID
    run_id = (id_file.read_text().strip() if id_file.exists() else "") or None  # empty: none
    try:
        run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            group=config.wandb_group,
            name=f"{config.env_id}/{logdir.name}",
            config=resolved,
            id=run_id,
            resume="allow",
            # W&B's files go with the run's other files unless WANDB_DIR says otherwise.
            dir=None if os.environ.get("WANDB_DIR") else str(logdir),
        )
    except wandb.errors.Error as exc:  # not logged in, a wrong entity, no network
        reason = " ".join(str(exc).split())  # on one line
        raise UsageError(
            f"--track: W&B did not start ({reason}); run `wandb login`, or set WANDB_MODE=offline "
            "to keep the run on disk and `wandb sync` it later"
        ) from None
    if run_id is None:  # atomically: a kill mid-write must not leave an empty id for good
        tmp = id_file.with_name(f".{RUN_ID}.tmp")
        tmp.write_text(run.id + "\n")
        os.replace(tmp, id_file)
    run.define_metric(STEP)
    run.define_metric("*", step_metric=STEP)
    return Tracker(run)
