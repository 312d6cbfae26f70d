"""TD3: target smoothing, delayed actor and target updates, resume, refusals, and learning
Pendulum-v1 (about a minute on 2 CPU cores)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_same

import derl
import derl.env
from derl.errors import UsageError
from derl.evaluate import evaluate
from derl.factory import ALGS, TD3Config
from derl.factory.config import build_config
from derl.factory.td3 import PRESETS
from derl.policies import TD3Policy
from derl.train import resume


def config(env_id="Pendulum-v1", **overrides):
    small = dict(
        hidden="32,32", batch_size=16, learning_starts=50, num_train_steps=200, device="cpu"
    )
    return derl.make_config("td3", env_id, **{**small, **overrides})


def make(cfg):
    torch.manual_seed(cfg.seed)
    env = derl.env.make(cfg.env_id, 1, cfg.seed)
    return ALGS["td3"].make(cfg, env, torch.device("cpu"))


def test_noise_is_clipped_and_actions_stay_in_the_box():
    box = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    policy = TD3Policy(3, box, (8,))
    actions = torch.tensor([[0.0, 0.5]]).repeat(10_000, 1)
    smoothed = policy.noisy(actions, scale=10.0, clip=0.5)  # half-widths: 2 and 0.5
    assert torch.allclose(smoothed.abs().max(0).values, torch.tensor([1.0, 0.75]))
    noisy = policy.noisy(actions + torch.tensor([1.9, 0.4]), scale=1.0)  # near the top
    assert (noisy <= policy.high).all() and (noisy >= policy.low).all()
    assert noisy[:, 0].std() > 0.1


def test_ou_noise_follows_its_recurrence_per_env_and_stays_in_the_box():
    box = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    policy = TD3Policy(3, box, (8,), exploration_noise=0.5, noise_type="ou", num_envs=4)
    obs = torch.randn(4, 3)
    torch.manual_seed(0)
    first, second = (policy.act(obs)["actions"] for _ in range(2))
    torch.manual_seed(0)
    x = torch.zeros(4, 2)
    for actions in (first, second):  # x <- x - theta x dt + sigma sqrt(dt) N(0, 1)
        x = x - 0.15 * 0.01 * x + 0.5 * 0.01**0.5 * torch.randn(4, 2)
        half = torch.tensor([2.0, 0.5])
        expected = torch.clamp(policy(obs) + x * half, policy.low, policy.high).detach()
        torch.testing.assert_close(actions, expected)
    torch.testing.assert_close(policy.ou_state, x)  # in the state dict: a resume continues it
    assert "ou_state" in policy.state_dict() and "ou_state" not in TD3Policy(3, box).state_dict()
    # Correlated in time: consecutive values of one env are close, envs are independent.
    for _ in range(2_000):
        policy.act(obs)
    before = policy.ou_state.clone()
    policy.act(obs)
    assert (policy.ou_state - before).abs().max() < 0.25 < before.std()
    # Another batch size (a stochastic `derl eval` of one env): processes of its own, apart
    # from training's, which stays as it was.
    before = policy.ou_state.clone()
    assert policy.act(obs[:2])["actions"].shape == (2, 2) and policy.other_ou[2].abs().sum() > 0
    torch.testing.assert_close(policy.ou_state, before)
    assert set(policy.state_dict()) == set(TD3Policy(3, box, (8,), noise_type="ou").state_dict())


def test_ou_noise_is_a_choice_of_the_config_and_the_mountaincar_preset():
    assert derl.make_config("td3", "MountainCarContinuous-v0").noise_type == "ou"
    assert derl.make_config("td3", "Pendulum-v1").noise_type == "normal"
    with pytest.raises(UsageError, match="noise"):
        derl.make_config("td3", "Pendulum-v1", noise_type="pink")


def test_actor_and_targets_move_only_every_policy_frequency_updates():
    alg = make(config(policy_frequency=3))
    batch = next(iter(alg.runner))
    snapshots = []
    for _ in range(6):
        before = [p.clone() for p in (*alg.policy.parameters(), *alg.target_critic.parameters())]
        metrics = alg.step(batch)
        after = [*alg.policy.parameters(), *alg.target_critic.parameters()]
        moved = any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
        snapshots.append((moved, "actor_loss" in metrics))
    assert snapshots == [(False, False), (False, False), (True, True)] * 2


@pytest.mark.parametrize("noise_type", ["normal", "ou"])
def test_resumed_run_equals_straight_run(tmp_path, noise_type):
    kw = dict(
        num_train_steps=400, learning_starts=100, checkpoint_every=10_000, noise_type=noise_type
    )
    straight = derl.train(config(logdir=str(tmp_path / "a"), **kw), progress=False)
    first = derl.train(config(logdir=str(tmp_path / "b"), **kw), progress=False, stop_after=200)
    assert first.interrupted
    second = resume(tmp_path / "b", progress=False)
    resumed, expected = second.alg.state_dict(), straight.alg.state_dict()
    for state in (resumed, expected):  # env states hold wall-clock episode start times
        del state["runner"]["env_states"]
    assert_same(resumed, expected)
    agent, obs = derl.load(tmp_path / "b"), np.zeros(3, np.float32)
    expected = straight.alg.policy.act(torch.as_tensor(obs)[None], True)["actions"][0]
    np.testing.assert_array_equal(agent.act(obs), expected.numpy())


def test_discrete_actions_are_refused():
    env = derl.env.make("CartPole-v1", 1, 0)
    with pytest.raises(UsageError, match=r"td3 needs a continuous \(Box\) action space"):
        ALGS["td3"].make(config(env_id="CartPole-v1"), env, torch.device("cpu"))


@pytest.mark.parametrize(
    "bad, message",
    [(dict(tau=0.0), "--tau"), (dict(noise_clip=-1.0), "--noise-clip"), (dict(lr=0), "--lr")],
)
def test_bad_values_are_usage_errors(bad, message):
    with pytest.raises(UsageError, match=message):
        config(**bad)


def test_td3_solves_pendulum(tmp_path):
    """The classic preset: mean deterministic return >= -250 (random play: ~-1200) in 15k steps."""
    # derl's classic preset (quick here); `derl td3 --env-id Pendulum-v1` gets rl-zoo's env preset.
    # Its whole budget: 8k of its 15k steps (seeds 0-4: -103, -102, -102, -104, -131 on 2026-12-06)
    # failed on the machine of 2026-12-07, whose matrix kernels round differently (README "Re-run
    # on another machine"): seed 0 at -425.7, two of five episodes never swung up. At 15k there
    # seeds 0-2 ended at -97.5, -98.3 and -98.2 (5 deterministic episodes).
    cfg = build_config(
        TD3Config,
        PRESETS["classic"],
        env_id="Pendulum-v1",
        seed=0,
        device="cpu",
        logdir=str(tmp_path / "run"),
    )
    result = derl.train(cfg, progress=False)
    returns = evaluate(result.agent, num_episodes=5)
    assert returns.mean() >= -250, returns
