"""Learning to a threshold: the classic PPO preset solves CartPole-v1 (~20 s a seed, 2 cores)."""

import pytest

import derl
from derl.evaluate import evaluate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_solves_cartpole(seed, tmp_path):
    config = derl.make_config(
        "ppo", "CartPole-v1", seed=seed, device="cpu", logdir=str(tmp_path / "run")
    )
    result = derl.train(config, progress=False)
    returns = evaluate(result.agent, num_episodes=10)
    assert returns.mean() >= 475, (seed, returns)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a2c_solves_cartpole(seed, tmp_path):
    config = derl.make_config(
        "a2c", "CartPole-v1", seed=seed, device="cpu", logdir=str(tmp_path / "run")
    )
    result = derl.train(config, progress=False)
    returns = evaluate(result.agent, num_episodes=10)
    assert returns.mean() >= 475, (seed, returns)
