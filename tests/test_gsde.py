"""gSDE (`--use-sde`): the state-dependent exploration of PPO and A2C on Box actions, against its
definition (Raffin et al. 2022, https://arxiv.org/abs/2005.05719)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal

import derl
from derl.cli import main
from derl.models import GSDEHead, make_model


def test_actions_are_the_mean_plus_features_times_each_envs_matrix():
    torch.manual_seed(0)
    head = GSDEHead(5, 2, num_envs=3, log_std_init=-1.0)
    head.resample()
    features = torch.randn(3, 5, requires_grad=True)
    dist = head(features)
    mean = head.mean(features)
    expected = mean + torch.stack([features[i] @ head.exploration[i] for i in range(3)])
    torch.testing.assert_close(dist.sample(), expected.detach())
    # The density: per dimension N(mean, z^2 @ sigma^2), sigma = exp(log std), summed over dims.
    actions = torch.randn(3, 2)
    std = ((features.detach() ** 2) @ head.logstd.exp() ** 2 + 1e-6).sqrt()
    torch.testing.assert_close(dist.log_prob(actions), Normal(mean, std).log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(), Normal(mean, std).entropy().sum(-1))
    # The features learn through the mean only; the log std matrix through the variance.
    dist.log_prob(actions).sum().backward()
    features_grad = features.grad.clone()
    features.grad = None
    head.mean(features).sum().backward()  # d mean / d features, for comparison
    assert head.logstd.grad is not None and head.logstd.grad.abs().sum() > 0
    assert not torch.allclose(features_grad, torch.zeros_like(features_grad))
    # A batch of another size (one evaluation env) shares the first env's matrix.
    one = head(features[:1].detach())
    torch.testing.assert_close(one.sample(), one.mean + features[:1].detach() @ head.exploration[0])


def test_the_matrices_are_redrawn_before_each_rollout_and_held_within_one(tmp_path):
    config = derl.make_config(
        "a2c", "Pendulum-v1", use_sde=True, num_envs=2, num_runner_steps=4, num_train_steps=16
    )
    env = derl.env.make("Pendulum-v1", 2, 0)
    from derl.factory.a2c import make_a2c

    alg = make_a2c(config, env, torch.device("cpu"))
    head = alg.runner.policy.model.head
    assert isinstance(head, GSDEHead) and head.exploration.shape == (2, 64, 1)
    seen = []
    for batch in alg.runner:  # A2C: a rollout of 4 steps x 2 envs, time-major; no training
        seen.append(head.exploration.clone())
        # Within the rollout the noise is z @ E with one E per env: the acts replay exactly.
        dist, _ = alg.runner.policy(batch.obs)
        noise = torch.bmm(dist.latent[:, None], head.exploration.repeat(4, 1, 1))[:, 0]
        torch.testing.assert_close(batch.actions, (dist.mean + noise).detach())
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_sde_sample_freq_redraws_every_k_steps_within_a_rollout():
    config = derl.make_config(
        "a2c",
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=2,
        num_envs=2,
        num_runner_steps=6,
        num_train_steps=24,
    )
    env = derl.env.make("Pendulum-v1", 2, 0)
    from derl.factory.a2c import make_a2c

    runner = make_a2c(config, env, torch.device("cpu")).runner
    head = runner.policy.model.head
    seen = []
    runner.policy.act = lambda obs, act=runner.policy.act: (
        seen.append(head.exploration.clone()) or act(obs)
    )
    for _ in runner:
        pass
    assert len(seen) == 12  # two rollouts of 6 steps; new matrices at steps 0, 2, 4 of each
    for t, matrices in enumerate(seen):
        assert torch.equal(matrices, seen[t - 1]) == (t % 2 == 1), t


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--use-sde", "--sde-sample-freq", "0"], "--sde-sample-freq must be -1"),
        (["--sde-sample-freq", "4"], "--sde-sample-freq needs --use-sde"),
    ],
)
def test_sde_sample_freq_is_checked(flags, message, tmp_path, capsys):
    argv = ["ppo", "--env-id", "Pendulum-v1", *flags, "--logdir", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_use_sde_needs_box_actions(tmp_path, capsys):
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(derl.UsageError, match="Box"):
        make_model(space, gym.spaces.Discrete(2), sde_envs=4)
    argv = ["ppo", "--env-id", "CartPole-v1", "--use-sde", "--logdir", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--use-sde needs a 1-D Box action space" in err
