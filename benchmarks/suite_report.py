"""`suite.py report`: a learning-curve PNG per env and a markdown table of a suite's results."""

from __future__ import annotations

import contextlib
import logging
import sys
from datetime import datetime
from pathlib import Path

from published import ANCHORS, THRESHOLDS
from suite_spec import EVAL_EPISODES, REPO, Run, Spec, dirname, read_rows, run_state

from derl.errors import UsageError

# ---------------------------------------------------------------------------------------------
# The report: a learning-curve PNG per env and a markdown table


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    # Returns within +-10 (FrozenLake's success rate, Taxi's, Reacher's) get a second decimal.
    digits = 2 if max(abs(v) for v in values) < 10 else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def duration(seconds: list[float]) -> str:
    if not seconds:
        return "–"
    mean = sum(seconds) / len(seconds)
    return f"{mean / 3600:.1f} h" if mean >= 5400 else f"{mean / 60:.1f} min"


def table_line(alg: str, env_id: str, runs: list[Run], rows: list[dict]) -> str:
    """alg x env: its seeds' rows summarised; the seeds without a row are counted as not done."""
    final = [float(r["final_mean"]) for r in rows]
    best = [float(r["best_mean"]) for r in rows if r["best_mean"]]
    wall = [float(r["wall_time_s"]) for r in rows if r["wall_time_s"]]
    threshold = runs[0].threshold
    solved = "–"
    if threshold is not None and rows:
        n = sum(f >= threshold for f in final)
        solved = f"{n}/{len(rows)}"  # seeds whose final eval reached the threshold
    anchors = "; ".join(
        f"{source} {value} ({protocol})"
        for source, value, protocol in ANCHORS.get((alg, env_id), [])
    )
    cells = [
        alg,
        env_id,
        f"{runs[0].num_train_steps:,}",
        f"{len(rows)}/{len(runs)}",
        mean_std(final),
        mean_std(best),
        "–" if threshold is None else f"{threshold:g}",
        solved,
        duration(wall),
        anchors or "–",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| alg | env | steps | seeds done | final eval | best eval | threshold | solved "
    "| train time / seed | published |\n|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(
    spec: Spec,
    runs: list[Run],
    rows: list[dict],
    images: dict[str, Path],
    tag: str,
    kept: dict[str, list[Run]] | None = None,
    later: dict[str, Path] | None = None,
) -> str:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.alg, run.env_id), []).append(run)
    row_of = {run.name: next((r for r in rows if run.matches(r)), None) for run in runs}
    lines = [
        f"# Results: {spec.path.stem}",
        "",
        f"Written by `python benchmarks/suite.py report {rel(spec.path)}` from `{rel(spec.csv)}` "
        f"on {datetime.now():%Y-%m-%d}. Final eval: the agent at the end of training, "
        f"{EVAL_EPISODES} deterministic episodes (mean per seed), then mean ± std over seeds "
        "(the population std, numpy's default, as for the episodes in the CSV); "
        "best eval: the same for `best.pt`, the agent of the best evaluation during training "
        "(on the episodes that picked it, so an optimistic figure). "
        "Solved: the seeds whose final eval reaches the threshold. Published figures are "
        "other libraries' results under their own protocols (in brackets): a guide, not a "
        "like-for-like comparison.",
        "",
        HEADER,
    ]
    for (alg, env_id), group in groups.items():
        done = [row_of[run.name] for run in group if row_of[run.name] is not None]
        lines.append(table_line(alg, env_id, group, done))
    unfinished = [run for run in runs if row_of[run.name] is None]
    if unfinished:
        lines += ["", "## Not finished", ""]
        lines += [
            f"- {run.alg} {run.env_id} seed {run.seed}: {progress(run)}" for run in unfinished
        ]
    if images:
        caption = f"`{tag}` against env steps; seeds as a mean and a band of one std (derl plot)."
        lines += ["", "## Learning curves", "", caption, ""]
        if kept:
            lines += [
                f"Kept as an earlier report drew them: {', '.join(kept)}. Some of their finished "
                "runs have neither a logdir in this checkout nor a curve in "
                f"`{rel(spec.csv.parent / CURVES)}` (they finished before the suite kept "
                "curves), and drawing these envs again would drop them.",
                "",
            ]
            since = [f"{r.alg} {r.env_id} seed {r.seed}" for group in kept.values() for r in group]
            if since:
                lines += [
                    "Runs that finished later, with a curve kept, which these PNGs may lack "
                    "or show from an earlier run of the same row: "
                    f"{', '.join(since)}. Each env's `-kept-curves.png` draws all of its runs "
                    "that have a curve now.",
                    "",
                ]
        later = later or {}
        for env_id, path in images.items():
            lines.append(f"![{env_id}]({path.name})")
            if env_id in later:
                lines.append(f"![{env_id}, the runs with a curve now]({later[env_id].name})")
    lines += ["", "## Sources", ""]
    envs = dict.fromkeys(run.env_id for run in runs)
    lines += [
        f"- threshold {env_id}: {THRESHOLDS[env_id][1]}" for env_id in envs if env_id in THRESHOLDS
    ]
    lines += [
        "- published: CleanRL benchmark tables; rl-baselines3-zoo benchmark.md; Tianshou README",
        f"- recorded with: {versions(rows)}",
    ]
    return "\n".join(lines) + "\n"


def progress(run: Run) -> str:
    """How far a run without a row got, and how good its agent was there: a long run spans
    several sittings, and until it finishes its last evaluation during training is the figure
    there is (the suite's protocol too: deterministic episodes, eval env seed 10000)."""
    state, detail = run_state(run, [])
    if state not in ("partial", "trained"):
        return {"new": "not started"}.get(state, detail)
    from derl.plot import read_scalars

    steps, values = read_scalars(run.logdir, "eval/return")
    if len(steps):
        detail += f"; its last evaluation during training, at step {steps[-1]:,}: {values[-1]:.1f}"
    return detail


def versions(rows: list[dict]) -> str:
    parts = []
    for column in ("git_commit", "derl", "torch", "gymnasium"):
        values = sorted({r[column] for r in rows})
        parts.append(f"{column} {', '.join(values) or '–'}")
    return "; ".join(parts)


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


CURVES = "curves"  # beside the CSV: each evaluated run's episode returns (derl.plot reads them)
CURVE_POINTS = 5_000  # at most, per run: longer curves are averaged over consecutive episodes


def curve_dir(spec: Spec, run: Run) -> Path:
    return spec.csv.parent / CURVES / dirname(run.env_id) / f"{run.alg}-seed{run.seed}"


def save_curve(spec: Spec, run: Run, tag: str = "episode/return") -> None:
    """Keeps the run's learning curve beside the CSV: the logdirs (event files, checkpoints)
    are not committed, so a report on another checkout draws from these."""
    from derl.plot import export_scalars

    try:
        export_scalars(run.logdir, curve_dir(spec, run), tag, max_points=CURVE_POINTS)
    except UsageError as exc:  # the row stands; its curve is missing from later reports
        print(f"suite: cannot keep the curve of {run.name}: {exc}", file=sys.stderr)


def report(spec: Spec, runs: list[Run], out: Path, tag: str) -> list[Path]:
    """One learning-curve PNG per env (derl.plot: seeds as mean and band) and README.md.

    A run's curve comes from its logdir, or where this checkout has none, from the curve the
    suite kept beside the CSV. An env with a finished run whose curve is in neither keeps the
    PNG it has (drawing it again would drop that run's curve), and the README says so."""
    from derl.plot import plot

    # A resumed run's events after its checkpoint were purged on purpose: no warning for that.
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(spec.csv)
    images: dict[str, Path] = {}
    kept: dict[str, list[Run]] = {}  # env -> its finished runs that the kept PNG may lack
    later: dict[str, Path] = {}  # env -> a PNG of the runs of `kept` that have a curve
    for env_id in dict.fromkeys(run.env_id for run in runs):
        sources, lost, newer = [], False, []
        for run in (r for r in runs if r.env_id == env_id):
            done = any(run.matches(row) for row in rows)
            if (run.logdir / "config.json").exists():
                if done and tag == "episode/return":
                    save_curve(spec, run)  # e.g. runs evaluated before curves were kept
                source: Path | None = run.logdir
            elif (curve_dir(spec, run) / "config.json").exists():
                source = curve_dir(spec, run)
            else:
                source = None
            if source is not None:
                sources.append(source)
                newer += [run] if done else []
            lost = lost or (done and source is None)
        png = out / f"{dirname(env_id)}.png"
        if lost and png.exists():
            images[env_id] = png
            kept[env_id] = newer
            if newer:  # the runs that have a curve, drawn beside it (a rerun replaces its row)
                with contextlib.suppress(UsageError):
                    later[env_id] = plot(sources, out / f"{dirname(env_id)}-kept-curves.png", tag)
            continue
        if not sources:
            continue
        try:
            images[env_id] = plot(sources, png, tag)
        except UsageError:  # nothing logged yet: the table says how far the runs got
            continue
    table = out / "README.md"
    table.write_text(markdown(spec, runs, rows, images, tag, kept, later))
    drawn = [path for env_id, path in images.items() if env_id not in kept]
    return [*drawn, *later.values(), table]
