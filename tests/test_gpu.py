"""CUDA smoke tests, one per algorithm: a few thousand steps on the GPU (replay on the GPU too),
a checkpoint, a resume that completes the run, an evaluation. Skipped without CUDA; on a GPU
machine: python -m pytest -m gpu."""

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
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--device", "cuda", "--compile"]
    assert main([*argv, "--num-train-steps", "2048", "--logdir", str(logdir)]) == 0
    assert "compiled the loss" in capsys.readouterr().err
