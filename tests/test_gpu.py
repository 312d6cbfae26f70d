"""CUDA smoke tests, one per algorithm: a few thousand steps on the GPU (replay on the GPU too),
a checkpoint, a resume that completes the run, an evaluation. Skipped without CUDA; on a GPU
machine: python -m pytest -m gpu."""

import copy

import pytest
import torch

import derl
from derl.cli import main
from derl.evaluate import evaluate

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

RUNS = [
    ("ppo", "CartPole-v1", []),
    ("a2c", "CartPole-v1", []),
    ("dqn", "CartPole-v1", ["--buffer-device", "cuda", "--learning-starts", "500"]),
    ("rainbow", "CartPole-v1", ["--buffer-device", "cuda", "--learning-starts", "500"]),
    ("sac", "Pendulum-v1", ["--buffer-device", "cuda", "--learning-starts", "500"]),
    ("td3", "Pendulum-v1", ["--buffer-device", "cuda", "--learning-starts", "500"]),
    ("ppo", "BreakoutNoFrameskip-v4", ["--num-envs", "4"]),
]


@pytest.mark.parametrize("alg, env_id, flags", RUNS, ids=[f"{a}-{e}" for a, e, _ in RUNS])
def test_train_checkpoint_resume_eval_on_cuda(alg, env_id, flags, tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = [alg, "--env-id", env_id, "--device", "cuda", "--logdir", str(logdir), *flags]
    assert main([*argv, "--num-train-steps", "3000", "--checkpoint-every", "1500"]) == 0
    assert "env steps" in capsys.readouterr().out
    checkpoints = sorted((logdir / "checkpoints").glob("step-*.pt"))
    assert len(checkpoints) >= 2
    checkpoints[-1].unlink()  # as if it had stopped after the first checkpoint
    assert main(["resume", str(logdir)]) == 0
    agent = derl.load(logdir, device="cuda")
    assert agent.device.type == "cuda"
    returns = evaluate(agent, num_episodes=2)
    assert len(returns) == 2 and all(r == r for r in returns)  # finite, not NaN


def test_compile_on_cuda_uses_cuda_graphs(tmp_path, capsys):
    from torch._dynamo.utils import counters

    counters.clear()
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--device", "cuda", "--compile"]
    assert main([*argv, "--num-train-steps", "2048", "--logdir", str(logdir)]) == 0
    err = capsys.readouterr().err
    assert "compiled the loss" in err and "compiled acting" in err
    assert "--compile failed" not in err, err  # no part fell back to eager
    # CUDA graphs recorded, not skipped (a CPU input, a mutated input)
    assert not counters["inductor"].get("cudagraph_skips"), dict(counters["inductor"])


def params(alg):
    return [p.detach().clone() for p in alg.runner.policy.parameters()]


CUDA_RESUMES = [
    ("ppo", "CartPole-v1", {"num_train_steps": 2048, "checkpoint_every": 512}),
    (
        "ppo",
        "BreakoutNoFrameskip-v4",
        {"num_envs": 2, "num_train_steps": 1024, "checkpoint_every": 512, "num_runner_steps": 64},
    ),
    (
        "sac",
        "Pendulum-v1",
        {
            "num_train_steps": 1200,
            "checkpoint_every": 600,
            "learning_starts": 300,
            "buffer_device": "cuda",
            "save_buffer": True,
        },
    ),
    (
        "rainbow",
        "CartPole-v1",
        {
            "num_train_steps": 2000,
            "checkpoint_every": 1000,
            "learning_starts": 500,
            "buffer_device": "cuda",
            "save_buffer": True,
        },
    ),
]


@pytest.mark.parametrize(
    "alg, env_id, kw", CUDA_RESUMES, ids=[f"{a}-{e}" for a, e, _ in CUDA_RESUMES]
)
def test_a_resumed_cuda_run_equals_the_straight_run(alg, env_id, kw, tmp_path):
    """--deterministic (the default): cuDNN's convolutions, cuBLAS and C51's scatters give the
    same bits each time, so that resume is exact on the GPU as on the CPU."""

    def config(logdir):
        return derl.make_config(alg, env_id, device="cuda", logdir=str(logdir), **kw)

    straight = derl.train(config(tmp_path / "a"), progress=False)
    half = kw["checkpoint_every"]
    first = derl.train(config(tmp_path / "b"), progress=False, stop_after=half)
    assert first.interrupted
    second = derl.resume(tmp_path / "b", progress=False)
    assert second.env_steps == straight.env_steps
    for a, b in zip(params(straight.alg), params(second.alg), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_cpu_learner_reads_whole_batches_from_a_gpu_replay(tmp_path):
    """--device cpu --buffer-device cuda: a batch copied down to the CPU has arrived before the
    loss reads it (a GPU -> CPU copy must block)."""
    from derl.runners.replay import ExperienceReplay

    config = derl.make_config(
        "sac",
        "Pendulum-v1",
        device="cpu",
        buffer_device="cuda",
        num_train_steps=600,
        learning_starts=300,
        logdir=str(tmp_path),
    )
    replay = derl.train(config, progress=False).alg.runner
    while not isinstance(replay, ExperienceReplay):
        replay = replay.runner
    rng = copy.deepcopy(replay.storage.rng.bit_generator.state)
    torch.cuda._sleep(100_000_000)  # a busy GPU: a copy that does not wait would lag behind
    batch = next(replay.sample(1))
    down = {k: v.clone() for k, v in batch.tensors().items()}
    replay.storage.rng.bit_generator.state = rng  # the same draw, kept on the GPU
    on_gpu = replay.storage.sample(replay.batch_size)
    assert batch.obs.device.type == "cpu" and on_gpu["obs"].device.type == "cuda"
    for key, value in down.items():
        torch.testing.assert_close(value, on_gpu[key].cpu(), rtol=0, atol=0)


def test_a_gpu_run_resumes_on_the_cpu(tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = [
        "sac",
        "--env-id",
        "Pendulum-v1",
        "--device",
        "cuda",
        "--buffer-device",
        "cuda",
        "--learning-starts",
        "300",
        "--logdir",
        str(logdir),
    ]
    assert main([*argv, "--num-train-steps", "1200", "--checkpoint-every", "600"]) == 0
    sorted((logdir / "checkpoints").glob("step-*.pt"))[-1].unlink()
    assert main(["resume", str(logdir), "--device", "cpu", "--buffer-device", "cpu"]) == 0
    assert derl.load(logdir).device.type == "cpu"
