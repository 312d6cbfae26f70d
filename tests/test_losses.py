"""PPO and A2C losses on a seeded synthetic batch, against the formulas written out."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from derl import A2CLoss, ActorCriticPolicy, PPOLoss, make_model
from derl.types import Batch


@pytest.fixture
def policy_and_batch():
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    act_space = gym.spaces.Discrete(4)
    policy = ActorCriticPolicy(make_model(obs_space, act_space), act_space)
    obs = torch.randn(16, 3)
    dist, values = policy(obs)
    actions = dist.sample()
    batch = Batch(
        obs=obs,
        actions=actions,
        log_probs=dist.log_prob(actions).detach(),
        values=values.detach(),
        advantages=torch.randn(16),
        value_targets=torch.randn(16),
    )
    return policy, batch


def test_ppo_at_ratio_one_is_the_policy_gradient_loss(policy_and_batch):
    policy, batch = policy_and_batch
    out = PPOLoss(policy, clip_range=0.2, value_loss_coef=0.5, entropy_coef=0.01)(batch)
    dist, values = policy(batch.obs)
    expected_value_loss = 0.5 * (values - batch.value_targets).pow(2).mean()
    expected = -batch.advantages.mean() + 0.5 * expected_value_loss - 0.01 * dist.entropy().mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.metrics["approx_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert out.metrics["clip_fraction"].item() == 0.0


def test_ppo_clips_the_ratio_on_the_side_that_would_gain(policy_and_batch):
    policy, batch = policy_and_batch
    # Old log-probs lower by log(1.5): the ratio is 1.5 everywhere, outside [0.8, 1.2].
    batch.log_probs = batch.log_probs - math.log(1.5)
    out = PPOLoss(policy, clip_range=0.2, value_loss_coef=0.0, entropy_coef=0.0)(batch)
    adv = batch.advantages
    surrogate = torch.where(adv > 0, 1.2 * adv, 1.5 * adv)  # min(r A, clip(r) A)
    assert out.metrics["policy_loss"].item() == pytest.approx(-surrogate.mean().item(), rel=1e-5)
    assert out.metrics["clip_fraction"].item() == 1.0
    kl = (1.5 - 1) - math.log(1.5)
    assert out.metrics["approx_kl"].item() == pytest.approx(kl, rel=1e-5)


def test_ppo_value_loss_is_clipped_around_old_values(policy_and_batch):
    policy, batch = policy_and_batch
    _, values = policy(batch.obs)
    batch.values = values.detach() - 1.0  # new values moved by +1 from the old ones
    loss = PPOLoss(policy, clip_range=0.2, value_loss_coef=1.0, entropy_coef=0.0)
    out = loss(batch)
    clipped = batch.values + 0.2
    expected = (
        0.5
        * torch.max(
            (values - batch.value_targets).pow(2), (clipped - batch.value_targets).pow(2)
        ).mean()
    )
    assert out.metrics["value_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    loss.clip_value_loss = False
    unclipped = 0.5 * (values - batch.value_targets).pow(2).mean()
    assert loss(batch).metrics["value_loss"].item() == pytest.approx(unclipped.item(), rel=1e-5)


def test_a2c_loss(policy_and_batch):
    policy, batch = policy_and_batch
    out = A2CLoss(policy, value_loss_coef=0.25, entropy_coef=0.1)(batch)
    dist, values = policy(batch.obs)
    expected = (
        -(dist.log_prob(batch.actions) * batch.advantages).mean()
        + 0.25 * 0.5 * (values - batch.value_targets).pow(2).mean()  # halved, as PPO's
        - 0.1 * dist.entropy().mean()
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_gaussian_policy_log_prob_and_clipped_env_actions():
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)
    act_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float32)
    policy = ActorCriticPolicy(make_model(obs_space, act_space), act_space)
    out = policy.act(torch.randn(64, 5))
    # logstd starts at 0: log N(a; mu, 1) summed over 2 dims.
    dist, _ = policy(torch.randn(1, 5))
    assert out["log_probs"].shape == (64,)
    env_actions = policy.env_actions(out["actions"] * 10)
    assert env_actions.min() >= -0.5 and env_actions.max() <= 0.5
    assert dist.entropy().item() == pytest.approx(
        2 * 0.5 * math.log(2 * math.pi * math.e), rel=1e-5
    )


def test_multidiscrete_policy():
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    act_space = gym.spaces.MultiDiscrete([3, 2])
    policy = ActorCriticPolicy(make_model(obs_space, act_space), act_space)
    out = policy.act(torch.randn(7, 3))
    assert out["actions"].shape == (7, 2) and out["log_probs"].shape == (7,)
    assert (out["actions"][:, 0] < 3).all() and (out["actions"][:, 1] < 2).all()
