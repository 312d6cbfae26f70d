"""The benchmark suite: a grid of algorithm x env x seed from a TOML spec, resumable at any moment.

    python benchmarks/suite.py run SPEC [--jobs K] [--only SUBSTRING] [--retry-failed]
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

- a CSV row with the same alg, env, seed and num_train_steps: skipped, it is done (unless its
  logdir holds a run of other settings, the spec's flags or a preset changed since: conflict);
- no config.json in its logdir: started as a fresh process, `derl <alg> --env-id ENV --seed S
  --threads 1 --eval-every E --checkpoint-minutes M --logdir DIR [--num-train-steps N] [flags]`;
- a config.json but no row: continued with `derl resume DIR --checkpoint-minutes M` (a run
  killed before its first checkpoint starts over from its config.json), or only evaluated when
  its newest checkpoint is at num_train_steps already;
- a run whose training or evaluation failed in an earlier sitting (LOGDIR/suite_failed.json says
  why): skipped, and counted as failed, until `run --retry-failed`;
- then evaluated in a child process: 10 deterministic episodes (eval env seed 10000) of the final
  agent and of LOGDIR/best.pt when there is one, and one row appended to the CSV.

So the suite can be killed at any moment (kill its process group, which holds its children) and
run again, on another day too. A killed run loses at most what it trained since its last
checkpoint: M minutes (checkpoints by the clock, besides the preset's every N steps). While the
suite works on a run it holds an flock on LOGDIR/suite.lock, and so do its children, so a second
suite (or a restart while an orphaned child still trains) leaves that run alone instead of
training it twice. Ctrl-C in the terminal, SIGINT or SIGTERM to the suite or to its process
group: each derl child writes a checkpoint and stops (the suite passes it one SIGTERM, which derl
takes beside a Ctrl-C as the same request), and the suite exits with status 130.

The CSV columns are COLUMNS. wall_time_s is the training time summed over the suite's sittings of
a run (measured around each derl process, saved every HEARTBEAT_S seconds in
LOGDIR/suite_wall.json, so a kill loses at most that much); it is blank when part of the
training ran outside the suite. git_commit lists the commits of the sittings and of the
evaluation ('+dirty': tracked files outside results/ differed from the commit).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

from suite_report import report, save_curve
from suite_spec import (  # noqa: F401 (COLUMNS, append_row, read_rows: the tests reach them here)
    CHECKPOINT_MINUTES,
    COLUMNS,
    EVAL_EPISODES,
    EVAL_SEED,
    FAILED,
    REPO,
    Run,
    Spec,
    append_row,
    load_spec,
    newest_step,
    plan,
    read_rows,
    run_state,
)

from derl.errors import UsageError

HEARTBEAT_S = 10
LOG, LOCK, WALL = "suite.log", "suite.lock", "suite_wall.json"


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

    def __init__(self, spec: Spec, jobs: int, retry_failed: bool = False):
        self.spec, self.jobs, self.retry_failed = spec, jobs, retry_failed
        # RLock: terminate() prints from a signal handler, maybe while this thread prints
        self.csv_lock, self.print_lock = threading.Lock(), threading.RLock()
        self.stopping = threading.Event()  # Ctrl-C: start no further process
        self.children: list[subprocess.Popen] = []
        self.signalled: set[int] = set()  # children sent their one SIGINT

    def say(self, message: str) -> None:
        with self.print_lock:
            print(message, flush=True)

    def terminate(self, signum: int, frame: object) -> None:
        """SIGTERM (a scheduler, `timeout`, `kill PID`) stops the suite as Ctrl-C does."""
        self.stop_runs("terminated; the runs write their checkpoints and stop")

    def stop_runs(self, why: str) -> None:
        """Start no further process, and ask each run once, however often this is called, to
        write a checkpoint and stop. A signal to the suite alone (`kill PID`, `kill -INT PID`)
        reaches only the suite, which would otherwise wait for whole runs to end."""
        if not self.stopping.is_set():
            self.stopping.set()
            self.say(f"suite: {why}")
        for proc in list(self.children):
            self.interrupt(proc)

    def interrupt(self, proc: subprocess.Popen) -> None:
        """SIGTERM, not SIGINT: a run may have had the terminal's Ctrl-C already (it shares the
        suite's process group), and derl takes a second SIGINT as "quit now, no checkpoint";
        SIGTERM beside a SIGINT, or twice, is the same request to derl (derl.lifecycle). An
        evaluation dies of it, and counts as interrupted."""
        if proc.pid not in self.signalled and proc.poll() is None:
            self.signalled.add(proc.pid)
            proc.send_signal(signal.SIGTERM)

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
            self.stop_runs("interrupted; the runs write their checkpoints and stop")
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except KeyboardInterrupt:  # Ctrl-C again: derl's runs quit at once on it, too
                self.say("suite: interrupted again; not waiting for the runs")
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
        """Train (start or resume) and evaluate one run; returns what happened to it. An error
        of the suite's own (a full disk, a damaged record) fails this run, not the others."""
        try:
            return self.try_run(run)
        except Exception as exc:  # noqa: BLE001 (said in one line, and the run is 'failed')
            self.say(f"failed   {run.name}: {type(exc).__name__}: {exc}")
            return "failed"

    def try_run(self, run: Run) -> str:
        if self.stopping.is_set():
            return "interrupted"
        lock = try_lock(run.logdir)
        if lock is None:
            self.say(f"busy     {run.name}: another process holds {run.logdir / LOCK}")
            return "busy"
        try:
            state, detail = run_state(run, read_rows(self.spec.csv))  # read again: under lock
            if state == "failed" and self.retry_failed:
                (run.logdir / FAILED).unlink()
                state, detail = run_state(run, read_rows(self.spec.csv))
            if state == "failed":
                self.say(f"failed   {run.name}: {detail}")
                return "failed"
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
            self.interrupt(proc)
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
        if returncode in (130, -2) or (self.stopping.is_set() and returncode == -signal.SIGTERM):
            # derl wrote a checkpoint and stopped (130); killed by a signal while stopping
            self.say(f"stopped  {run.name}")
            return "interrupted"
        if returncode != 0:
            line = last_line(run.logdir / LOG)
            self.say(f"failed   {run.name}: exit {returncode}: {line}")
            self.record_failure(run, "training", returncode, line)
            return "failed"
        (run.logdir / FAILED).unlink(missing_ok=True)  # --retry-failed worked
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
            if proc.returncode in (130, -2) or (
                self.stopping.is_set() and proc.returncode == -signal.SIGTERM
            ):
                return "interrupted"
            self.say(f"failed   {run.name}: evaluation exit {proc.returncode}, see its log")
            line = last_line(run.logdir / LOG)
            self.record_failure(run, "evaluation", proc.returncode, line)
            return "failed"
        row = self.make_row(run, json.loads(out.strip().splitlines()[-1]))
        with self.csv_lock:
            append_row(self.spec.csv, row)
        save_curve(self.spec, run)
        best = f", best {row['best_mean']}" if row["best_mean"] else ""
        self.say(f"done     {run.name}: final {row['final_mean']} ± {row['final_std']}{best}")
        return "evaluated"

    def record_failure(self, run: Run, stage: str, exit_status: int, line: str) -> None:
        """LOGDIR/suite_failed.json: later sittings skip the run (`status` and the report say
        why) until `run --retry-failed`."""
        record = {
            "stage": stage,
            "exit": exit_status,
            "step": newest_step(run.logdir) or 0,
            "commit": git_commit(),
            "line": line,
            "date": datetime.now().isoformat(timespec="seconds"),
        }
        save_json(run.logdir / FAILED, record)

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
            # judged on the mean as the CSV and the report write it (2 decimals)
            "solved": "" if run.threshold is None else solved(round(final, 2), run.threshold),
            "git_commit": " ".join(commits),
            "derl": result["derl"],
            "torch": result["torch"],
            "gymnasium": result["gymnasium"],
            "date": datetime.now().isoformat(timespec="seconds"),
        }


def solved(final: float, threshold: float) -> str:
    return "yes" if final >= threshold else "no"


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
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the runs whose last sitting failed (skipped otherwise)",
    )
    out = commands.choices["report"]
    out.add_argument("--out", help="folder for the PNGs and README.md (default: the CSV's)")
    out.add_argument("--tag", default="episode/return", help="scalar to plot")
    evaluate = commands.add_parser("evaluate", help="evaluate one logdir, print JSON (run's child)")
    evaluate.add_argument("logdir", type=Path)
    evaluate.add_argument("--episodes", type=int, default=EVAL_EPISODES)
    evaluate.add_argument("--seed", type=int, default=EVAL_SEED)
    return top


def main(argv: list[str] | None = None) -> int:
    # A suite started in the background by a script (`cmd &`) inherits SIGINT ignored, and its
    # runs would too: they could not be stopped while they start or evaluate.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
            return Suite(spec, args.jobs, args.retry_failed).run_all(runs)
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
