"""The one logger: TensorBoard scalars, videos and a progress bar, every scalar on the env-step
axis, and the same to Weights & Biases with --track.

Runners and algorithms hand it numbers; it never reaches back into them.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from derl.errors import exit_status

if TYPE_CHECKING:
    from derl.tracking import Tracker


class Logger:
    """Averages the metrics of the updates and writes them every `write_every` env steps.

    The means at each env step still come back from `flush` (the NaN guard reads them between
    rollouts); TensorBoard gets the mean over all updates since its last point. Writing a point
    per update cost SAC half a millisecond per env step (10 scalars through the event writer),
    more than its replay writes; CleanRL's off-policy scripts write every 100 steps as well.
    """

    def __init__(
        self,
        logdir: str | None,
        total_steps: int,
        progress: bool = True,
        start_step: int = 0,
        purge: bool = False,
        write_every: int = 100,
    ):
        self.logdir = logdir  # None: count and average only, write nothing
        self._writer = None
        self.total_steps, self.show_progress = total_steps, progress
        self._bar = None
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.pending: dict[str, list] = defaultdict(list)
        # Sums and counts of the metrics since the last point written, and that point's step.
        self.window: dict[str, list[float]] = {}
        self.write_every, self.last_write = write_every, start_step
        self.step = self.start_step = start_step
        self.purge = purge  # drop events an earlier, interrupted process wrote after start_step
        self.last_time, self.last_step = time.perf_counter(), start_step
        self.step_time = self.last_time  # when `step` was reached
        # With --track: gets what TensorBoard gets.
        self.tracker: Tracker | None = None
        # Data-parallel runs: episodes wait here until the ranks exchange them (derl.distributed).
        self.deferred: list[tuple[float, int, int]] | None = None

    @property
    def writer(self):
        """Opened at the first scalar, so that a run refused while being built writes nothing."""
        if self._writer is None and self.logdir is not None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when writing

            # A resumed run drops what the interrupted one wrote after its checkpoint, and keeps
            # what it wrote at the checkpoint's step (TensorBoard drops steps >= purge_step).
            purge_step = self.start_step + 1 if self.purge else None
            self._writer = SummaryWriter(self.logdir, purge_step=purge_step)
        return self._writer

    @property
    def bar(self) -> tqdm:
        """Shown from the first update on, so that a refused run prints nothing but its error."""
        if self._bar is None:
            self._bar = tqdm(
                total=self.total_steps,
                initial=self.start_step,
                unit="step",
                dynamic_ncols=True,
                disable=not self.show_progress,
            )
        return self._bar

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)
        if self.tracker is not None:
            self.tracker.log(tag, value, step)

    def video(self, tag: str, frames: np.ndarray, fps: float, step: int) -> Path | None:
        """One filmed episode (frames T, H, W, 3) at env step `step`: LOGDIR/videos/step-<step>.mp4
        (W&B gets that file) and a smaller animated GIF among TensorBoard's images. The GIF is
        what `SummaryWriter.add_video` writes, but add_video needs moviepy, and imports the
        `moviepy.editor` that moviepy 2 removed."""
        if self.logdir is None:
            return None
        from tensorboard.compat.proto.summary_pb2 import Summary

        from derl.video import gif, preview, write_video

        path = write_video(frames, fps, Path(self.logdir) / "videos" / f"step-{step:012d}.mp4")
        small = preview(frames)
        image = Summary.Image(
            height=small.shape[1],
            width=small.shape[2],
            colorspace=small.shape[3],
            encoded_image_string=gif(small, fps),
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        # SummaryWriter has no public call for a ready-made summary: add_video makes this one.
        self.writer._get_file_writer().add_summary(summary, step)
        if self.tracker is not None:
            self.tracker.video(tag, path, step)
        return path

    def episode(self, episode_return: float, length: int, step: int) -> None:
        """One finished episode (the true return: Atari game score, unnormalised reward)."""
        if self.deferred is not None:
            self.deferred.append((episode_return, length, step))
        else:
            self.write_episode(episode_return, length, step)

    def write_episode(self, episode_return: float, length: int, step: int) -> None:
        self.recent_returns.append(episode_return)
        self.scalar("episode/return", episode_return, step)
        self.scalar("episode/length", length, step)

    def record(self, metrics: dict, step: int) -> None:
        """Metrics of one update made when `step` env steps had been taken."""
        if step != self.step:
            self.flush()
            self.step, self.step_time = step, time.perf_counter()
        for key, value in metrics.items():
            self.pending[key].append(value.detach() if isinstance(value, torch.Tensor) else value)

    def flush(self, write: bool = False) -> dict[str, float]:
        """The means of the pending metrics ({} when none are pending); they join the window
        that is written when `write_every` env steps have passed since the last point, or when
        asked (`write`: checkpoints and evaluations, so that a resumed run writes the same
        points as an uninterrupted one)."""
        means = _means(self.pending)
        for key, value in means.items():
            total = self.window.setdefault(key, [0.0, 0])
            total[0] += value * len(self.pending[key])
            total[1] += len(self.pending[key])
        self.pending.clear()
        if self.window and (write or self.step - self.last_write >= self.write_every):
            self.write()
        return means

    def write(self) -> None:
        """The window's means, steps per second and the progress bar, at `step`."""
        for key, (total, count) in self.window.items():
            self.scalar(f"train/{key}", total / count, self.step)
        self.window.clear()
        self.last_write = self.step
        # Steps over the time between the moments the two step counts were reached (not the
        # time of this flush, which comes a rollout late and would skew the last value).
        sps = (self.step - self.last_step) / max(self.step_time - self.last_time, 1e-9)
        self.last_time, self.last_step = self.step_time, self.step
        self.scalar("time/sps", sps, self.step)
        self.bar.update(min(self.step, self.bar.total) - self.bar.n)
        postfix = {"sps": f"{sps:.0f}"}
        if self.recent_returns:
            postfix["return"] = f"{self.mean_return():.1f}"
        self.bar.set_postfix(postfix, refresh=False)

    def start_clock(self) -> None:
        """Training starts now: the first `time/sps` point counts from here, not from the
        Logger's construction, which comes before the envs, the model, compilation and a
        checkpoint's restore (the first point of a run, and of each resume, was too low)."""
        self.last_time = self.step_time = time.perf_counter()

    def state_dict(self) -> dict:
        return {"recent_returns": list(self.recent_returns)}

    def load_state_dict(self, state: dict) -> None:
        self.recent_returns.extend(state["recent_returns"])

    def mean_return(self) -> float:
        """Mean return of the last 100 episodes (nan before the first one ends)."""
        if not self.recent_returns:
            return float("nan")
        return sum(self.recent_returns) / len(self.recent_returns)

    def close(self, exit_code: int = 0) -> None:
        """Writes what is pending and closes the writers; `exit_code` (derl's exit status) says
        W&B whether the run ended well."""
        try:
            self.flush(write=True)
        finally:
            if self._bar is not None:
                self._bar.close()
            if self._writer is not None:
                self._writer.close()
            if self.tracker is not None:
                self.tracker.finish(exit_code)
                self.tracker = None

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(exit_status(exc))


def _means(pending: dict[str, list]) -> dict[str, float]:
    """The mean of each key's floats or 0-d tensors. The tensors of a device are stacked and read
    together: one device sync per flush, not one per key (SAC logs seven)."""
    means = {k: sum(v) / len(v) for k, v in pending.items() if not isinstance(v[0], torch.Tensor)}
    by_device: dict[torch.device, list[str]] = {}
    for key, values in pending.items():
        if isinstance(values[0], torch.Tensor):
            by_device.setdefault(values[0].device, []).append(key)
    for keys in by_device.values():
        flat = torch.stack([v.to(torch.float64) for k in keys for v in pending[k]]).tolist()
        for key in keys:
            count = len(pending[key])
            means[key], flat = sum(flat[:count]) / count, flat[count:]
    return {k: means[k] for k in pending}  # in the order they were recorded
