"""The benchmark suite (benchmarks/suite.py): its spec, a run killed and restarted, its report."""

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tomllib")  # the suite reads its specs with Python 3.11's tomllib

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import suite  # noqa: E402
import suite_report  # noqa: E402

from derl import plot  # noqa: E402

# Small enough for seconds, with a checkpoint early and training left after it to kill.
TINY_STEPS = 4096
TINY = f"""
root = "{{root}}"
csv = "{{csv}}"

[[run]]
alg = "ppo"
envs = ["CartPole-v1"]
seeds = {{seeds}}
steps = {TINY_STEPS}
eval_every = {TINY_STEPS}
flags = ["--num-envs", "2", "--num-epochs", "2", "--checkpoint-every", "512"]
"""


def write_spec(folder: Path, seeds=(0, 1), name="tiny.toml") -> Path:
    spec = folder / name
    text = TINY.format(root=folder / "runs", csv=folder / "results.csv", seeds=list(seeds))
    spec.write_text(text)
    return spec


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_spec_resolves_to_derl_commands_with_the_logdir_convention(tmp_path):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        'root = "runs"\ncsv = "out/results.csv"\n'
        '[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1", "Acrobot-v1"]\nseeds = [0, 1]\n'
        '[[run]]\nalg = "sac"\nenvs = ["Pendulum-v1"]\nthreshold = -250\nsteps = 3000\n'
        "checkpoint_minutes = 2.5\n"
    )
    spec = suite.load_spec(spec_path)
    assert spec.root == suite.REPO / "runs"  # relative paths: to the repo root
    runs = suite.plan(spec)
    names = [run.name for run in runs]
    assert names == [
        "CartPole-v1/ppo-seed0",
        "CartPole-v1/ppo-seed1",
        "Acrobot-v1/ppo-seed0",
        "Acrobot-v1/ppo-seed1",
        "Pendulum-v1/sac-seed0",
    ]
    ppo, sac = runs[0], runs[-1]
    assert ppo.logdir == suite.REPO / "runs" / "CartPole-v1" / "ppo-seed0"
    # No steps: the preset's budget, and an evaluation every tenth of it.
    assert ppo.num_train_steps == 100_000 and ppo.config["eval_every"] == 10_000
    assert "--num-train-steps" not in ppo.argv and ppo.config["threads"] == 1
    assert ppo.threshold == 475 and sac.threshold == -250  # the env's bar, or the spec's
    assert sac.num_train_steps == 3000 and sac.config["eval_every"] == 300
    # A checkpoint by the clock as well: what a killed run loses, whatever its speed.
    assert ppo.config["checkpoint_minutes"] == suite.CHECKPOINT_MINUTES > 0
    assert sac.config["checkpoint_minutes"] == 2.5
    assert [run.name for run in suite.plan(spec, only="Acrobot")] == names[2:4]
    # --root and --csv replace the spec's (the regression guard trains into a temporary root).
    moved = suite.load_spec(spec_path, root=str(tmp_path / "r"), csv_path=str(tmp_path / "c.csv"))
    assert (moved.root, moved.csv) == (tmp_path / "r", tmp_path / "c.csv")
    assert suite.plan(moved)[0].logdir == tmp_path / "r" / "CartPole-v1" / "ppo-seed0"


@pytest.mark.parametrize(
    "text, message",
    [
        ('root = "r"\ncsv = "c"\nseeds = [0]\n', "unknown key 'seeds'; known: root, csv, run"),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\nsed = [0]\n',
            "'sed'",
        ),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\n', "`alg` and `envs` are required"),
        ('root = "r"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\n', "`csv` (a path)"),
        ('root = "r"\ncsv = "c"\n[[run]\n', "not valid TOML"),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = "CartPole-v1"\n', "list of env ids"),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "a"\nenvs = ["X"]\nsteps = "1e5"\n', "`steps`"),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "a"\nenvs = ["X"]\nseeds = [true]\n', "integers"),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "a"\nenvs = ["X"]\nthreshold = "hi"\n', "number"),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "a"\nenvs = ["X"]\ncheckpoint_minutes = -1\n',
            "`checkpoint_minutes` must be a number >= 0",
        ),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\n'
            'flags = ["--checkpoint-minutes", "3"]\n',
            "set --checkpoint-minutes with the `checkpoint_minutes` key",
        ),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\n'
            'flags = ["--seed", "3"]\n',
            "set --seed with the `seeds` key",
        ),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\n'
            'flags = ["--nproc=2"]\n',
            "the suite runs each run as one process; remove --nproc=2",
        ),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\n'
            'flags = ["--tau", "0.1"]\n',
            "--tau is a flag of dqn, rainbow, sac, td3, not of ppo",
        ),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo2"\nenvs = ["CartPole-v1"]\n', "ppo2"),
        ('root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPol-v1"]\n', "CartPole-v1?"),
        (  # an algorithm that cannot act in the env: refused before anything runs
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "sac"\nenvs = ["CartPole-v1"]\n',
            "(sac CartPole-v1): sac needs a continuous (Box) action space",
        ),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "rainbow"\nenvs = ["Pendulum-v1"]\n',
            "rainbow needs a discrete action space",
        ),
        (
            'root = "r"\ncsv = "c"\n[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\n'
            '[[run]]\nalg = "ppo"\nenvs = ["CartPole-v1"]\nseeds = [1, 0]\n',
            "CartPole-v1/ppo-seed0 is in the spec twice",
        ),
    ],
)
def test_bad_spec_is_one_line_and_exit_2(text, message, tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert suite.main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("suite: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_root_that_is_a_file_or_a_csv_that_is_a_folder_is_one_line(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=[0])
    (tmp_path / "file").write_text("")
    assert suite.main(["run", str(spec), "--root", str(tmp_path / "file")]) == 2
    assert "is a file; name a directory" in capsys.readouterr().err
    assert suite.main(["run", str(spec), "--csv", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory; name a file" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_status_reads_how_far_a_run_got_from_its_checkpoint_names(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=(0, 1, 2))
    runs = suite.plan(suite.load_spec(spec))
    for run, step in zip(runs[:2], (512, TINY_STEPS), strict=True):
        (run.logdir / "checkpoints").mkdir(parents=True)
        (run.logdir / "config.json").write_text(json.dumps({"alg": "ppo", **run.config}))
        (run.logdir / "checkpoints" / f"step-{step:012d}.pt").touch()
    assert suite.main(["status", str(spec)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("partial") and "step 512 of 4,096" in out[0]
    assert out[1].startswith("trained") and "not evaluated yet" in out[1]
    assert out[2].startswith("new") and out[3] == "1 partial, 1 trained, 1 new of 3 runs"
    # A logdir that holds another experiment is named, never resumed.
    other = {"alg": "ppo", **runs[0].config, "lr": 0.5}
    (runs[0].logdir / "config.json").write_text(json.dumps(other))
    assert suite.main(["status", str(spec)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("conflict") and "lr=0.5" in first and "lr=0.001" in first


def test_a_row_is_appended_whole_and_only_complete_rows_are_read(tmp_path):
    path = tmp_path / "results.csv"
    row = dict.fromkeys(suite.COLUMNS, "x")
    suite.append_row(path, row)
    with open(path, "a") as f:
        f.write("ppo,CartPole-v1")  # as if something else had been killed mid-line
    suite.append_row(path, {**row, "seed": "1"})
    assert [r["seed"] for r in suite.read_rows(path)] == ["x", "1"]
    assert path.read_text().count("\n") == 4  # header, row, the half line, row


@contextlib.contextmanager
def suite_process(cmd: list[str], **kwargs):
    """The suite started in a process group of its own, which is SIGKILLed on the way out: a
    test that fails midway leaves no run training on (a 2M-step one, in the signal test)."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # the suite and its runs are gone
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_a_checkpoint(root: Path, proc, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while not list(root.glob("*/*/checkpoints/step-*.pt")):
        assert proc.poll() is None, proc.returncode
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_report_gives_an_unfinished_runs_step_and_its_last_evaluation(tmp_path):
    # A long run spans sittings: until it has a row, the table gives how far it got and the
    # agent's last evaluation during training.
    from torch.utils.tensorboard import SummaryWriter

    spec = write_spec(tmp_path, seeds=(0, 1))
    first, second = suite.plan(suite.load_spec(spec))
    (first.logdir / "checkpoints").mkdir(parents=True)
    (first.logdir / "config.json").write_text(json.dumps({"alg": "ppo", **first.config}))
    (first.logdir / "checkpoints" / f"step-{2048:012d}.pt").touch()
    with SummaryWriter(first.logdir) as writer:
        writer.add_scalar("eval/return", 31.5, 1024)
        writer.add_scalar("eval/return", 87.25, 2048)
    assert suite.main(["report", str(spec), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "README.md").read_text()
    assert (
        "- ppo CartPole-v1 seed 0: step 2,048 of 4,096; its last evaluation during training, "
        "at step 2,048: 87.2" in table
    )
    assert "- ppo CartPole-v1 seed 1: not started" in table


def wait_for_the_locks(root: Path, timeout=60) -> None:
    """Until the killed derl processes are gone: they held their runs' locks to the end."""
    deadline = time.monotonic() + timeout
    for lock in root.glob("*/*/suite.lock"):
        while (fd := suite.try_lock(lock.parent)) is None:
            assert time.monotonic() < deadline, f"{lock} is still held"
            time.sleep(0.05)
        os.close(fd)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny 2-run spec, SIGKILLed (the suite and its children) at a run's first checkpoint,
    then run again to the end."""
    folder = tmp_path_factory.mktemp("suite")
    spec = write_spec(folder)
    cmd = [sys.executable, str(BENCHMARKS / "suite.py"), "run", str(spec), "--jobs", "2"]
    with (
        open(folder / "first.out", "w") as out,
        suite_process(cmd, stdout=out, stderr=subprocess.STDOUT) as proc,
    ):
        wait_for_a_checkpoint(folder / "runs", proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_for_the_locks(folder / "runs")
    killed = {
        path.parents[1]: suite.newest_step(path.parents[1])
        for path in (folder / "runs").glob("*/*/checkpoints/step-*.pt")
    }
    # Run again, in this process (one interpreter start less: derl is imported already).
    with contextlib.redirect_stdout(io.StringIO()) as second:
        returncode = suite.main(["run", str(spec), "--jobs", "2"])
    assert returncode == 0, second.getvalue()
    return folder, spec, killed, second.getvalue()


def test_killed_suite_restarts_to_one_row_per_run(finished):
    folder, spec, killed, output = finished
    rows = read_csv(folder / "results.csv")
    assert sorted(r["seed"] for r in rows) == ["0", "1"]  # one row per run, no duplicate
    for row in rows:
        assert (row["alg"], row["env"], row["threshold"]) == ("ppo", "CartPole-v1", "475")
        assert int(row["num_train_steps"]) == int(row["steps"]) == TINY_STEPS
        assert float(row["wall_time_s"]) > 0 and row["git_commit"] and row["torch"]
        assert row["best_mean"] and row["solved"] in ("yes", "no")
        assert (float(row["final_mean"]) >= 475) == (row["solved"] == "yes")


def test_killed_runs_were_resumed_in_their_logdirs_not_restarted(finished):
    folder, spec, killed, output = finished
    assert any(step < TINY_STEPS for step in killed.values()), killed  # killed in training
    for logdir, step in killed.items():
        log = (logdir / "suite.log").read_text()
        assert "starting over" not in log
        if step < TINY_STEPS:  # killed in training: continued from its newest checkpoint
            assert f"derl: resuming from {logdir}/checkpoints/step-" in log, log[-2000:]
            minutes = f"resume {logdir} --checkpoint-minutes {suite.CHECKPOINT_MINUTES}"
            assert minutes in log  # the spec's setting, also for a run started before it
            assert f"resume   {logdir.parent.name}/{logdir.name}" in output


def test_a_finished_suite_runs_nothing_again(finished, capsys):
    folder, spec, killed, output = finished
    before = (folder / "results.csv").read_bytes()
    assert suite.main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.count("skip ") == 2 and "start" not in out and "resume" not in out
    assert (folder / "results.csv").read_bytes() == before
    assert suite.main(["status", str(spec)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 done of 2 runs"


def test_a_failed_run_is_recorded_and_left_alone_until_retried(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=[0])
    spec.write_text(
        spec.read_text().replace('"512"]', '"512", "--env-kwargs", "{\\"bogus\\": 1}"]')
    )
    assert suite.main(["run", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "failed   CartPole-v1/ppo-seed0: exit 2: derl: error: --env-kwargs" in out
    assert suite.main(["run", str(spec)]) == 1  # not trained again
    out = capsys.readouterr().out
    assert "start" not in out
    assert "training failed (exit 2) at step 0 with " in out and "--retry-failed" in out
    assert suite.main(["status", str(spec)]) == 0
    assert capsys.readouterr().out.startswith("failed    CartPole-v1/ppo-seed0: training failed")
    # Fixed (here: the flag taken out again), it runs with --retry-failed
    spec.write_text(spec.read_text().replace(', "--env-kwargs", "{\\"bogus\\": 1}"', ""))
    assert suite.main(["run", str(spec)]) == 1  # the record still holds it back
    capsys.readouterr()
    assert suite.main(["run", str(spec), "--retry-failed"]) == 0
    assert "done     CartPole-v1/ppo-seed0" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "CartPole-v1" / "ppo-seed0" / suite.FAILED).exists()


def test_a_row_whose_run_had_other_flags_is_a_conflict_not_done(finished, capsys):
    folder, spec, killed, output = finished
    edited = folder / "edited.toml"  # the same runs and CSV, one flag changed since
    edited.write_text(spec.read_text().replace('"--num-epochs", "2"', '"--num-epochs", "3"'))
    before = (folder / "results.csv").read_bytes()
    assert suite.main(["run", str(edited), "--only", "seed0"]) == 1
    out = capsys.readouterr().out
    assert "conflict CartPole-v1/ppo-seed0: its CSV row was trained with other settings" in out
    assert "num_epochs=2; the spec asks for num_epochs=3" in out
    assert (folder / "results.csv").read_bytes() == before  # nothing trained, nothing written


@pytest.mark.parametrize(
    "signum, group",
    [
        (signal.SIGTERM, False),
        (signal.SIGTERM, True),
        (signal.SIGINT, False),
        (signal.SIGINT, True),
    ],
    ids=["kill-pid", "timeout-group", "kill-int-pid", "ctrl-c"],
)
def test_a_signal_to_the_suite_or_its_group_stops_its_runs_at_a_checkpoint(tmp_path, signum, group):
    """`kill PID` or `kill -INT PID` reaches the suite but not its runs: it passes them one
    SIGTERM each, so they write a checkpoint and stop, and the suite exits 130 at once instead
    of waiting for whole runs. `timeout` and schedulers signal the whole process group,
    `timeout` twice, and Ctrl-C does so once: the runs get the signal themselves besides the
    suite's SIGTERM, and still stop at a checkpoint (a second SIGINT would make derl quit
    without one)."""
    spec = tmp_path / "long.toml"
    spec.write_text(
        TINY.format(root=tmp_path / "runs", csv=tmp_path / "results.csv", seeds=[0]).replace(
            f"steps = {TINY_STEPS}", "steps = 2000000"
        )
    )
    cmd = [sys.executable, str(BENCHMARKS / "suite.py"), "run", str(spec)]
    with suite_process(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        wait_for_a_checkpoint(tmp_path / "runs", proc)
        if group:
            os.killpg(proc.pid, signum)
            if signum == signal.SIGTERM:
                os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    said = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert f"suite: {said}; the runs write" in out and not (tmp_path / "results.csv").exists()
    logdir = tmp_path / "runs" / "CartPole-v1" / "ppo-seed0"
    log = (logdir / "suite.log").read_text()
    assert log.count("derl: stopping after this update to write a checkpoint") == 1
    assert "derl resume" in log  # derl's last line: stopped, resume with ...
    wait_for_the_locks(tmp_path / "runs")
    assert suite.newest_step(logdir) < 2_000_000


def test_report_keeps_two_decimals_for_returns_within_ten():
    # FrozenLake's returns are success rates: one decimal shows 0.77 and 0.74 alike.
    assert suite_report.mean_std([0.8, 0.7]) == "0.75 ± 0.05"
    assert suite_report.mean_std([-4.71]) == "-4.71"
    assert suite_report.mean_std([250.04, 9.0]) == "129.5 ± 120.5"
    assert suite_report.mean_std([]) == "–"


def test_report_writes_a_png_per_env_and_a_table_with_unfinished_runs(finished, tmp_path):
    folder, spec, killed, output = finished
    # The same runs and CSV, one seed more that never started: the report says so.
    bigger = write_spec(folder, seeds=(0, 1, 2), name="bigger.toml")
    assert suite.main(["report", str(bigger), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "CartPole-v1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "README.md").read_text()
    rows = read_csv(folder / "results.csv")
    finals = [float(r["final_mean"]) for r in rows]
    assert "| ppo | CartPole-v1 | 4,096 | 2/3 |" in table
    assert f"| {suite_report.mean_std(finals)} |" in table
    solved = sum(f >= 475 for f in finals)
    assert f"| {solved}/2 |" in table
    assert "- ppo CartPole-v1 seed 2: not started" in table
    assert "![CartPole-v1](CartPole-v1.png)" in table


def test_a_report_on_a_checkout_without_the_logdirs_draws_the_kept_curves(finished, tmp_path):
    """The logdirs are not committed: a fresh clone has the CSV and the curves the suite kept
    beside it, and draws from those; a finished run with no curve anywhere keeps the PNG."""
    folder, spec, killed, output = finished
    curves = folder / "curves" / "CartPole-v1"
    assert sorted(p.name for p in curves.iterdir()) == ["ppo-seed0", "ppo-seed1"]
    kept = (curves / "ppo-seed0" / "episode-return.csv").read_text().splitlines()
    assert kept[0] == "step,value" and len(kept) > 5
    steps, values = plot.read_scalars(
        folder / "runs" / "CartPole-v1" / "ppo-seed0", "episode/return"
    )
    assert [f"{s},{v:.6g}" for s, v in zip(steps, values, strict=True)] == kept[1:]
    clone = tmp_path / "clone"
    shutil.copytree(folder, clone, ignore=shutil.ignore_patterns("runs"))
    moved = clone / spec.name
    moved.write_text(spec.read_text().replace(str(folder), str(clone)))
    out = clone / "report"
    assert suite.main(["report", str(moved), "--out", str(out)]) == 0
    assert (out / "CartPole-v1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Kept as an earlier report" not in (out / "README.md").read_text()
    shutil.rmtree(clone / "curves" / "CartPole-v1" / "ppo-seed1")  # a run from before curves
    (out / "CartPole-v1.png").write_bytes(b"earlier")
    assert suite.main(["report", str(moved), "--out", str(out)]) == 0
    assert (out / "CartPole-v1.png").read_bytes() == b"earlier"
    table = (out / "README.md").read_text()
    assert "Kept as an earlier report drew them: CartPole-v1." in table
    assert "which these PNGs may lack or show from an earlier run of the same row: ppo " in table
    # the runs that have a curve now, drawn beside the kept PNG
    assert (out / "CartPole-v1-kept-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](CartPole-v1-kept-curves.png)" in table


@pytest.mark.slow
def test_regression_spec_reaches_its_thresholds(tmp_path):
    """The regression guard: every run of specs/regression.toml, trained afresh, evaluates at or
    above its threshold (a few minutes on 2 cores)."""
    spec = BENCHMARKS / "specs" / "regression.toml"
    root, results = tmp_path / "runs", tmp_path / "results.csv"
    cmd = [sys.executable, str(BENCHMARKS / "suite.py"), "run", str(spec), "--jobs", "2"]
    done = subprocess.run(
        [*cmd, "--root", str(root), "--csv", str(results)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = read_csv(results)
    assert len(rows) == len(suite.plan(suite.load_spec(spec))) and all(r["threshold"] for r in rows)
    below = [r for r in rows if float(r["final_mean"]) < float(r["threshold"])]
    assert not below, [(r["alg"], r["env"], r["final_mean"], r["threshold"]) for r in below]


def test_a_run_locked_by_another_process_is_left_alone(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=(0,))
    (run,) = suite.plan(suite.load_spec(spec))
    fd = suite.try_lock(run.logdir)  # as a second suite, or an orphaned derl process, holds it
    try:
        assert suite.main(["run", str(spec)]) == 1
    finally:
        os.close(fd)
    assert "busy     CartPole-v1/ppo-seed0" in capsys.readouterr().out
    assert not (run.logdir / "config.json").exists() and not (tmp_path / "results.csv").exists()
