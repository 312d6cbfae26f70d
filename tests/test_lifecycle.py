"""Checkpoints, resume (in-process, after SIGKILL or SIGINT), safe loading, eval, video, plot."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import scalars

import derl
from derl import checkpoint
from derl.cli import main
from derl.evaluate import evaluate, film_episode
from derl.logger import Logger
from derl.train import resume


def config(logdir, env_id="CartPole-v1", **kw):
    kw = {"num_train_steps": 4096, "checkpoint_every": 1024, "device": "cpu", **kw}
    return derl.make_config("ppo", env_id, logdir=str(logdir), **kw)


def params(alg):
    return [p.detach().clone() for p in alg.runner.policy.parameters()]


@pytest.mark.parametrize(
    "env_id, kw",
    [
        ("CartPole-v1", {}),
        (
            "HalfCheetah-v5",
            {
                "num_envs": 1,
                "num_runner_steps": 256,
                "num_minibatches": 4,
                "num_epochs": 2,
                "num_train_steps": 1024,
                "checkpoint_every": 256,
            },
        ),
        (  # advantages recomputed before every epoch, from the critic of that moment
            "HalfCheetah-v5",
            {
                "recompute_advantages": True,
                "num_envs": 2,
                "num_runner_steps": 128,
                "num_minibatches": 4,
                "num_epochs": 3,
                "num_train_steps": 1024,
                "checkpoint_every": 256,
            },
        ),
        (  # gSDE: the exploration matrices are redrawn by runner hooks, after the checkpoint
            # and (sde_sample_freq) every 16 steps within a rollout
            "Pendulum-v1",
            {
                "use_sde": True,
                "sde_sample_freq": 16,
                "num_envs": 2,
                "num_runner_steps": 64,
                "num_minibatches": 2,
                "num_epochs": 2,
                "num_train_steps": 1024,
                "checkpoint_every": 256,
            },
        ),
    ],
)
def test_resumed_run_equals_straight_run(tmp_path, env_id, kw):
    straight = derl.train(config(tmp_path / "a", env_id, **kw), progress=False)
    half = straight.env_steps // 2
    first = derl.train(config(tmp_path / "b", env_id, **kw), progress=False, stop_after=half)
    assert first.interrupted and first.env_steps == half
    second = resume(tmp_path / "b", progress=False)
    assert second.env_steps == straight.env_steps
    for a, b in zip(params(straight.alg), params(second.alg), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert second.recent_returns == straight.recent_returns


def test_checkpoints_by_the_clock_change_nothing_in_training(tmp_path):
    # checkpoint_minutes ~0: the clock asks for one at every rollout boundary.
    straight = derl.train(config(tmp_path / "a", checkpoint_every=10**6), progress=False)
    clocked = derl.train(
        config(tmp_path / "b", checkpoint_every=10**6, checkpoint_minutes=1e-9), progress=False
    )
    steps = [int(p.stem.split("-")[1]) for p in checkpoint.list_checkpoints(tmp_path / "b")]
    rollout = clocked.config.num_runner_steps * clocked.config.num_envs
    assert steps == [4096 - 2 * rollout, 4096 - rollout, 4096]  # the newest 3, by the clock
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "a")] == ["step-000000004096.pt"]
    for a, b in zip(params(straight.alg), params(clocked.alg), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # `derl resume --checkpoint-minutes` changes the setting of a run, and only that.
    first = derl.train(config(tmp_path / "c"), progress=False, stop_after=1024)
    assert first.interrupted
    second = resume(tmp_path / "c", progress=False, checkpoint_minutes=1e-9)
    assert second.config.checkpoint_minutes == 1e-9
    assert len(checkpoint.list_checkpoints(tmp_path / "c")) == 3
    for a, b in zip(params(straight.alg), params(second.alg), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def start_training(logdir, steps=200_000):
    cmd = [
        sys.executable,
        "-m",
        "derl.cli",
        "ppo",
        "--env-id",
        "CartPole-v1",
        "--logdir",
        str(logdir),
        "--num-train-steps",
        str(steps),
        "--checkpoint-every",
        "2048",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(logdir, proc, timeout=60):
    deadline = time.time() + timeout
    while not checkpoint.list_checkpoints(logdir):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_sigkill_at_any_moment_resumes_and_finishes(tmp_path, delay):
    logdir = tmp_path / "run"
    proc = start_training(logdir, steps=12_000)
    wait_for_checkpoint(logdir, proc)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    result = resume(logdir, progress=False)
    assert result.env_steps >= 12_000
    for path in checkpoint.list_checkpoints(logdir):
        checkpoint.load(path)  # every checkpoint left is complete
    assert not list((logdir / "checkpoints").glob(".tmp-*"))


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGINT],
        # a kill of the process group (`timeout`, a scheduler, the benchmark suite, which also
        # passes a SIGINT on): checkpoint and stop, not quit at once
        [signal.SIGTERM, signal.SIGINT, signal.SIGTERM],
    ],
)
def test_sigint_writes_a_loadable_checkpoint_and_exits_cleanly(tmp_path, signals):
    logdir = tmp_path / "run"
    proc = start_training(logdir)
    wait_for_checkpoint(logdir, proc)
    for signum in signals:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count("derl: stopping after this update to write a checkpoint") == 1
    assert "Traceback" not in err
    newest = checkpoint.list_checkpoints(logdir)[-1]
    state = checkpoint.load(newest)
    assert state["state"]["runner"]["step_count"] == int(newest.stem.split("-")[1])
    assert derl.train(config(tmp_path / "x"), progress=False, stop_after=1).interrupted


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": Payload(marker)}, path)
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to load" in err and err.count("\n") == 1
    assert not marker.exists()


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    logdir = tmp_path / "run"
    derl.train(config(logdir), progress=False, stop_after=2048)
    newest = checkpoint.list_checkpoints(logdir)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a full disk
    assert main(["eval", str(newest)]) == 2  # the file named: no other
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(["eval", str(logdir), "--episodes", "1"]) == 0  # the run: its previous one
    assert "loading the previous checkpoint" in capsys.readouterr().err
    result = resume(logdir, progress=False)
    assert "falling back" in capsys.readouterr().err
    assert result.env_steps >= 4096


def test_resumed_run_keeps_the_tensorboard_points_of_its_checkpoint_step(tmp_path):
    logdir = tmp_path / "run"
    derl.train(config(logdir, num_train_steps=2048), progress=False, stop_after=1280)
    resume(logdir, progress=False)
    # PPO's classic preset updates every 8 envs x 32 steps; the points at 1280 were written
    # before the checkpoint the run resumed from, and must survive TensorBoard's purge.
    steps = [e.step for e in scalars(logdir)["train/value_loss"]]
    assert steps == list(range(256, 2049, 256))


def test_a_run_stopped_between_evaluations_evaluates_where_a_straight_run_does(tmp_path):
    # Sittings shorter than eval_every (a suite killed every day): counted from each resume,
    # the evaluations would move, or never come. 256 env steps a rollout, one eval every 768.
    def ppo(logdir):
        return config(logdir, num_train_steps=2048, eval_every=768, eval_episodes=1)

    derl.train(ppo(tmp_path / "a"), progress=False)
    derl.train(ppo(tmp_path / "b"), progress=False, stop_after=512)
    resume(tmp_path / "b", progress=False, stop_after=768)  # stops where an eval is due
    resume(tmp_path / "b", progress=False, stop_after=1280)
    resume(tmp_path / "b", progress=False)
    straight, resumed = ([e.step for e in scalars(tmp_path / r)["eval/return"]] for r in "ab")
    assert straight == [768, 1536, 2048]
    assert resumed == straight


def test_logger_writes_a_point_per_100_env_steps_with_the_mean_since_the_last(tmp_path):
    logger = Logger(str(tmp_path), total_steps=250, progress=False)
    for step in range(1, 251):  # one update per env step, as SAC's
        logger.record({"x": float(step)}, step)
    logger.close()  # writes the last, shorter window
    points = [(e.step, e.value) for e in scalars(tmp_path)["train/x"]]
    assert points == [(100, 50.5), (200, 150.5), (250, 225.5)]


def test_off_policy_resume_writes_the_points_of_a_straight_run(tmp_path, one_thread):
    # Points every 100 env steps and at every checkpoint: a run resumed from its checkpoint at
    # 450 writes the same points, with the same values, as a run that was never stopped.
    def dqn(logdir):
        return derl.make_config(
            "dqn",
            "CartPole-v1",
            logdir=str(logdir),
            num_train_steps=900,
            learning_starts=100,
            train_freq=1,
            gradient_steps=1,  # the preset's 128 updates per train_freq would make it 100k updates
            checkpoint_every=450,
            eval_every=0,
            save_buffer=True,  # bit for bit: the resumed run samples the same replay
        )

    derl.train(dqn(tmp_path / "a"), progress=False)
    derl.train(dqn(tmp_path / "b"), progress=False, stop_after=450)
    resume(tmp_path / "b", progress=False)
    straight, resumed = (
        [(e.step, e.value) for e in scalars(tmp_path / run)["train/loss"]] for run in "ab"
    )
    assert [step for step, _ in straight] == [100, 200, 300, 400, 450, 550, 650, 750, 850, 900]
    assert resumed == straight


def test_eval_prints_mean_and_writes_playable_videos(tmp_path, capsys):
    derl.train(config(tmp_path / "run", num_train_steps=2048), progress=False)
    video = tmp_path / "cartpole.mp4"
    assert (
        main(
            [
                "eval",
                str(tmp_path / "run"),
                "--episodes",
                "2",
                "--deterministic",
                "--video",
                str(video),
            ]
        )
        == 0
    )
    # "CartPole-v1: mean return M +/- S over 2 episodes (min A, max B)"
    words = capsys.readouterr().out.split()
    at = words.index("return")
    mean, low, high = (float(words[i].strip(",)")) for i in (at + 1, at + 8, at + 10))
    assert words[at + 7 : at + 10 : 2] == ["(min", "max"] and low <= mean <= high
    frames = iio.imread(video)
    assert frames.ndim == 4 and frames.shape[0] > 5 and frames.std() > 0


def test_the_video_films_the_first_evaluated_episode(tmp_path):
    """`derl eval --video` prints the return of the episode it filmed: the evaluation's first
    one, whose return it printed (it filmed another episode from the same seed before)."""
    derl.train(config(tmp_path / "run", "Pendulum-v1", num_train_steps=1024), progress=False)
    agent = derl.load(tmp_path / "run")
    first, second = evaluate(agent, 2, seed=123)
    assert first != second  # Pendulum's episodes start from random angles: the check can fail
    frames, _, filmed_return = film_episode(agent, seed=123, max_steps=250)
    assert filmed_return == pytest.approx(first, rel=1e-6) and len(frames) == 201


def test_atari_eval_films_the_game(tmp_path):
    derl.train(
        config(
            tmp_path / "run",
            "BreakoutNoFrameskip-v4",
            num_train_steps=256,
            num_envs=2,
            num_runner_steps=64,
        ),
        progress=False,
    )
    video = tmp_path / "breakout.gif"
    assert main(["eval", str(tmp_path / "run"), "--episodes", "1", "--video", str(video)]) == 0
    frames = iio.imread(video)
    assert frames.shape[1:] == (210, 160, 3)


def test_load_gives_an_agent_that_acts_on_a_gymnasium_env(tmp_path):
    result = derl.train(config(tmp_path / "run", num_train_steps=1024), progress=False)
    agent = derl.load(tmp_path / "run")
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    assert env.action_space.contains(int(action))
    batch = np.stack([obs, obs])
    assert agent.act(batch).shape == (2,)
    derl.save(result.alg, result.config, tmp_path / "saved.pt")
    assert derl.load(tmp_path / "saved.pt").act(obs) == action


def test_eval_during_training_logs_eval_return(tmp_path):
    derl.train(
        config(tmp_path / "run", num_train_steps=2048, eval_every=1024, eval_episodes=2),
        progress=False,
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    evals = acc.Scalars("eval/return")
    assert [e.step for e in evals] == [1024, 2048]
    # best.pt holds the best of them, small (no optimizer or replay) and loadable as an agent.
    best = checkpoint.load(tmp_path / "run" / "best.pt")
    first_best = max(evals, key=lambda e: (e.value, -e.step))  # a tie keeps the earlier one
    assert best["eval_return"] == pytest.approx(max(e.value for e in evals))
    assert best["step"] == first_best.step and best["state"].keys() == {"policy", "runner"}
    assert derl.load(tmp_path / "run" / "best.pt").act(np.zeros(4, np.float32)) in (0, 1)


def test_plot_labels_curves_by_algorithm_and_what_differs_within_it():
    from derl.plot import group_runs

    ppo = {"alg": "ppo", "env_id": "X", "lr": 1e-3, "clip_range": 0.2}
    sac = {"alg": "sac", "env_id": "X", "lr": 3e-4, "tau": 0.005}
    configs = {
        Path("p0"): {**ppo, "seed": 0},
        Path("p1"): {**ppo, "seed": 1},
        Path("q0"): {**ppo, "seed": 0, "lr": 3e-4},
        Path("s0"): {**sac, "seed": 0},
    }
    assert group_runs(configs) == {
        "ppo lr=0.001": [Path("p0"), Path("p1")],
        "ppo lr=0.0003": [Path("q0")],
        "sac": [Path("s0")],  # SAC's lr and tau differ from PPO's presets: no label for that
    }
    # A field added to derl later (absent from older runs' configs) is no difference.
    older = {**configs, Path("p2"): {**ppo, "seed": 2, "compile": False}}
    assert group_runs(older)["ppo lr=0.001"] == [Path("p0"), Path("p1"), Path("p2")]
    # Settings of the machine or the launch are no difference either (--threads 1 on a busy one).
    launched = {**configs, Path("p1"): {**ppo, "seed": 1, "threads": 1, "launch_id": "u1"}}
    assert group_runs(launched)["ppo lr=0.001"] == [Path("p0"), Path("p1")]


@pytest.mark.parametrize("fps", [15, 30, 67, 125])
def test_gifs_play_at_the_env_speed(fps):
    """GIF delays are whole centiseconds and browsers slow delays under 20 ms to 100 ms."""
    import io

    from PIL import Image

    from derl.video import gif

    frames = np.repeat(np.arange(250, dtype=np.uint8)[:, None, None, None], 8, axis=1)
    image = Image.open(io.BytesIO(gif(np.repeat(np.repeat(frames, 8, 2), 3, 3), fps)))
    delays = []
    for i in range(image.n_frames):
        image.seek(i)
        delays.append(image.info["duration"])
    assert min(delays) >= 20
    assert sum(delays) / 1000 == pytest.approx(250 / fps, rel=0.07)


def test_plot_writes_a_png_with_seeds_grouped(tmp_path):
    for seed in (0, 1):
        derl.train(config(tmp_path / f"s{seed}", num_train_steps=3072, seed=seed), progress=False)
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    configs = [json.loads(p.read_text()) for p in Path(tmp_path).rglob("config.json")]
    assert {c["seed"] for c in configs} == {0, 1}


@pytest.mark.slow
def test_many_random_kills_always_resume_to_completion(tmp_path):
    """kill -9 at random moments, `derl resume` after each, until the run finishes."""
    rng = np.random.default_rng(0)
    logdir = tmp_path / "run"
    proc, kills = start_training(logdir, steps=60_000), 0
    while kills < 8:
        time.sleep(rng.uniform(0.2, 4.0))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
        for path in checkpoint.list_checkpoints(logdir):
            checkpoint.load(path)  # never a half-written checkpoint
        cmd = [sys.executable, "-m", "derl.cli", "resume", str(logdir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    state = checkpoint.load(checkpoint.list_checkpoints(logdir)[-1])
    assert state["state"]["runner"]["step_count"] >= 60_000
    assert kills >= 3


def test_resume_before_the_first_checkpoint_starts_over(tmp_path, capsys):
    logdir = tmp_path / "run"
    derl.train(config(logdir, num_train_steps=1024), progress=False)
    for path in checkpoint.list_checkpoints(logdir):
        path.unlink()  # as if killed before the first checkpoint
    result = resume(logdir, progress=False)
    assert "starting over" in capsys.readouterr().err
    assert result.env_steps >= 1024 and checkpoint.list_checkpoints(logdir)


def test_resume_clears_killed_writes_and_survives_a_damaged_best_pt(tmp_path, capsys):
    logdir = tmp_path / "run"
    derl.train(config(logdir, num_train_steps=2048, eval_every=1024), progress=False, stop_after=1)
    stale = [logdir / ".tmp-killed.pt", logdir / "checkpoints" / ".tmp-killed.pt"]
    for path in stale:  # what a SIGKILL in the middle of a write leaves
        path.write_bytes(b"half a checkpoint")
    (logdir / "best.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    result = resume(logdir, progress=False)
    assert result.env_steps >= 2048
    assert not any(path.exists() for path in stale)
    assert "best.pt cannot be read" in capsys.readouterr().err
    assert checkpoint.load(logdir / "best.pt")["eval_return"] > -np.inf  # written anew
    # Checkpoints take the mode of any new file (umask), not mkstemp's 0600
    mode = checkpoint.list_checkpoints(logdir)[-1].stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_a_checkpoint_that_unpickles_into_an_error_is_one_line(tmp_path, monkeypatch):
    logdir = tmp_path / "run"
    derl.train(config(logdir, num_train_steps=1024), progress=False)
    path = checkpoint.list_checkpoints(logdir)[-1]

    def damaged(*args, **kwargs):  # what some flipped bytes gave: not torch's usual errors
        raise AssertionError("saved_id must be a tuple")

    monkeypatch.setattr(torch, "load", damaged)
    with pytest.raises(derl.errors.UsageError, match="is truncated or corrupt .AssertionError."):
        checkpoint.load(path)


@pytest.mark.parametrize("threads, expected", [(None, 1), (0, 2), (2, 2)])
def test_a_run_takes_one_torch_thread_unless_told(tmp_path, threads, expected):
    # Threads that share cores with other runs wait on each other (the README's --threads), so
    # a run takes one by default; 0 leaves torch's count (one per core) as it was.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        kw = {} if threads is None else {"threads": threads}
        derl.train(config(tmp_path / "run", num_train_steps=256, **kw), progress=False)
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
