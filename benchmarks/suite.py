"""The benchmark suite: a grid of algorithm x env x seed from a TOML spec, resumable at any moment.

    python benchmarks/suite.py run SPEC [--jobs K] [--only SUBSTRING]
    python benchmarks/suite.py status SPEC
    python benchmarks/suite.py report SPEC [--out DIR]

Every command also takes --root and --csv, which replace the spec's. The spec (read with tomllib):

    root = "results/runs"               # run logdirs (gitignored); relative: to the repo root
    csv = "results/classic/results.csv" # one row per evaluated run (committed); relative: same

    [[run]]                             # any number of these
    alg = "ppo"                         # ppo, a2c, dqn, rainbow, sac, td3
    envs = ["CartPole-v1", "Acrobot-v1"]
    seeds = [0, 1, 2]                   # optional, default [0]
    steps = 100000                      # optional --num-train-steps; omitted: the preset's budget
    eval_every = 10000                  # optional --eval-every; omitted: a tenth of the steps
    flags = ["--num-envs", "8"]         # optional, more flags of `derl <alg>`
    checkpoint_minutes = 10             # optional, default CHECKPOINT_MINUTES (0: by steps only)
    threshold = 475                     # optional "solved" bar; omitted: THRESHOLDS[env], if any

Runs go in spec order, [[run]] by [[run]], env by env, seed by seed. A run's logdir is
ROOT/<env id>/<alg>-seed<seed>; its output goes to LOGDIR/suite.log. For each run:

- a CSV row with the same alg, env, seed and num_train_steps: skipped, it is done;
- no config.json in its logdir: started as a fresh process, `derl <alg> --env-id ENV --seed S
  --threads 1 --eval-every E --checkpoint-minutes M --logdir DIR [--num-train-steps N] [flags]`;
- a config.json but no row: continued with `derl resume DIR --checkpoint-minutes M` (a run
  killed before its first checkpoint starts over from its config.json), or only evaluated when
  its newest checkpoint is at num_train_steps already;
- then evaluated in a child process: 10 deterministic episodes (eval env seed 10000) of the final
  agent and of LOGDIR/best.pt when there is one, and one row appended to the CSV.

So the suite can be killed at any moment (kill its process group, which holds its children) and
run again, on another day too. A killed run loses at most what it trained since its last
checkpoint: M minutes (checkpoints by the clock, besides the preset's every N steps). While the
suite works on a run it holds an flock on LOGDIR/suite.lock, and so do its children, so a second
suite (or a restart while an orphaned child still trains) leaves that run alone instead of
training it twice. Ctrl-C in the terminal reaches every derl child: each writes
a checkpoint and stops, and the suite exits with status 130.

The CSV columns are COLUMNS. wall_time_s is the training time summed over the suite's sittings of
a run (measured around each derl process, saved every HEARTBEAT_S seconds in
LOGDIR/suite_wall.json, so a kill loses at most that much); it is blank when part of the
training ran outside the suite. git_commit lists the commits of the sittings and of the
evaluation ('+dirty': tracked files outside results/ differed from the commit).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import tomllib

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
HEARTBEAT_S = 10
LOG, LOCK, WALL = "suite.log", "suite.lock", "suite_wall.json"

# "Solved" bars of the classic-control and the small MuJoCo envs, used when a [[run]] gives no
# threshold.
THRESHOLDS = {
    "CartPole-v1": (475, "gymnasium 1.x reward_threshold"),
    "Acrobot-v1": (-100, "gymnasium 1.x reward_threshold"),
    "MountainCar-v0": (-110, "gymnasium 1.x reward_threshold"),
    "MountainCarContinuous-v0": (90, "gymnasium 1.x reward_threshold"),
    "LunarLander-v3": (200, "gymnasium 1.x reward_threshold"),
    "LunarLanderContinuous-v3": (200, "gymnasium 1.x reward_threshold"),
    "Pendulum-v1": (-200, "no reward_threshold in gymnasium; the bar we use"),
    "InvertedPendulum-v5": (950, "gymnasium 1.x reward_threshold"),
    "InvertedDoublePendulum-v5": (9100, "gymnasium 1.x reward_threshold"),
    "Reacher-v5": (-3.75, "gymnasium 1.x reward_threshold"),
}

# Published returns to hold derl's against: (source, value, protocol). No anchor publishes
# gymnasium v5 MuJoCo numbers; these are v4 (CleanRL) and v3 (SB3 zoo) at 1M steps, and Atari
# NoFrameskip-v4 at 10M agent steps (40M frames). CleanRL: its benchmark tables (training
# returns, mean +- std over 3 seeds). SB3 zoo: rl-baselines3-zoo benchmark.md (1 run). Tianshou:
# its README tables (1 run, the best over training).
_CLEANRL, _ZOO, _TIANSHOU = "CleanRL", "SB3 zoo", "Tianshou"
_MUJOCO_CLEANRL = "v4, 3 seeds, training return"
_MUJOCO_ZOO = "v3, 1 run, deterministic eval"
_ATARI_CLEANRL = "3 seeds, training return"
_TD3_PAPER = "-v1, 10 seeds, max over training of the deterministic eval"
_CLASSIC_ZOO = "1 run, deterministic eval"
ANCHORS: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("ppo", "HalfCheetah-v5"): [
        (_CLEANRL, "1442.6 ± 46.0", _MUJOCO_CLEANRL),
        (_ZOO, "5819 ± 664", _MUJOCO_ZOO + ", tuned HPs"),
    ],
    ("ppo", "Hopper-v5"): [
        (_CLEANRL, "2382.9 ± 271.7", _MUJOCO_CLEANRL),
        (_ZOO, "2410 ± 10", _MUJOCO_ZOO + ", tuned HPs"),
    ],
    ("ppo", "Walker2d-v5"): [
        (_CLEANRL, "2288.0 ± 571.8", _MUJOCO_CLEANRL),
        (_ZOO, "3479 ± 822", _MUJOCO_ZOO + ", tuned HPs"),
    ],
    # Ant: rl-baselines3-zoo benchmark.md @ 0088472b (read 2026-12-04); CleanRL's tables in
    # anchors.md have no Ant row.
    ("ppo", "Ant-v5"): [(_ZOO, "1327 ± 452", _MUJOCO_ZOO + ", tuned HPs")],
    ("sac", "HalfCheetah-v5"): [
        (_CLEANRL, "9634.9 ± 1423.7", _MUJOCO_CLEANRL),
        (_ZOO, "9535 ± 100", _MUJOCO_ZOO),
    ],
    ("sac", "Hopper-v5"): [
        (_CLEANRL, "2310.5 ± 342.8", _MUJOCO_CLEANRL),
        (_ZOO, "2326 ± 1130", _MUJOCO_ZOO),
    ],
    ("sac", "Walker2d-v5"): [
        (_CLEANRL, "3591.5 ± 911.3", _MUJOCO_CLEANRL),
        (_ZOO, "3863 ± 254", _MUJOCO_ZOO),
    ],
    ("td3", "HalfCheetah-v5"): [(_CLEANRL, "9583", _MUJOCO_CLEANRL), (_ZOO, "9656", _MUJOCO_ZOO)],
    ("td3", "Hopper-v5"): [(_CLEANRL, "3135", _MUJOCO_CLEANRL), (_ZOO, "3606", _MUJOCO_ZOO)],
    ("td3", "Walker2d-v5"): [(_CLEANRL, "4058", _MUJOCO_CLEANRL), (_ZOO, "4718", _MUJOCO_ZOO)],
    # The TD3 paper (arXiv 1802.09477) Table 1: max average return over 10 trials of 1M steps, -v1.
    ("td3", "InvertedPendulum-v5"): [("TD3 paper", "1000.00 ± 0.00", _TD3_PAPER)],
    ("td3", "InvertedDoublePendulum-v5"): [("TD3 paper", "9337.47 ± 14.96", _TD3_PAPER)],
    ("td3", "Reacher-v5"): [("TD3 paper", "-3.60 ± 0.56", _TD3_PAPER)],
    ("ppo", "PongNoFrameskip-v4"): [
        (_CLEANRL, "20.36 ± 0.20", _ATARI_CLEANRL),
        (_ZOO, "20.99 ± 0.11", "1 run"),
    ],
    ("ppo", "BreakoutNoFrameskip-v4"): [
        (_CLEANRL, "414.66 ± 28.09", _ATARI_CLEANRL),
        (_ZOO, "398.0 ± 33.3", "1 run"),
    ],
    ("ppo", "BeamRiderNoFrameskip-v4"): [
        (_CLEANRL, "1915.9 ± 484.6", _ATARI_CLEANRL),
        (_ZOO, "3397 ± 1662", "1 run"),
    ],
    ("ppo", "QbertNoFrameskip-v4"): [(_ZOO, "15627", "1 run")],
    ("ppo", "SeaquestNoFrameskip-v4"): [(_ZOO, "1784", "1 run")],
    ("ppo", "SpaceInvadersNoFrameskip-v4"): [(_ZOO, "960", "1 run")],
    ("dqn", "PongNoFrameskip-v4"): [
        (_CLEANRL, "20.25 ± 0.41", _ATARI_CLEANRL + ", vanilla DQN"),
        (_ZOO, "20.60 ± 0.61", "1 run, vanilla DQN"),
    ],
    ("dqn", "BreakoutNoFrameskip-v4"): [
        (_CLEANRL, "366.9 ± 39.9", _ATARI_CLEANRL + ", vanilla DQN"),
        (_ZOO, "358.3 ± 62.0", "1 run, vanilla DQN"),
    ],
    ("dqn", "BeamRiderNoFrameskip-v4"): [
        (_CLEANRL, "6673 ± 1434", _ATARI_CLEANRL + ", vanilla DQN"),
        (_ZOO, "4296 ± 1790", "1 run, vanilla DQN"),
    ],
    ("dqn", "QbertNoFrameskip-v4"): [(_ZOO, "9497", "1 run, vanilla DQN")],
    ("dqn", "SeaquestNoFrameskip-v4"): [(_ZOO, "2000", "1 run, vanilla DQN")],
    ("dqn", "SpaceInvadersNoFrameskip-v4"): [(_ZOO, "623", "1 run, vanilla DQN")],
    # Classic control: rl-baselines3-zoo benchmark.md as stored at DLR-RM/rl-baselines3-zoo @
    # 0088472b8cb622732bdbc4aa3d0d0abde86c67ed (read 2026-12-04): 1 run per row, deterministic
    # eval over ~150k steps, at the zoo's budget for the env (its ids: LunarLander*-v2).
    **{
        (alg, env_id): [(_ZOO, value, _CLASSIC_ZOO)]
        for (alg, env_id), value in {
            ("ppo", "CartPole-v1"): "500.0 ± 0.0",
            ("ppo", "Acrobot-v1"): "-73.5 ± 18.2",
            ("ppo", "MountainCar-v0"): "-110.4 ± 19.5",
            ("ppo", "LunarLander-v3"): "242.1 ± 31.8",
            ("ppo", "Pendulum-v1"): "-172.2 ± 104.2",
            ("ppo", "MountainCarContinuous-v0"): "88.3 ± 2.6",
            ("ppo", "LunarLanderContinuous-v3"): "270.9 ± 32.1",
            ("a2c", "CartPole-v1"): "500.0 ± 0.0",
            ("a2c", "Acrobot-v1"): "-83.4 ± 17.2",
            ("a2c", "MountainCar-v0"): "-111.3 ± 24.1",
            ("a2c", "LunarLander-v3"): "155.8 ± 80.4",
            ("a2c", "Pendulum-v1"): "-163.0 ± 103.2",
            ("a2c", "MountainCarContinuous-v0"): "91.2 ± 0.3",
            ("a2c", "LunarLanderContinuous-v3"): "84.2 ± 145.9",
            ("dqn", "CartPole-v1"): "500.0 ± 0.0",
            ("dqn", "Acrobot-v1"): "-76.6 ± 11.8",
            ("dqn", "MountainCar-v0"): "-100.8 ± 9.9",
            ("dqn", "LunarLander-v3"): "154.4 ± 79.2",
            ("sac", "Pendulum-v1"): "-157.0 ± 88.7",
            ("sac", "MountainCarContinuous-v0"): "94.7 ± 1.1",
            ("sac", "LunarLanderContinuous-v3"): "260.4 ± 65.5",
            ("td3", "Pendulum-v1"): "-151.9 ± 90.2",
            ("td3", "MountainCarContinuous-v0"): "93.5 ± 0.1",
            ("td3", "LunarLanderContinuous-v3"): "207.5 ± 67.6",
        }.items()
    },
    ("rainbow", "PongNoFrameskip-v4"): [(_TIANSHOU, "21", "1 run, best")],
    ("rainbow", "BreakoutNoFrameskip-v4"): [(_TIANSHOU, "684.6", "1 run, best")],
    ("rainbow", "QbertNoFrameskip-v4"): [(_TIANSHOU, "16193", "1 run, best")],
    ("rainbow", "SeaquestNoFrameskip-v4"): [(_TIANSHOU, "2126", "1 run, best")],
    ("rainbow", "SpaceInvadersNoFrameskip-v4"): [
        (_CLEANRL, "1836", "rainbow_atari, 10M steps"),
        (_TIANSHOU, "1795", "1 run, best"),
    ],
}


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
    return Run(alg, env_id, seed, logdir, tuple(argv), derl_config(alg, argv), threshold)


def dirname(env_id: str) -> str:
    """The env id as a folder name, as derl makes it (`ALE/Pong-v5` -> `ALE_Pong-v5`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id)


def plan(spec: Spec, only: str | None = None) -> list[Run]:
    """Every run of the spec, resolved by derl, so bad input stops the suite before it starts."""
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
        os.write(fd, buffer.getvalue().encode())
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


def run_state(run: Run, rows: list[dict]) -> tuple[str, str]:
    """(state, detail): done, trained (not yet evaluated), partial, new, or conflict."""
    row = next((r for r in rows if run.matches(r)), None)
    if row is not None:
        best = f", best {row['best_mean']}" if row["best_mean"] else ""
        return "done", f"final {row['final_mean']} ± {row['final_std']}{best}"
    if not (run.logdir / "config.json").exists():
        return "new", "not started"
    conflict = config_conflict(run)
    if conflict:
        return "conflict", conflict
    step = newest_step(run.logdir)
    if step is not None and step >= run.num_train_steps:
        return "trained", f"{step:,} steps, not evaluated yet"
    if step is None:
        return "partial", f"no checkpoint yet, of {run.num_train_steps:,} steps"
    return "partial", f"step {step:,} of {run.num_train_steps:,}"


# ---------------------------------------------------------------------------------------------
# Running: one derl process per sitting, then an evaluation process


def git_commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # The suite itself writes results/ (the CSV, the report): that is not a code change.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results")
    return commit + ("+dirty" if changed else "")


def child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo, unless the user picked another
    env.setdefault("TQDM_MININTERVAL", "30")  # a progress line every 30 s in the log, not 10/s
    return env


def load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def save_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def try_lock(logdir: Path) -> int | None:
    """An exclusive flock on LOGDIR/suite.lock (None: another process holds it). Children get
    the descriptor too, so the lock outlives a killed suite while its orphans still run."""
    logdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(logdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Suite:
    """Runs the runs of one spec, `jobs` at a time; thread-safe where threads meet."""

    def __init__(self, spec: Spec, jobs: int):
        self.spec, self.jobs = spec, jobs
        self.csv_lock, self.print_lock = threading.Lock(), threading.Lock()
        self.stopping = threading.Event()  # Ctrl-C: start no further process
        self.children: list[subprocess.Popen] = []

    def say(self, message: str) -> None:
        with self.print_lock:
            print(message, flush=True)

    def terminate(self, signum: int, frame: object) -> None:
        """SIGTERM (a scheduler, `timeout`, `kill PID`) stops the suite as Ctrl-C does: one
        SIGINT to each run, which writes a checkpoint and stops. Ctrl-C reaches the runs from
        the terminal itself (they share the suite's process group); SIGTERM reaches only the
        suite, which would otherwise wait for whole runs to end."""
        self.stopping.set()
        self.say("suite: terminated; the runs write their checkpoints and stop")
        for proc in list(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    def run_all(self, runs: list[Run]) -> int:
        outcomes: dict[str, list[str]] = {}
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.terminate)
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        futures = {pool.submit(self.run_one, run): run for run in runs}
        try:
            for future in as_completed(futures):
                outcomes.setdefault(future.result(), []).append(futures[future].name)
        except KeyboardInterrupt:
            self.stopping.set()
            self.say("suite: interrupted; waiting for the runs to write their checkpoints")
            pool.shutdown(wait=True, cancel_futures=True)
            return 130
        pool.shutdown()
        summary = ", ".join(f"{len(names)} {outcome}" for outcome, names in outcomes.items())
        self.say(f"suite: {summary or 'no runs'}")
        for outcome in ("failed", "busy", "conflict"):
            for name in outcomes.get(outcome, []):
                self.say(f"  {outcome}: {name}")
        if outcomes.get("interrupted"):
            return 130
        return 1 if set(outcomes) & {"failed", "busy", "conflict"} else 0

    def run_one(self, run: Run) -> str:
        """Train (start or resume) and evaluate one run; returns what happened to it."""
        if self.stopping.is_set():
            return "interrupted"
        lock = try_lock(run.logdir)
        if lock is None:
            self.say(f"busy     {run.name}: another process holds {run.logdir / LOCK}")
            return "busy"
        try:
            state, detail = run_state(run, read_rows(self.spec.csv))  # read again: under lock
            if state == "done":
                self.say(f"skip     {run.name}: {detail}")
                return "skipped"
            if state == "conflict":
                self.say(f"conflict {run.name}: {detail}")
                return "conflict"
            if state in ("new", "partial"):
                outcome = self.train(run, lock, resume=state == "partial")
                if outcome != "trained":
                    return outcome
            return self.evaluate(run, lock)
        finally:
            os.close(lock)

    def child(self, run: Run, cmd: list[str], lock: int, **kw) -> subprocess.Popen:
        log_path = run.logdir / LOG
        # A killed sitting leaves its last progress line unfinished: start the header on its own.
        newline = "\n" if log_path.exists() and not log_path.read_bytes().endswith(b"\n") else ""
        with open(log_path, "a") as log:
            log.write(f"{newline}== suite {datetime.now():%Y-%m-%d %H:%M:%S}: {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), pass_fds=(lock,), **kw)
        self.children.append(proc)
        if self.stopping.is_set():  # SIGTERM came while it started
            proc.send_signal(signal.SIGINT)
        return proc

    def train(self, run: Run, lock: int, resume: bool) -> str:
        """One sitting of derl, timed; 'trained' when it reached its budget."""
        derl = [sys.executable, "-m", "derl.cli"]
        minutes = ["--checkpoint-minutes", str(run.config["checkpoint_minutes"])]
        cmd = (
            [*derl, "resume", str(run.logdir), *minutes] if resume else [*derl, run.alg, *run.argv]
        )
        wall_path = run.logdir / WALL
        # No record but a run there already: it was started outside the suite.
        wall = load_json(wall_path) or {"seconds": 0.0, "complete": not resume, "commits": []}
        wall["commits"] = list(dict.fromkeys([*wall["commits"], git_commit()]))
        base = wall["seconds"]
        if self.stopping.is_set():
            return "interrupted"
        save_json(wall_path, wall)  # now: a kill before the first heartbeat keeps "complete"
        self.say(f"{'resume' if resume else 'start':8} {run.name} (log: {run.logdir / LOG})")
        start = time.monotonic()
        with open(run.logdir / LOG, "a") as log:
            proc = self.child(run, cmd, lock, stdout=log, stderr=subprocess.STDOUT)
            while True:
                try:
                    returncode = proc.wait(timeout=HEARTBEAT_S)
                    break
                except subprocess.TimeoutExpired:
                    save_json(wall_path, {**wall, "seconds": base + time.monotonic() - start})
        save_json(wall_path, {**wall, "seconds": base + time.monotonic() - start})
        if returncode in (130, -2):  # SIGINT: derl wrote a checkpoint and stopped
            self.say(f"stopped  {run.name}")
            return "interrupted"
        if returncode != 0:
            self.say(f"failed   {run.name}: exit {returncode}: {last_line(run.logdir / LOG)}")
            return "failed"
        return "trained"

    def evaluate(self, run: Run, lock: int) -> str:
        if self.stopping.is_set():
            return "interrupted"
        self.say(f"evaluate {run.name}")
        cmd = [sys.executable, str(Path(__file__).resolve()), "evaluate", str(run.logdir)]
        with open(run.logdir / LOG, "a") as log:
            proc = self.child(run, cmd, lock, stdout=subprocess.PIPE, stderr=log, text=True)
            out, _ = proc.communicate()
        if proc.returncode != 0:
            if proc.returncode in (130, -2):
                return "interrupted"
            self.say(f"failed   {run.name}: evaluation exit {proc.returncode}, see its log")
            return "failed"
        row = self.make_row(run, json.loads(out.strip().splitlines()[-1]))
        with self.csv_lock:
            append_row(self.spec.csv, row)
        save_curve(self.spec, run)
        best = f", best {row['best_mean']}" if row["best_mean"] else ""
        self.say(f"done     {run.name}: final {row['final_mean']} ± {row['final_std']}{best}")
        return "evaluated"

    def make_row(self, run: Run, result: dict) -> dict:
        wall = load_json(run.logdir / WALL) or {"seconds": 0.0, "complete": False, "commits": []}
        commits = dict.fromkeys([*wall["commits"], git_commit()])
        final = result["final_mean"]
        return {
            "alg": run.alg,
            "env": run.env_id,
            "seed": run.seed,
            "num_train_steps": run.num_train_steps,
            "steps": newest_step(run.logdir),
            "wall_time_s": f"{wall['seconds']:.0f}" if wall["complete"] else "",
            "final_mean": f"{final:.2f}",
            "final_std": f"{result['final_std']:.2f}",
            "best_mean": "" if result["best_mean"] is None else f"{result['best_mean']:.2f}",
            "best_step": result["best_step"] or "",
            "threshold": "" if run.threshold is None else run.threshold,
            "solved": "" if run.threshold is None else ("yes" if final >= run.threshold else "no"),
            "git_commit": " ".join(commits),
            "derl": result["derl"],
            "torch": result["torch"],
            "gymnasium": result["gymnasium"],
            "date": datetime.now().isoformat(timespec="seconds"),
        }


def last_line(path: Path) -> str:
    """The last line of a log (derl's one-line error, when it failed on bad input)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].split("\r")[-1].strip() if lines else ""


def evaluate_logdir(logdir: Path, episodes: int, seed: int) -> dict:
    """What `run` records of a trained run: the final agent's and best.pt's deterministic returns.
    Runs in a child process (`suite.py evaluate LOGDIR`), on one torch thread."""
    import gymnasium
    import torch

    import derl
    from derl import checkpoint
    from derl.evaluate import evaluate

    torch.set_num_threads(1)
    final = evaluate(derl.load(logdir), episodes, seed, deterministic=True)
    best, best_step = None, None
    if (logdir / "best.pt").exists():
        best = evaluate(derl.load(logdir / "best.pt"), episodes, seed, deterministic=True)
        best_step = checkpoint.load(logdir / "best.pt")["step"]
    return {
        "final_mean": float(final.mean()),
        "final_std": float(final.std()),
        "best_mean": None if best is None else float(best.mean()),
        "best_step": best_step,
        "derl": derl.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
    }


# ---------------------------------------------------------------------------------------------
# The report: a learning-curve PNG per env and a markdown table


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return f"{mean:.1f} ± {std:.1f}" if len(values) > 1 else f"{mean:.1f}"


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
        f"{EVAL_EPISODES} deterministic episodes (mean per seed), then mean ± std over seeds; "
        "best eval: the same for `best.pt`, the agent of the best evaluation during training. "
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


def curve_dir(spec: Spec, run: Run) -> Path:
    return spec.csv.parent / CURVES / dirname(run.env_id) / f"{run.alg}-seed{run.seed}"


def save_curve(spec: Spec, run: Run, tag: str = "episode/return") -> None:
    """Keeps the run's learning curve beside the CSV: the logdirs (event files, checkpoints)
    are not committed, so a report on another checkout draws from these."""
    from derl.plot import export_scalars

    try:
        export_scalars(run.logdir, curve_dir(spec, run), tag)
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


# ---------------------------------------------------------------------------------------------
# The command


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2), as derl's does."""

    def error(self, message: str):
        raise UsageError(f"{message}; see `{self.prog} -h`")


def parser() -> Parser:
    top = Parser(prog="suite.py", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True, parser_class=Parser)
    specs = {
        "run": "train and evaluate the runs that have no CSV row yet",
        "status": "where each run stands: done, trained, partial (step), not started",
        "report": "learning-curve PNGs per env and a markdown table",
    }
    for name, text in specs.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("spec", help="the TOML spec, e.g. benchmarks/specs/classic.toml")
        sub.add_argument("--root", help="run logdirs go here instead of the spec's root")
        sub.add_argument("--csv", help="the results CSV instead of the spec's")
        sub.add_argument("--only", help="only the runs whose ENV/ALG-seedS contains this")
    run = commands.choices["run"]
    run.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    out = commands.choices["report"]
    out.add_argument("--out", help="folder for the PNGs and README.md (default: the CSV's)")
    out.add_argument("--tag", default="episode/return", help="scalar to plot")
    evaluate = commands.add_parser("evaluate", help="evaluate one logdir, print JSON (run's child)")
    evaluate.add_argument("logdir", type=Path)
    evaluate.add_argument("--episodes", type=int, default=EVAL_EPISODES)
    evaluate.add_argument("--seed", type=int, default=EVAL_SEED)
    return top


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.command == "evaluate":
            print(json.dumps(evaluate_logdir(args.logdir, args.episodes, args.seed)))
            return 0
        spec = load_spec(args.spec, args.root, args.csv)
        runs = plan(spec, args.only)
        if args.command == "run":
            if args.jobs < 1:
                raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
            return Suite(spec, args.jobs).run_all(runs)
        if args.command == "status":
            return status(spec, runs)
        out = Path(args.out) if args.out else spec.csv.parent
        for path in report(spec, runs, out, args.tag):
            print(f"wrote {path}")
        return 0
    except UsageError as exc:
        print(f"suite: error: {exc}", file=sys.stderr)
        return 2


def status(spec: Spec, runs: list[Run]) -> int:
    rows = read_rows(spec.csv)
    counts: dict[str, int] = {}
    for run in runs:
        state, detail = run_state(run, rows)
        counts[state] = counts.get(state, 0) + 1
        print(f"{state:9} {run.name}: {detail}")
    print(", ".join(f"{n} {state}" for state, n in counts.items()) + f" of {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
