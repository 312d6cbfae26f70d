"""Data-parallel training on torch.distributed (gloo on the CPU), 2 processes per run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_same, scalars

import derl
from derl import checkpoint
from derl.errors import UsageError
from derl.evaluate import evaluate

WORKER = Path(__file__).with_name("dist_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def derl_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "derl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """tests/dist_worker.py ARGS under torchrun; `-m`, "derl", ARGS: the derl command."""
    script = [] if args[0] == "-m" else [str(WORKER)]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            *script,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def newest(logdir: Path) -> tuple[dict, dict]:
    """Rank 0's and rank 1's parts of the newest checkpoint."""
    path = checkpoint.list_checkpoints(logdir)[-1]
    return checkpoint.load(path), checkpoint.load(checkpoint.rank_path(path, 1))


def without(x, *names: str):
    """`x` without the dict entries whose key contains one of `names`, at any depth."""
    if isinstance(x, dict):
        return {k: without(v, *names) for k, v in x.items() if not any(n in str(k) for n in names)}
    if isinstance(x, (list, tuple)):
        return type(x)(without(v, *names) for v in x)
    return x


CLOCK = ("episode_start_time", "time_queue")  # RecordEpisodeStatistics' wall-clock times


def trained(state: dict) -> dict:
    """What the ranks must agree on: everything but the runner (envs, replay) and noisy nets'
    noise, which each rank samples for itself."""
    return without({k: v for k, v in state["state"].items() if k != "runner"}, "epsilon")


RUNS = {
    "ppo": "CartPole-v1",
    "a2c": "CartPole-v1",
    "dqn": "CartPole-v1",
    "rainbow": "CartPole-v1",
    "sac": "Pendulum-v1",
    "td3": "Pendulum-v1",
}


def test_two_processes_keep_identical_parameters_for_every_algorithm(tmp_path):
    runs = ",".join(f"{alg}:{env_id}" for alg, env_id in RUNS.items())
    options = ["learning_starts=256", "eval_every=0", "threads=1"]
    ok(torchrun("each", str(tmp_path), runs, "-", *options, "num_train_steps=512"))
    for alg in RUNS:
        logdir = tmp_path / alg
        main, other = newest(logdir)
        assert_same(trained(main), trained(other), alg)  # bitwise: weights, optimizers, targets
        optimizers = [v for k, v in main["state"].items() if "optimizer" in k and v]
        assert all(o["state"] for o in optimizers), f"{alg}: no update was made"
        steps = main["state"]["runner"]["step_count"]
        assert steps == other["state"]["runner"]["step_count"] >= 512
        # Each rank stepped its own envs (other seeds): their observations differ.
        obs = [s["state"]["runner"]["obs"] for s in (main, other)]
        assert obs[0] is None or not torch.equal(obs[0], obs[1]), alg
        assert main["config"]["nproc"] == 2
        assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # rank 0 alone logs
        # Epsilon's schedule and SAC's and TD3's random warm-up run on the steps of both ranks,
        # as learning_starts does: on each rank's own, the warm-up would last twice as long.
        for state in (main, other):
            policy = state["state"]["policy"]
            counts = [int(policy[k]) for k in ("steps", "steps_acted") if k in policy]
            assert counts == ([] if alg in ("ppo", "a2c") else [steps]), alg


def test_gradients_missing_on_some_ranks_average_as_zeros(tmp_path):
    ok(torchrun("collectives", str(tmp_path), "-", "-"))
    got = [torch.load(tmp_path / f"rank-{r}.pt") for r in range(2)]
    for rank in got:  # rank 0's gradients are 1, rank 1's are 2; one missing counts as 0
        grads = rank["grads"]
        assert torch.equal(grads["a"], torch.full((3,), 1.5))
        assert torch.equal(grads["b"], torch.full((3,), 0.5))
        assert torch.equal(grads["c"], torch.full((3,), 1.0))
        assert grads["d"] is None  # no rank had one: the optimizer skips it on every rank
        assert rank["all_true"] == [False, True]


def test_nproc_runs_share_one_logdir_with_every_ranks_episodes(tmp_path):
    logdir = tmp_path / "run"
    steps = 4096
    ok(
        derl_cli(
            "ppo",
            "--env-id",
            "CartPole-v1",
            "--nproc",
            "2",
            "--num-envs",
            "1",
            "--num-runner-steps",
            "128",
            "--num-train-steps",
            str(steps),
            "--normalize",
            "--logdir",
            str(logdir),
        )
    )
    assert sorted(p.name for p in logdir.iterdir()) == sorted(
        [".lock", "config.json", "checkpoints", *(p.name for p in logdir.glob("events.*"))]
    )
    assert len(list(logdir.glob("events.*"))) == 1  # rank 0 alone logs
    main, other = newest(logdir)
    assert_same(trained(main), trained(other))
    # The observation and reward statistics of both ranks, merged the same on each.
    normalizers = [s["state"]["runner"]["normalizer"] for s in (main, other)]
    assert_same(*(without(n, "returns") for n in normalizers))
    logged = scalars(logdir)
    lengths = [e.value for e in logged["episode/length"]]
    # Each rank leaves at most one episode unfinished; rank 0's own would be half the steps.
    assert steps - 2 * max(lengths) <= sum(lengths) <= steps
    sps_steps = [e.step for e in logged["time/sps"]]
    assert sps_steps[-1] == steps  # the step axis counts the steps of both ranks
    assert [e.step for e in logged["episode/return"]] == sorted(
        e.step for e in logged["episode/return"]
    )


@pytest.mark.parametrize(
    "alg,env_id,options",
    [
        (
            "ppo",
            "Pendulum-v1",
            [
                "normalize=True",
                "num_envs=2",
                "num_runner_steps=128",
                "num_epochs=2",
                "num_minibatches=2",
                "num_train_steps=2048",
            ],
        ),
        pytest.param(
            "dqn",
            "CartPole-v1",
            [
                "save_buffer=True",
                "learning_starts=256",
                "num_train_steps=1280",
                "num_envs=2",
                "train_freq=16",
                "gradient_steps=4",
            ],
            marks=pytest.mark.slow,  # a replay in each rank's part: 30 s
        ),
    ],
)
@pytest.mark.slow  # 3 starts of 2 processes: 40-70 s (the default run resumes one below)
def test_a_two_process_run_resumes_bit_for_bit(alg, env_id, options, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["checkpoint_every=512", "eval_every=0", "threads=1", *options]
    ok(torchrun("train", str(straight), alg, env_id, *common))
    ok(torchrun("stop", str(split), alg, env_id, *common, "stop=768"))
    stopped = checkpoint.load(checkpoint.list_checkpoints(split)[-1])
    assert 768 <= stopped["state"]["runner"]["step_count"] < 1280
    resumed = ok(torchrun("resume", str(split), alg, env_id))
    assert "resuming from" in resumed.stderr
    for a, b in zip(newest(straight), newest(split), strict=True):
        # Every rank: model, envs, replay, normalizer (not the wall-clock start time that
        # RecordEpisodeStatistics keeps).
        assert_same(without(a["state"], *CLOCK), without(b["state"], *CLOCK))
        assert_same(a["rng"], b["rng"])
    main, other = newest(split)
    if "normalize=True" in options:  # the statistics of both ranks' observations, merged
        normalizers = [s["state"]["runner"]["normalizer"] for s in (main, other)]
        assert_same(*(without(n, "returns") for n in normalizers))  # not each env's return


def test_derl_resume_starts_the_processes_of_a_data_parallel_run(tmp_path):
    logdir = tmp_path / "run"
    ok(torchrun("stop", str(logdir), "ppo", "CartPole-v1", "num_train_steps=2048", "stop=1024"))
    result = ok(derl_cli("resume", str(logdir)))
    assert "done: 2048 env steps" in result.stdout
    assert checkpoint.list_checkpoints(logdir)[-1].name == "step-000000002048.pt"
    assert checkpoint.rank_path(checkpoint.list_checkpoints(logdir)[-1], 1).exists()
    # One process cannot continue it alone, nor a group of another size.
    with pytest.raises(UsageError, match="trained by 2 processes"):
        derl.resume(logdir)
    other = torchrun("-m", "derl", "resume", str(logdir), nproc=3)
    assert other.returncode != 0
    assert other.stderr.count("was trained with 2 process(es), but torchrun started 3") == 1


def test_checkpoints_by_the_clock_wait_for_an_exchange_of_the_ranks(tmp_path):
    # Each rank's clock differs: a checkpoint it asks for is agreed at the next exchange (every
    # SYNC_EVERY steps), not at the next rollout (512 steps here), so every rank writes its part.
    logdir = tmp_path / "run"
    flags = ["--nproc", "2", "--num-train-steps", "4096", "--checkpoint-every", "1000000"]
    ok(
        derl_cli(
            "ppo",
            "--env-id",
            "CartPole-v1",
            *flags,
            "--checkpoint-minutes",
            "1e-9",
            "--threads",
            "1",
            "--logdir",
            str(logdir),
        )
    )
    found = checkpoint.list_checkpoints(logdir)
    assert [p.name for p in found] == ["step-000000002048.pt", "step-000000004096.pt"]
    assert all(checkpoint.rank_path(p, 1).exists() for p in found)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--nproc", "2", "--dist-backend", "nccl", "--device", "cpu"], "nccl needs CUDA"),
        (["--nproc", "2", "--device", "cuda"], "torch sees no CUDA device"),
    ],
)
def test_bad_nproc_input_is_one_line(flags, message, tmp_path):
    result = derl_cli("ppo", "--env-id", "CartPole-v1", *flags, "--logdir", str(tmp_path / "r"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "r").exists()


def test_a_refusal_under_torchrun_is_printed_once(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")  # holds a run: refused on rank 0
    logdir = str(tmp_path / "run")
    result = torchrun("-m", "derl", "ppo", "--env-id", "CartPole-v1", "--logdir", logdir)
    assert result.returncode != 0
    assert result.stderr.count("already holds a run") == 1, result.stderr[-2000:]


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_run_completes(tmp_path):
    logdir = tmp_path / "run"
    steps = 40_960
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "--max-restarts=3",
        "-m",
        "derl",
        "ppo",
        "--env-id",
        "CartPole-v1",
        "--num-train-steps",
        str(steps),
        "--checkpoint-every",
        "4096",
        "--logdir",
        str(logdir),
    ]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.time() + 120
    while not checkpoint.list_checkpoints(logdir) and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.list_checkpoints(logdir), "no checkpoint within 2 minutes"
    os.kill(rank_pid(1, logdir), signal.SIGKILL)
    out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err.decode()[-3000:]
    assert "resuming from" in err.decode()
    main, other = newest(logdir)
    assert main["state"]["runner"]["step_count"] >= steps
    assert_same(trained(main), trained(other))


def rank_pid(rank: int, logdir: Path) -> int:
    """The pid of the derl process of `rank` training in `logdir`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(logdir).encode() in cmdline and f"RANK={rank}".encode() in environ:
            if b"torch.distributed.run" not in cmdline:
                return int(proc.name)
    raise AssertionError(f"no process of rank {rank} found")


@pytest.mark.slow
def test_two_processes_solve_cartpole_with_the_default_command(tmp_path):
    logdir = tmp_path / "run"
    ok(derl_cli("ppo", "--env-id", "CartPole-v1", "--nproc", "2", "--logdir", str(logdir)))
    agent = derl.load(logdir)
    assert evaluate(agent, 20).mean() >= 475


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_at_one_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    command = [sys.executable, "-m", "derl", "ppo", "--env-id", "CartPole-v1", "--nproc", "2"]
    launcher = subprocess.Popen(
        [*command, "--num-train-steps", "1000000", "--logdir", str(logdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    deadline = time.time() + 120
    while not list(logdir.glob("events.*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # training
    launcher.send_signal(signal.SIGINT)  # what Ctrl-C sends the launcher
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, err[-2000:]
    assert "continue with: derl resume" in out
    main, other = newest(logdir)  # both parts, at the same step
    assert main["state"]["runner"]["step_count"] == other["state"]["runner"]["step_count"]
