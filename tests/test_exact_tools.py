"""The exact evaluators in benchmarks/ agree with sampled episodes of gymnasium's envs."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import blackjack_exact  # noqa: E402
import frozenlake_exact  # noqa: E402


def sampled_mean(env, policy, episodes: int, seed: int = 0) -> float:
    total, obs = 0.0, env.reset(seed=seed)[0]
    for _ in range(episodes):
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total, done = total + reward, terminated or truncated
        obs = env.reset()[0]
    return total / episodes


def test_blackjack_exact_return_matches_sampled_hands():
    hit_below_17 = lambda obs: int(obs[0] < 17)  # noqa: E731
    exact = blackjack_exact.expected_return(hit_below_17)
    sampled = sampled_mean(gym.make("Blackjack-v1"), hit_below_17, 40_000)
    assert abs(exact - sampled) < 4 * 0.95 / np.sqrt(40_000), (exact, sampled)
    assert blackjack_exact.expected_return(None) > exact  # the optimum does better


def test_frozenlake_goal_probability_matches_sampled_episodes():
    env = gym.make("FrozenLake-v1")
    policy = [1, 2, 1, 0, 1, 0, 1, 0, 2, 1, 1, 0, 0, 2, 2, 0]  # down / right towards the goal
    exact = frozenlake_exact.goal_probability(env.unwrapped.P, policy, 100)
    sampled = sampled_mean(env, lambda s: policy[s], 5_000)
    assert abs(exact - sampled) < 4 * np.sqrt(exact * (1 - exact) / 5_000), (exact, sampled)
    assert frozenlake_exact.goal_probability(env.unwrapped.P, None, 100) > exact
