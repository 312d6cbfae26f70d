"""Learning curves from TensorBoard events: seeds of one config drawn as a mean with a band."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from derl.errors import UsageError

# Keys that differ between runs without making them different experiments.
_NOT_AN_EXPERIMENT = {
    "seed",
    "logdir",
    "resolved_device",
    "device",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "eval_episodes",
    "vectorization",
}


def find_runs(paths: list[str | os.PathLike]) -> list[Path]:
    """Every directory with a config.json at or below `paths`."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        found = sorted(p.parent for p in path.rglob("config.json"))
        if not found:
            raise UsageError(f"no derl run (config.json) at or below {path}")
        runs += found
    return runs


def read_scalars(logdir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return np.array([]), np.array([])
    events = acc.Scalars(tag)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (what the progress bar's recent mean shows)."""
    if window <= 1:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (cumsum[end] - cumsum[start]) / (end - start)


def group_runs(runs: list[Path]) -> dict[str, list[Path]]:
    """Runs grouped by config without the seed; labels name what differs between groups."""
    configs = {run: json.loads((run / "config.json").read_text()) for run in runs}
    keys = {k for c in configs.values() for k in c} - _NOT_AN_EXPERIMENT
    varying = sorted(k for k in keys if len({json.dumps(c.get(k)) for c in configs.values()}) > 1)
    shown = ["alg", "env_id"] + [k for k in varying if k not in ("alg", "env_id")]
    groups: dict[str, list[Path]] = defaultdict(list)
    for run, config in configs.items():
        label = " ".join(
            str(config.get(k)) if k in ("alg", "env_id") else f"{k}={config.get(k)}" for k in shown
        )
        groups[label].append(run)
    return dict(groups)


def plot(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    tag: str = "episode/return",
    smoothing: int = 20,
    points: int = 200,
) -> Path:
    """Write a PNG of `tag` against env steps for the runs at `paths`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, runs in sorted(group_runs(find_runs(paths)).items()):
        curves = [read_scalars(run, tag) for run in runs]
        curves = [(s, smooth(v, smoothing)) for s, v in curves if len(s)]
        if not curves:
            continue
        end = min(s[-1] for s, _ in curves)
        grid = np.linspace(min(s[0] for s, _ in curves), end, points)
        ys = np.stack([np.interp(grid, s, v) for s, v in curves])
        mean, std = ys.mean(0), ys.std(0)
        (line,) = ax.plot(
            grid, mean, label=f"{label} ({len(curves)} seed{'s' * (len(curves) > 1)})"
        )
        if len(curves) > 1:
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if not ax.lines:
        raise UsageError(f"no run at {', '.join(map(str, paths))} has logged {tag!r} yet")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
