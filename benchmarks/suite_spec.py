"""A suite's spec, the runs it plans, and where each run stands (the CSV row, the logdir)."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomllib
from published import THRESHOLDS

from derl.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
TOP_KEYS = ("root", "csv", "run")
# Flags the suite sets from the spec's keys; in `flags` they would fight with them.
MANAGED_FLAGS = {
    "--env-id": "envs",
    "--seed": "seeds",
    "--logdir": "root",
    "--num-train-steps": "steps",
    "--eval-every": "eval_every",
    "--checkpoint-minutes": "checkpoint_minutes",
}
# Wall-clock minutes between checkpoints: what a run killed without warning (SIGKILL, a machine
# taken back) loses at most. A preset's steps between checkpoints can be an hour of a slow run.
CHECKPOINT_MINUTES = 10
COLUMNS = [
    "alg",
    "env",
    "seed",
    "num_train_steps",
    "steps",
    "wall_time_s",
    "final_mean",
    "final_std",
    "best_mean",
    "best_step",
    "threshold",
    "solved",
    "git_commit",
    "derl",
    "torch",
    "gymnasium",
    "date",
]
EVAL_EPISODES, EVAL_SEED = 10, 10_000


# ---------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class Spec:
    path: Path
    root: Path
    csv: Path
    entries: list[dict]


def resolve_path(text: str) -> Path:
    """Spec paths are relative to the repo root, so the suite finds the same runs from any cwd."""
    return (REPO / Path(text).expanduser()).resolve()


def refuse_unknown_keys(table: dict, known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(
            f"{where}: unknown key {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_list_of(value, ok: Callable[[object], bool]) -> bool:
    return isinstance(value, list) and bool(value) and all(map(ok, value))


# What each [[run]] key must hold: a test, and the words for it in the error.
RUN_KEY_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "alg": (lambda v: isinstance(v, str), "a string"),
    "envs": (lambda v: is_list_of(v, lambda e: isinstance(e, str)), "a list of env ids"),
    "seeds": (lambda v: is_list_of(v, is_int), "a list of integers"),
    "steps": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "eval_every": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    "flags": (
        lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v),
        "a list of strings",
    ),
    "threshold": (lambda v: is_int(v) or isinstance(v, float), "a number"),
    "checkpoint_minutes": (
        lambda v: (is_int(v) or isinstance(v, float)) and v >= 0,
        "a number >= 0",
    ),
}


RUN_KEYS = tuple(RUN_KEY_TYPES)


def check_entry(entry: dict, where: str) -> dict:
    """One [[run]] table, checked, with its defaults filled in."""
    refuse_unknown_keys(entry, RUN_KEYS, where)
    if "alg" not in entry or "envs" not in entry:
        raise UsageError(f"{where}: `alg` and `envs` are required")
    for key, value in entry.items():
        ok, what = RUN_KEY_TYPES[key]
        if not ok(value):
            raise UsageError(f"{where}: `{key}` must be {what}, got {value!r}")
    for flag in entry.get("flags", []):
        name = flag.split("=")[0]
        if name in MANAGED_FLAGS:
            raise UsageError(f"{where}: set {name} with the `{MANAGED_FLAGS[name]}` key, not flags")
        if name == "--nproc":
            # The suite stops its runs with SIGTERM, which a data-parallel run's launcher would
            # pass to its ranks, and they stop at a checkpoint only on SIGINT.
            raise UsageError(f"{where}: the suite runs each run as one process; remove {flag}")
    return {"seeds": [0], "flags": [], "checkpoint_minutes": CHECKPOINT_MINUTES, **entry}


def load_spec(path: str | os.PathLike, root: str | None = None, csv_path: str | None = None):
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no spec file {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    refuse_unknown_keys(data, TOP_KEYS, str(path))
    for key, override in (("root", root), ("csv", csv_path)):
        if override is None and not isinstance(data.get(key), str):
            raise UsageError(f"{path}: `{key}` (a path) is required")
    entries = data.get("run")
    if not is_list_of(entries, lambda v: isinstance(v, dict)):
        raise UsageError(f"{path}: no [[run]] table")
    return Spec(
        path,
        resolve_path(root or data["root"]),
        resolve_path(csv_path or data["csv"]),
        [check_entry(e, f"{path} [[run]] #{i}") for i, e in enumerate(entries, 1)],
    )


# ---------------------------------------------------------------------------------------------
# The runs of a spec


@dataclass(frozen=True)
class Run:
    alg: str
    env_id: str
    seed: int
    logdir: Path
    argv: tuple[str, ...]  # after `derl <alg>`
    config: dict  # what derl resolves from argv: preset, budget, flags
    threshold: float | None

    @property
    def name(self) -> str:
        return f"{self.env_id}/{self.alg}-seed{self.seed}"

    @property
    def num_train_steps(self) -> int:
        return self.config["num_train_steps"]

    def matches(self, row: dict) -> bool:
        """The row of this run: the same alg, env, seed and budget."""
        key = (self.alg, self.env_id, str(self.seed), str(self.num_train_steps))
        return (row["alg"], row["env"], row["seed"], row["num_train_steps"]) == key


def derl_config(alg: str, argv: list[str]) -> dict:
    """The config `derl <alg> argv` would train with; bad flags are UsageErrors, as in derl."""
    from derl.cli import alg_parser, explain_unknown, find_flag
    from derl.factory import get_alg, make_config

    get_alg(alg)
    env_id, config_file = find_flag(argv, "--env-id"), find_flag(argv, "--config")
    args, unknown = alg_parser(alg, env_id, config_file).parse_known_args(argv)
    if unknown:
        explain_unknown(alg, unknown)
    values = vars(args)
    config = make_config(alg, config_file=values.pop("config"), **values)
    return json.loads(json.dumps(dataclasses.asdict(config)))


def make_run(entry: dict, env_id: str, seed: int, logdir: Path) -> Run:
    alg = entry["alg"]
    steps = ["--num-train-steps", str(entry["steps"])] if "steps" in entry else []
    head = ["--env-id", env_id, "--seed", str(seed), "--threads", "1"]
    budget = derl_config(alg, head + steps + entry["flags"])["num_train_steps"]
    eval_every = entry.get("eval_every", max(budget // 10, 1))
    argv = [*head, "--eval-every", str(eval_every)]
    argv += ["--checkpoint-minutes", str(entry["checkpoint_minutes"])]
    argv += ["--logdir", str(logdir), *steps]
    argv += entry["flags"]
    threshold = entry.get("threshold", THRESHOLDS.get(env_id, (None,))[0])
    config = derl_config(alg, argv)
    check_actions(alg, config)
    return Run(alg, env_id, seed, logdir, tuple(argv), config, threshold)


@functools.cache
def action_space(env_id: str, env_kwargs_json: str):
    """The env's action space, made as derl makes it (a missing extra: one line)."""
    import derl.env

    env = derl.env.make(env_id, 1, seed=0, normalize=False, env_kwargs=json.loads(env_kwargs_json))
    try:
        return env.single_action_space
    finally:
        env.close()


def check_actions(alg: str, config: dict) -> None:
    """The check derl makes when it builds the algorithm (DQN: discrete actions; SAC, TD3: a
    Box), made before the suite starts: a run that could not start would fail hours into it."""
    from derl.factory import get_alg

    check = get_alg(alg).check_actions
    if check is not None and not config["env_fn"]:  # a factory's env: derl checks it at the start
        check(action_space(config["env_id"], json.dumps(config["env_kwargs"])), alg)


def dirname(env_id: str) -> str:
    """The env id as a folder name, as derl makes it (`ALE/Pong-v5` -> `ALE_Pong-v5`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id)


def plan(spec: Spec, only: str | None = None) -> list[Run]:
    """Every run of the spec, resolved by derl, so bad input stops the suite before it starts."""
    if spec.root.exists() and not spec.root.is_dir():
        raise UsageError(f"the root {spec.root} is a file; name a directory for the runs")
    if spec.csv.is_dir():
        raise UsageError(f"the CSV {spec.csv} is a directory; name a file for the results")
    runs: dict[Path, Run] = {}
    for i, entry in enumerate(spec.entries, 1):
        where = f"{spec.path} [[run]] #{i}"
        for env_id in entry["envs"]:
            for seed in entry["seeds"]:
                logdir = spec.root / dirname(env_id) / f"{entry['alg']}-seed{seed}"
                if logdir in runs:
                    raise UsageError(f"{where}: {runs[logdir].name} is in the spec twice")
                try:
                    runs[logdir] = make_run(entry, env_id, seed, logdir)
                except UsageError as exc:
                    raise UsageError(f"{where} ({entry['alg']} {env_id}): {exc}") from None
    return [run for run in runs.values() if only is None or only in run.name]


# ---------------------------------------------------------------------------------------------
# Where a run stands: the CSV, the logdir


def read_rows(path: Path) -> list[dict]:
    """The CSV's complete rows (none yet: [])."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and reader.fieldnames != COLUMNS:
            raise UsageError(f"{path} has other columns than {', '.join(COLUMNS)}")
        return [row for row in reader if None not in row.values() and None not in row]


def append_row(path: Path, row: dict) -> None:
    """One write of one whole line (and the header first into a new file), then fsync: a kill
    cannot leave half a row behind."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        writer.writeheader()
    elif not path.read_bytes().endswith(b"\n"):  # the tail of a line written by something else
        buffer.write("\n")
    writer.writerow(row)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = buffer.getvalue().encode()
        if os.write(fd, data) != len(data):  # a full disk: say so, never count half a row
            raise OSError(f"{path}: only part of a row could be written (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)


def newest_step(logdir: Path) -> int | None:
    """The env step of the newest checkpoint (from its name, step-000000123456.pt)."""
    from derl.checkpoint import list_checkpoints

    found = list_checkpoints(logdir)
    return int(found[-1].stem.split("-")[1]) if found else None


def config_conflict(run: Run) -> str | None:
    """Why the run in the logdir is not the one the spec asks for (None: it is)."""
    path = run.logdir / "config.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    ours = {"alg": run.alg, **run.config}
    differ = sorted(
        key
        for key in saved.keys() & ours.keys()
        # checkpoint_minutes: when checkpoints are written, which a resume sets anew
        if key not in ("logdir", "resolved_device", "checkpoint_minutes")
        and saved[key] != ours[key]
    )
    if not differ:
        return None
    theirs = ", ".join(f"{k}={saved[k]!r}" for k in differ)
    asked = ", ".join(f"{k}={ours[k]!r}" for k in differ)
    return f"{run.logdir} holds a run with {theirs}; the spec asks for {asked}: move it away"


FAILED = "suite_failed.json"  # in a logdir: why the run's last sitting failed


def failed_record(run: Run) -> dict | None:
    """What `suite.py run` wrote when the run's training or evaluation failed (a non-finite
    loss, a bad flag): such a run is not retried at every sitting, where a resume would replay
    the same updates into the same failure."""
    path = run.logdir / FAILED
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return {"stage": "a sitting", "exit": "?", "step": 0, "commit": "?", "line": str(path)}


def run_state(run: Run, rows: list[dict]) -> tuple[str, str]:
    """(state, detail): done, trained (not yet evaluated), partial, new, failed, or conflict."""
    row = next((r for r in rows if run.matches(r)), None)
    started = (run.logdir / "config.json").exists()
    # A row matches on alg, env, seed and budget; the logdir, where this checkout has it, also
    # tells whether the spec's flags or the presets changed since (the row is stale then).
    conflict = config_conflict(run) if started else None
    if row is not None:
        if conflict:
            return "conflict", f"its CSV row was trained with other settings: {conflict}"
        best = f", best {row['best_mean']}" if row["best_mean"] else ""
        return "done", f"final {row['final_mean']} ± {row['final_std']}{best}"
    failure = failed_record(run)
    if failure is not None and not conflict:
        return "failed", (
            f"{failure['stage']} failed (exit {failure['exit']}) at step {failure['step']:,} "
            f"with {failure['commit']}: {failure['line']}; --retry-failed runs it again"
        )
    if not started:
        return "new", "not started"
    if conflict:
        return "conflict", conflict
    step = newest_step(run.logdir)
    if step is not None and step >= run.num_train_steps:
        return "trained", f"{step:,} steps, not evaluated yet"
    if step is None:
        return "partial", f"no checkpoint yet, of {run.num_train_steps:,} steps"
    return "partial", f"step {step:,} of {run.num_train_steps:,}"
