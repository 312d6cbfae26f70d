"""Learning curves from TensorBoard events: seeds of one config drawn as a mean with a band."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from derl.checkpoint import read_json, replacing
from derl.errors import UsageError

PLOT_SUFFIXES = (".png", ".pdf", ".svg")

# Keys that differ between runs without making them different experiments.
_NOT_AN_EXPERIMENT = {
    "seed",
    "logdir",
    "resolved_device",
    "device",
    "checkpoint_every",
    "checkpoint_minutes",
    "keep_checkpoints",
    "eval_every",
    "eval_episodes",
    "vectorization",
    "threads",
    "buffer_device",
    "dist_backend",
    "launch_id",
    "capture_video_every",
    "track",
    "wandb_project",
    "wandb_entity",
    "wandb_group",
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


def read_config(run: Path) -> dict:
    """A run's config.json: what `plot` needs of it (alg and env_id) or a one-line UsageError."""
    path = run / "config.json"
    config = read_json(path)
    if not (isinstance(config, dict) and {"alg", "env_id"} <= config.keys()):
        raise UsageError(f"{path} is damaged: it names no alg or env_id")
    return config


def scalars_csv(run: Path, tag: str) -> Path:
    """Where `export_scalars` keeps a tag's points: episode/return -> episode-return.csv."""
    return run / f"{tag.replace('/', '-')}.csv"


def export_scalars(
    logdir: Path, out: Path, tag: str = "episode/return", max_points: int | None = None
) -> Path:
    """A run's `tag` as a small directory that `plot` reads like the run itself: its
    config.json and the points as CSV (step,value). Event files are large and binary; this
    is what a results repository can keep of a run. `max_points`: more points than this are
    averaged in runs of consecutive ones, each at its last step (Blackjack's 300,000 one-hand
    episodes were 12 MB of CSV; the plot's smoothing averages them anyway)."""
    steps, values = read_scalars(logdir, tag)
    if max_points is not None and len(steps) > max_points:
        runs = np.array_split(np.arange(len(steps)), max_points)
        steps = np.array([steps[run[-1]] for run in runs])
        values = np.array([values[run].mean() for run in runs])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(read_config(logdir), indent=1) + "\n")
    lines = ["step,value", *(f"{s},{v:.6g}" for s, v in zip(steps, values, strict=True))]
    with replacing(scalars_csv(out, tag)) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out


def read_scalars(logdir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """`tag`'s points (steps, values) from a run's events, or from `export_scalars`' CSV in a
    directory without event files."""
    if not any(logdir.glob("events.out.tfevents.*")) and scalars_csv(logdir, tag).exists():
        return read_csv(scalars_csv(logdir, tag))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: keep every point
    try:  # damaged records are skipped (with a warning); an unreadable file is an error
        acc.Reload()
    except OSError as exc:
        raise UsageError(f"cannot read the events in {logdir}: {exc.strerror or exc}") from None
    if tag not in acc.Tags()["scalars"]:
        return np.array([]), np.array([])
    events = acc.Scalars(tag)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`export_scalars`' points; a header alone (a run exported before it logged any) is none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's "input contained no data": a header alone
        try:
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        except ValueError:
            data = None
    if data is None or (data.size and data.shape[1] != 2):
        raise UsageError(f"{path} is damaged: it holds no step,value lines; export the run again")
    if not data.size:
        return np.array([], np.int64), np.array([])
    return data[:, 0].astype(np.int64), data[:, 1]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (what the progress bar's recent mean shows)."""
    if window <= 1:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (cumsum[end] - cumsum[start]) / (end - start)


def varying_keys(configs: list[dict]) -> list[str]:
    """The config keys whose values differ between `configs` (the seed and the like aside).

    A key that some configs lack is compared among those that have it: it is a field added to
    derl after the others were written, whose default keeps the old behaviour (e.g. `compile`),
    so its absence is not a different experiment."""
    keys = {k for c in configs for k in c} - _NOT_AN_EXPERIMENT - {"alg", "env_id"}
    return sorted(k for k in keys if len({json.dumps(c[k]) for c in configs if k in c}) > 1)


def group_runs(configs: dict[Path, dict]) -> dict[str, list[Path]]:
    """Runs grouped by config without the seed; labels: the algorithm and what else differs
    between the runs of that algorithm (PPO's and SAC's presets differ anyway: not in labels)."""
    by_alg: dict[str, list[dict]] = defaultdict(list)
    for config in configs.values():
        by_alg[config["alg"]].append(config)
    varying = {alg: varying_keys(same_alg) for alg, same_alg in by_alg.items()}
    groups: dict[str, list[Path]] = defaultdict(list)
    for run, config in configs.items():
        alg = config["alg"]
        label = " ".join([alg, *(f"{k}={config.get(k)}" for k in varying[alg])])
        groups[label].append(run)
    return dict(groups)


def warn(message: str) -> None:
    print(f"derl: warning: {message}", file=sys.stderr)


def draw_group(ax, label: str, curves: dict[Path, tuple], smoothing: int, points: int) -> None:
    """Mean over the seeds of one config, with a band of one standard deviation, at the steps
    that every seed reached: beyond a seed's own first or last step np.interp would hold its
    edge value, a made-up stretch in the mean and the band."""
    firsts = {run: s[0] for run, (s, _) in curves.items()}
    lasts = {run: s[-1] for run, (s, _) in curves.items()}
    start, end = max(firsts.values()), min(lasts.values())
    if start > end:
        early = min(lasts, key=lambda run: lasts[run])
        late = max(firsts, key=lambda run: firsts[run])
        warn(
            f"not drawn: the seeds of '{label}' share no steps ({early} ends at step {end}, "
            f"{late} starts at {start}); plot them one at a time"
        )
        return
    grid = np.linspace(start, end, points)
    ys = np.stack([np.interp(grid, s, smooth(v, smoothing)) for s, v in curves.values()])
    mean, std = ys.mean(0), ys.std(0)
    seeds = f"{len(curves)} seed{'s' * (len(curves) > 1)}"
    # one step in common (a run with one point): a line of no length would not show; a dot does
    marker = "o" if start == end else None
    (line,) = ax.plot(grid, mean, label=f"{label} ({seeds})", marker=marker)
    if len(curves) > 1:
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def plot(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    tag: str = "episode/return",
    smoothing: int = 20,
    points: int = 200,
) -> Path:
    """Write a PNG (or PDF, SVG) of `tag` against env steps for the runs at `paths`, one panel
    per env."""
    out = Path(out)
    if out.suffix.lower() not in PLOT_SUFFIXES:  # matplotlib would append .png to the name
        raise UsageError(f"--out {out}: the file must end in {', '.join(PLOT_SUFFIXES)}")
    if smoothing < 1:  # smooth() would take it for 1 and say nothing
        raise UsageError(
            f"--smoothing {smoothing}: it is a trailing mean over that many points; "
            "give 1 or more (1: no smoothing)"
        )
    runs = find_runs(paths)
    configs = {}
    for run in runs:
        try:
            configs[run] = read_config(run)
        except UsageError as exc:  # one damaged run among others: the others are still drawn
            if len(runs) == 1:
                raise
            warn(f"{exc}: left out of the plot")
    if not configs:
        raise UsageError(f"no run at {', '.join(map(str, paths))} has a readable config.json")
    curves = {run: read_scalars(run, tag) for run in configs}
    if not any(len(steps) for steps, _ in curves.values()):
        raise UsageError(
            f"no run at {', '.join(map(str, paths))} has logged {tag!r} yet "
            "(or its event files are damaged)"
        )
    for run, (steps, _) in curves.items():
        if not len(steps):  # e.g. stopped right after it started: the others are still drawn
            warn(f"{run} has no {tag!r} points yet: left out of the plot")
            del configs[run]
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    envs = sorted({c["env_id"] for c in configs.values()})
    fig, axes = plt.subplots(1, len(envs), figsize=(7 * len(envs), 4.5), squeeze=False)
    try:  # pyplot keeps a figure until it is closed: a notebook or a sweep would gather them
        for ax, env_id in zip(axes[0], envs, strict=True):
            same_env = {run: c for run, c in configs.items() if c["env_id"] == env_id}
            for label, runs in sorted(group_runs(same_env).items()):
                draw_group(ax, label, {run: curves[run] for run in runs}, smoothing, points)
            ax.set(title=env_id, xlabel="environment steps", ylabel=tag)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize="small")
        if not any(ax.lines for ax in axes[0]):
            raise UsageError(
                f"nothing to draw of {tag!r}: the seeds of each config share no steps; "
                "plot the runs one at a time"
            )
        fig.tight_layout()
        with replacing(out) as tmp:  # a failed write keeps the plot that was there
            fig.savefig(tmp, dpi=120, format=out.suffix[1:].lower())
    finally:
        plt.close(fig)
    return out
