"""Faults: NaN in training, checkpoints that cannot be written, two processes on one logdir, and
files or directories that cannot be used. Each gives one line and its exit status, and loses
nothing that was already written."""

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import derl
from derl import checkpoint, guard
from derl.cli import main
from derl.errors import NonFinite, UsageError, WriteError
from derl.lifecycle import Lifecycle
from derl.models import make_q_network
from derl.policies import EpsilonGreedyPolicy
from derl.train import resume


def config(logdir, **kw):
    kw = {"num_train_steps": 2048, "checkpoint_every": 512, "device": "cpu", **kw}
    return derl.make_config("ppo", "CartPole-v1", logdir=str(logdir), **kw)


def finite(path) -> bool:
    state = checkpoint.load(path)["state"]
    return all(torch.isfinite(t).all() for _, t in guard.floating_tensors(state))


def one_error_line(capsys) -> str:
    """The last stderr line, after checking it is derl's error and there is no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("derl: error: "), err
    return last


def snapshot(root: Path) -> dict[Path, bytes]:
    """The files under `root` but the lock, whose holder writes its pid there."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def assert_unchanged(before: dict[Path, bytes]) -> None:
    for path, data in before.items():
        assert path.exists() and path.read_bytes() == data, f"{path} was changed or deleted"


# -- 8. non-finite values stop training (exit 3) and never reach a checkpoint -----------------

ABSURD = [
    # The first updates overflow; the next losses are NaN.
    ["ppo", "--env-id", "CartPole-v1", "--lr", "1e30"],
    ["a2c", "--env-id", "CartPole-v1", "--lr", "1e30"],
    # Weights infinite after one update: torch's sampling fails before any loss sees them.
    ["a2c", "--env-id", "CartPole-v1", "--lr", "1e38"],
    [
        *["dqn", "--env-id", "CartPole-v1", "--lr", "1e30", "--learning-starts", "64"],
        *["--train-freq", "16", "--gradient-steps", "4", "--batch-size", "32"],
    ],
    [
        *["sac", "--env-id", "Pendulum-v1", "--lr", "1e30", "--q-lr", "1e30"],
        *["--learning-starts", "64", "--batch-size", "32", "--hidden", "32"],
    ],
]


@pytest.mark.parametrize("argv", ABSURD, ids=lambda argv: f"{argv[0]}-lr{argv[4]}")
def test_absurd_learning_rate_stops_with_exit_3(argv, tmp_path, capsys):
    logdir = tmp_path / "run"
    common = ["--logdir", str(logdir), "--checkpoint-every", "64", "--eval-every", "64"]
    assert main([*argv, *common, "--eval-episodes", "1", "--threads", "1"]) == 3
    line = one_error_line(capsys)
    assert "non-finite" in line and "at env step" in line
    for path in checkpoint.list_checkpoints(logdir):
        assert finite(path)
    if (logdir / "best.pt").exists():
        assert finite(logdir / "best.pt")


def test_nan_in_training_keeps_the_newest_good_checkpoint_and_resume_works(tmp_path, monkeypatch):
    logdir = tmp_path / "run"
    real_step = derl.Alg.step

    def poisoned_step(self, batch):  # a NaN weight from step 1024 on, as a diverging run
        metrics = real_step(self, batch)
        if self.runner.step_count >= 1024:
            with torch.no_grad():
                next(self.runner.policy.parameters()).fill_(float("nan"))
        return metrics

    monkeypatch.setattr(derl.Alg, "step", poisoned_step)
    cfg = config(logdir, eval_every=512, eval_episodes=1)
    with pytest.raises(NonFinite, match=r"non-finite train/\w+ at env step 1024") as info:
        derl.train(cfg, progress=False)
    saved = checkpoint.list_checkpoints(logdir)
    assert [checkpoint.load(p)["state"]["runner"]["step_count"] for p in saved] == [512]
    assert str(saved[-1]) in str(info.value) and f"derl resume {logdir}" in str(info.value)
    assert finite(saved[-1]) and finite(logdir / "best.pt")
    assert checkpoint.load(logdir / "best.pt")["step"] == 512

    monkeypatch.setattr(derl.Alg, "step", real_step)
    result = resume(logdir, progress=False)
    assert result.env_steps >= 2048 and finite(checkpoint.list_checkpoints(logdir)[-1])


WHEN = {
    "periodic": ({}, None),
    "ctrl-c": ({"checkpoint_every": 10**6}, 1024),  # what Ctrl-C does: checkpoint, then stop
    "end of run": ({"num_train_steps": 1024, "checkpoint_every": 10**6}, None),
    "evaluation": ({"checkpoint_every": 10**6, "eval_every": 512, "eval_episodes": 1}, None),
}
# best.pt holds the policy only: an optimizer moment is checked before checkpoints, not evals.
POISONED = [(w, t) for w in WHEN for t in ("parameter", "optimizer moment")]
POISONED.remove(("evaluation", "optimizer moment"))


@pytest.mark.parametrize("when, target", POISONED)
def test_no_checkpoint_is_written_from_nan_weights(when, target, tmp_path, monkeypatch):
    """Weights that went NaN in the last update, whose loss was still finite: only the check of
    the state before writing can see them."""
    kw, stop_after = WHEN[when]
    logdir = tmp_path / "run"
    real_check = Lifecycle.check_model

    def poison_then_check(self, step, state):
        if step >= 1024:
            with torch.no_grad():
                if target == "parameter":
                    next(self.alg.runner.policy.parameters()).fill_(float("nan"))
                else:
                    moments = next(iter(self.alg.optimizer.state.values()))
                    moments["exp_avg"].fill_(float("inf"))
        return real_check(self, step, state)

    monkeypatch.setattr(Lifecycle, "check_model", poison_then_check)
    with pytest.raises(NonFinite, match="non-finite value in .* at env step 1024") as info:
        derl.train(config(logdir, **kw), progress=False, stop_after=stop_after)
    assert ("policy." if target == "parameter" else "optimizer.state.") in str(info.value)
    for path in checkpoint.list_checkpoints(logdir):
        assert checkpoint.load(path)["state"]["runner"]["step_count"] < 1024 and finite(path)
    if when == "evaluation":
        assert checkpoint.load(logdir / "best.pt")["step"] == 512 and finite(logdir / "best.pt")


def test_guard_finds_nan_and_inf_but_not_huge_finite_values():
    state = {"a": torch.ones(3), "b": {"c": torch.tensor([1.0, 2.0]), "n": torch.arange(3)}}
    assert guard.nonfinite_tensor(guard.floating_tensors(state)) is None
    state["a"] = torch.full((4,), 1e30)  # its norm overflows float32; its values do not
    assert guard.nonfinite_tensor(guard.floating_tensors(state)) is None
    state["b"]["c"][1] = float("-inf")
    assert guard.nonfinite_tensor(guard.floating_tensors(state)) == "b.c"
    assert guard.nonfinite_metric({"loss": 1.0, "grad_norm": float("nan")}) == "grad_norm"


def test_guard_finds_finite_weights_whose_outputs_overflow():
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    policy = EpsilonGreedyPolicy(make_q_network(space, 2, dueling=False), 2)
    obs = torch.ones(3, 4)
    assert guard.nonfinite_activation(policy, obs) is None
    with torch.no_grad():
        for p in policy.parameters():
            p.fill_(1e30)
    assert guard.nonfinite_tensor(policy.named_parameters()) is None
    assert guard.nonfinite_activation(policy, obs) is not None
    assert int(policy.steps) == 0  # the probe acts deterministically: nothing counted


# -- 9. a checkpoint that cannot be written (exit 4) --------------------------------------------


def fail_from(monkeypatch, step: int, make_error):
    """Checkpoints from `step` on fail while being written, after part of the file is out."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if obj.get("state", {}).get("runner", {}).get("step_count", 0) >= step:
            f.write(b"partial")
            raise make_error()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_is_one_line_exit_4_and_earlier_checkpoints_survive(
    tmp_path, monkeypatch, capsys
):
    logdir = tmp_path / "run"
    fail_from(monkeypatch, 1024, lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    argv = ["ppo", "--env-id", "CartPole-v1", "--logdir", str(logdir), "--num-train-steps", "2048"]
    assert main([*argv, "--checkpoint-every", "512"]) == 4
    line = one_error_line(capsys)
    assert "No space left on device" in line and "step-000000001024.pt" in line
    assert f"the newest good checkpoint is {checkpoint.checkpoint_path(logdir, 512)}" in line
    assert [p.name for p in checkpoint.list_checkpoints(logdir)] == ["step-000000000512.pt"]
    assert finite(checkpoint.list_checkpoints(logdir)[0])
    assert not list(logdir.rglob(".tmp-*"))
    monkeypatch.undo()
    assert resume(logdir, progress=False).env_steps >= 2048


class FullDisk:
    """A file on a disk with `room` bytes left."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_disk_that_fills_up_inside_torch_save_is_a_write_error(tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError about zip offsets."""
    path = tmp_path / "ckpt.pt"
    checkpoint.save({"format": 1, "old": torch.zeros(3)}, path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k), 1000))
    state = {"format": 1, "new": torch.zeros(100_000)}
    with pytest.raises(WriteError, match="No space left on device"):
        checkpoint.save(state, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.pt"]


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save({"format": 1, "old": torch.zeros(3)}, path)
    before = path.read_bytes()

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(WriteError, match="Permission denied"):
        checkpoint.save({"format": 1, "new": torch.ones(3)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.pt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_checkpoint_dir_is_exit_4(tmp_path, capsys):
    logdir = tmp_path / "run"
    derl.train(config(logdir, num_train_steps=512), progress=False, stop_after=512)
    folder = logdir / checkpoint.CHECKPOINT_DIR
    before = snapshot(folder)
    folder.chmod(0o555)
    try:
        assert main(["resume", str(logdir)]) == 4
        assert "Permission denied" in one_error_line(capsys)
        assert_unchanged(before)
        assert not list(folder.glob(".tmp-*"))
    finally:
        folder.chmod(0o755)


def test_a_failed_video_or_plot_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "curves.png"
    out.write_bytes(b"the old plot")
    with pytest.raises(UsageError, match="No space left"):
        with checkpoint.replacing(out) as tmp:
            tmp.write_bytes(b"half a new")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert out.read_bytes() == b"the old plot" and os.listdir(tmp_path) == ["curves.png"]


# -- 10. one process per logdir -----------------------------------------------------------------


def hold_lock(logdir: Path, pid: str = "4242"):
    """The lock as another derl process holds it (another open file: flock sees a stranger)."""
    f = open(logdir / ".lock", "a+")  # noqa: SIM115 - held until the caller closes it
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.truncate(0)
    f.write(f"{pid}\n")
    f.flush()
    return f


def test_second_process_on_a_logdir_is_refused(tmp_path, capsys):
    logdir = tmp_path / "run"
    derl.train(config(logdir, num_train_steps=1024), progress=False, stop_after=512)
    before = snapshot(logdir)
    held = hold_lock(logdir)
    try:
        assert main(["resume", str(logdir)]) == 2
        assert "in use by another derl process (pid 4242)" in one_error_line(capsys)
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        held_fresh = hold_lock(fresh)
        argv = ["ppo", "--env-id", "CartPole-v1", "--logdir", str(fresh)]
        assert main([*argv, "--num-train-steps", "256"]) == 2
        assert "in use by another derl process" in one_error_line(capsys)
        assert not (fresh / "config.json").exists()
        held_fresh.close()
    finally:
        held.close()
    assert_unchanged(before)
    assert resume(logdir, progress=False).env_steps >= 1024  # free again once released


def test_a_running_run_refuses_resume_and_a_killed_one_resumes(tmp_path, capsys):
    logdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "derl.cli", "ppo", "--env-id", "CartPole-v1"]
    cmd += ["--logdir", str(logdir), "--num-train-steps", "200000", "--checkpoint-every", "1024"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not checkpoint.list_checkpoints(logdir):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        assert main(["resume", str(logdir)]) == 2
        assert f"(pid {proc.pid})" in one_error_line(capsys)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    newest = checkpoint.list_checkpoints(logdir)[-1]
    stop = checkpoint.load(newest)["state"]["runner"]["step_count"] + 256
    result = resume(logdir, progress=False, stop_after=stop)  # no stale lock after kill -9
    assert result.interrupted and result.env_steps >= stop


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """Async env workers are forked: a killed parent's lock must not live on in them."""
    from derl import lock

    ready, started = os.pipe()
    with lock.hold(tmp_path):
        pid = os.fork()
        if pid == 0:  # the child (its at-fork hooks have run): outlives the parent's hold
            os.write(started, b"1")
            time.sleep(5)
            os._exit(0)
        os.read(ready, 1)
    try:
        hold_lock(tmp_path).close()  # would raise BlockingIOError were the child holding it
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready)
        os.close(started)


# -- 11. files and directories that cannot be used: one line, exit 2, nothing lost --------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("trained") / "run"
    derl.train(config(logdir, num_train_steps=512), progress=False)
    return logdir


def damaged_config(text: str):
    def make(run: Path) -> None:
        shutil.rmtree(run / checkpoint.CHECKPOINT_DIR)
        (run / "config.json").write_text(text)

    return make


def newer_format(run: Path) -> None:
    for path in checkpoint.list_checkpoints(run):
        state = torch.load(path, weights_only=True)
        torch.save({**state, "format": checkpoint.FORMAT + 1}, path)


def corrupt_checkpoints(run: Path) -> None:
    for path in checkpoint.list_checkpoints(run):
        path.write_bytes(path.read_bytes()[:2000])


def checkpoint_of_no_run(run: Path) -> None:
    for path in checkpoint.list_checkpoints(run):
        torch.save({"format": checkpoint.FORMAT, "weights": torch.zeros(3)}, path)


def events_unreadable(run: Path) -> None:
    (run / "events.out.tfevents.0.host.0").mkdir()


def no_change(run: Path) -> None:
    pass


# (what to do to the copy of a trained run, the command with RUN for its path, the message)
BAD_FILES = [
    (no_change, ["ppo", "--logdir", "RUN/config.json/sub"], "Not a directory"),
    (no_change, ["ppo", "--logdir", "RUN/config.json"], "is a file"),
    (no_change, ["ppo", "--logdir", "/proc/derl-test-run"], "cannot create --logdir"),
    (damaged_config('{"alg": "ppo", '), ["resume", "RUN"], "config.json is damaged"),
    (damaged_config('{"env_id": "CartPole-v1"}'), ["resume", "RUN"], "names no algorithm"),
    (damaged_config('{"alg": "ppx"}'), ["resume", "RUN"], "unknown algorithm 'ppx'"),
    (damaged_config("[1, 2]"), ["resume", "RUN"], "names no algorithm"),
    (damaged_config('{"alg": "ppo", "num_envs": "x"}'), ["resume", "RUN"], "is damaged"),
    (damaged_config('{"alg": "ppo", "env_id": "CartPol-v1"}'), ["resume", "RUN"], "CartPole-v1"),
    (no_change, ["resume", "RUN/config.json"], "is not a directory"),
    (no_change, ["resume", "RUN/nothing"], "does not exist"),
    (no_change, ["resume", "RUN/checkpoints"], "no config.json"),
    (newer_format, ["resume", "RUN"], "newer derl"),
    (corrupt_checkpoints, ["resume", "RUN"], "move them away to start over"),
    (no_change, ["eval", "RUN/checkpoints"], "no checkpoint in"),
    (no_change, ["eval", "RUN/config.json"], "not a derl checkpoint"),
    (newer_format, ["eval", "RUN"], "newer derl"),
    (checkpoint_of_no_run, ["eval", "RUN"], "not a checkpoint of a derl run"),
    (checkpoint_of_no_run, ["resume", "RUN"], "not a checkpoint of a derl run"),
    (no_change, ["eval", "RUN", "--device", "tpu"], "--device must be"),
    (no_change, ["eval", "RUN", "--video", "RUN/nothing/v.mp4"], "does not exist"),
    (no_change, ["eval", "RUN", "--video", "RUN/v.avi"], "must end in .mp4 or .gif"),
    (no_change, ["eval", "RUN", "--video", "RUN/config.json/v.gif"], "is not a directory"),
    (no_change, ["plot", "RUN", "--out", "RUN/curves.xyz"], "must end in .png, .pdf or .svg"),
    (no_change, ["plot", "RUN", "--out", "RUN/curves"], "must end in"),
    (no_change, ["plot", "RUN", "--out", "RUN/nothing/c.png"], "does not exist"),
    (no_change, ["plot", "RUN", "--out", "/proc/derl-test.png"], "cannot write"),
    (damaged_config("{oops"), ["plot", "RUN", "--out", "RUN/c.png"], "config.json is damaged"),
    (events_unreadable, ["plot", "RUN", "--out", "RUN/c.png"], "cannot read the events"),
]


if not torch.cuda.is_available():
    BAD_FILES.append((no_change, ["eval", "RUN", "--device", "cuda"], "no CUDA device"))


@pytest.mark.parametrize(
    "damage, argv, message", BAD_FILES, ids=[f"{a[0]}-{d.__name__}-{m}" for d, a, m in BAD_FILES]
)
def test_unusable_file_or_directory_is_one_line_and_exit_2(
    damage, argv, message, trained, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run)
    before = snapshot(run)
    argv = [arg.replace("RUN", str(run)) for arg in argv]
    if argv[0] == "ppo":
        argv += ["--env-id", "CartPole-v1", "--num-train-steps", "256"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("derl: error: ") and message in err, err
    assert_unchanged(before)  # nothing that was written is lost
    assert not list(run.rglob(".tmp-*"))


def test_the_nonfinite_probe_draws_no_random_numbers_and_keeps_batch_statistics():
    """A user's network with dropout and batch norm: the probe before a checkpoint must leave
    torch's RNG and the running statistics as the checkpoint saved them (a resume replays)."""
    from derl import guard

    class Policy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.drop = torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5)

        def act(self, obs, deterministic=False):
            return {"actions": self.drop(self.norm(obs))}

    policy, obs = Policy(), torch.randn(8, 3) + 5
    rng, stats = torch.get_rng_state(), policy.norm.running_mean.clone()
    assert guard.nonfinite_activation(policy, obs) is None
    assert torch.equal(torch.get_rng_state(), rng)
    assert policy.training and torch.equal(policy.norm.running_mean, stats)
