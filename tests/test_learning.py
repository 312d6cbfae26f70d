"""Learning to a threshold: the classic presets solve CartPole-v1 (PPO ~20 s a seed, 2 cores)."""

import pytest

import derl
from derl.evaluate import evaluate

SEEDS = [0, 1, 2]
CASES = [("ppo", seed) for seed in SEEDS]
CASES += [pytest.param("a2c", seed, marks=pytest.mark.slow) for seed in SEEDS]


@pytest.mark.parametrize("alg, seed", CASES)
def test_classic_preset_solves_cartpole(alg, seed, tmp_path):
    config = derl.make_config(
        alg, "CartPole-v1", seed=seed, device="cpu", logdir=str(tmp_path / "run")
    )
    result = derl.train(config, progress=False)
    returns = evaluate(result.agent, num_episodes=10)
    assert returns.mean() >= 475, (alg, seed, returns)
