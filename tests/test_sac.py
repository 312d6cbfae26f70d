"""SAC: the losses against their formulas, Polyak targets, the random warm-up, checkpoints and
resume, refusals, and learning Pendulum-v1 (~1.5 min on 2 shared CPU cores)."""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_same

import derl
import derl.env
from derl import checkpoint
from derl.alg.sac import (
    actor_loss,
    critic_loss,
    soft_q_target,
    temperature_loss,
)
from derl.errors import UsageError
from derl.evaluate import evaluate
from derl.factory.config import build_config
from derl.factory.sac import PRESETS, SACConfig, make_sac
from derl.noise import pink_noise
from derl.policies import SACPolicy
from derl.train import resume
from derl.types import Batch


@pytest.fixture(autouse=True)
def single_thread(one_thread):
    yield


def config(**overrides) -> SACConfig:
    small = dict(hidden="32,32", batch_size=16, learning_starts=50, num_train_steps=200)
    kw = {"env_id": "Pendulum-v1", "device": "cpu", **small, **overrides}
    return build_config(SACConfig, PRESETS["classic"], **kw)


def make(cfg: SACConfig | None = None):
    cfg = cfg or config()
    torch.manual_seed(cfg.seed)
    env = derl.env.make(cfg.env_id, cfg.num_envs, cfg.seed)
    return make_sac(cfg, env, torch.device("cpu"))


def synthetic_batch(size: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(size, 3, generator=g),
        actions=4 * torch.rand(size, 1, generator=g) - 2,
        returns=torch.randn(size, generator=g),
        discounts=torch.where(torch.rand(size, generator=g) < 0.3, 0.0, 0.99),
        next_obs=torch.randn(size, 3, generator=g),
        weights=torch.rand(size, generator=g),
    )


# -- the losses --------------------------------------------------------------------------------


def test_losses_by_hand():
    t = torch.tensor
    target = soft_q_target(
        t([1.0, 2.0]), t([0.99, 0.0]), t([3.0, 5.0]), t([4.0, 1.0]), t([-1.0, 2.0]), 0.5
    )
    torch.testing.assert_close(target, t([1 + 0.99 * (3 + 0.5), 2.0]))
    loss = critic_loss(t([1.0, 2.0]), t([0.0, 4.0]), t([1.0, 1.0]), t([1.0, 0.5]))
    torch.testing.assert_close(loss, t(0.5 * (1 * (0 + 1) + 0.5 * (1 + 9)) / 2))
    loss = actor_loss(t([-1.0, 1.0]), t([2.0, 3.0]), t([1.0, 5.0]), 0.2)
    torch.testing.assert_close(loss, t(((-0.2 - 1) + (0.2 - 3)) / 2))


def test_temperature_falls_when_entropy_is_above_target():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_prob = torch.tensor([-1.0, 1.0], requires_grad=True)  # entropy 0 > target -1
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-math.log(0.5) * (-1.0)))
    assert log_alpha.grad > 0  # gradient descent lowers alpha
    assert log_prob.grad is None  # the entropy term is a constant for the temperature


def test_critic_update_is_the_weighted_soft_bellman_error():
    alg, batch = make(), synthetic_batch()
    policy, critic, target = (copy.deepcopy(m) for m in (alg.policy, alg.critic, alg.target_critic))
    alpha = alg.alpha.clone()
    torch.manual_seed(1)
    metrics = alg.update_critic(batch)
    torch.manual_seed(1)  # the same a' ~ pi(s')
    with torch.no_grad():
        next_actions, next_log_prob = policy(batch.next_obs).rsample_with_log_prob()
        y = batch.returns + batch.discounts * (
            torch.min(*target(batch.next_obs, next_actions)) - alpha * next_log_prob
        )
        q1, q2 = critic(batch.obs, batch.actions)
        expected = (batch.weights * ((q1 - y) ** 2 + (q2 - y) ** 2)).mean() / 2
    torch.testing.assert_close(metrics["critic_loss"], expected)
    torch.testing.assert_close(metrics["q1"], q1.mean())
    for a, b in zip(critic.parameters(), alg.critic.parameters(), strict=True):
        assert not torch.equal(a, b)
    for a, b in zip(policy.parameters(), alg.policy.parameters(), strict=True):
        assert torch.equal(a, b)  # the critic update leaves the actor alone


def test_actor_update_moves_only_the_actor_and_alpha():
    alg, batch = make(), synthetic_batch()
    critic, policy = copy.deepcopy(alg.critic), copy.deepcopy(alg.policy)
    log_alpha = alg.log_alpha.detach().clone()
    torch.manual_seed(2)
    metrics = alg.update_actor(batch.obs)
    torch.manual_seed(2)
    with torch.no_grad():
        actions, log_prob = policy(batch.obs).rsample_with_log_prob()
        expected = (log_alpha.exp() * log_prob - torch.min(*critic(batch.obs, actions))).mean()
    torch.testing.assert_close(metrics["actor_loss"], expected)
    torch.testing.assert_close(metrics["entropy"], -log_prob.mean())
    assert all(p.grad is None for p in alg.critic.parameters())  # no wasted critic gradients
    for a, b in zip(critic.parameters(), alg.critic.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(alg.log_alpha.detach(), log_alpha)


def test_fixed_temperature_stays_fixed():
    alg = make(config(autotune=False, alpha=0.2))
    metrics = alg.step(synthetic_batch())
    assert "alpha_loss" not in metrics
    torch.testing.assert_close(alg.alpha, torch.tensor(0.2))


def test_target_update_is_polyak_averaging():
    alg = make(config(tau=0.1))
    with torch.no_grad():
        for p in alg.critic.parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in alg.critic.parameters()]
    old = [p.clone() for p in alg.target_critic.parameters()]
    alg.update_target()
    for new, o, t in zip(alg.target_critic.parameters(), online, old, strict=True):
        torch.testing.assert_close(new, 0.9 * t + 0.1 * o)


def test_policy_frequency_delays_and_repeats_actor_updates():
    alg = make(config(policy_frequency=2))
    batch = synthetic_batch()
    assert "actor_loss" not in alg.step(batch)
    assert "actor_loss" in alg.step(batch)
    assert alg.actor_optimizer.state[alg.policy.net[0].weight]["step"] == 2


# -- acting ------------------------------------------------------------------------------------


def test_random_warmup_fills_the_box_then_the_policy_acts():
    box = gym.spaces.Box(np.float32([-1.0, 0.0]), np.float32([3.0, 0.5]))
    policy = SACPolicy(obs_dim=3, action_space=box, hidden=(16, 16), random_steps=10_000)
    obs = torch.randn(5_000, 3)
    warmup = torch.cat([policy.act(obs)["actions"], policy.act(obs)["actions"]])
    low, high = torch.tensor(box.low), torch.tensor(box.high)
    assert ((warmup >= low) & (warmup <= high)).all()
    torch.testing.assert_close(warmup.mean(0), (low + high) / 2, atol=0.05, rtol=0)
    torch.testing.assert_close(warmup.std(0), (high - low) / math.sqrt(12), atol=0.02, rtol=0)
    assert int(policy.steps_acted) == 10_000
    torch.manual_seed(3)
    actions = policy.act(obs[:4])["actions"]  # warm-up over: sampled from the actor
    torch.manual_seed(3)
    torch.testing.assert_close(actions, policy(obs[:4]).rsample().detach())
    assert ((actions >= low) & (actions <= high)).all()


def test_a_loaded_state_sets_the_warmup_back():
    # Past the warm-up the count is no longer read (a device sync per step on CUDA); a state
    # loaded from before the end of the warm-up must bring the random actions back.
    box = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    policy = SACPolicy(3, box, (16, 16), random_steps=4)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    obs = torch.randn(4, 3)
    policy.act(obs)
    policy.act(obs)
    assert policy.warmed_up and int(policy.steps_acted) == 8
    policy.load_state_dict(before)
    torch.manual_seed(5)
    random = policy.act(obs)["actions"]
    torch.manual_seed(5)
    torch.testing.assert_close(random, -1 + 2 * torch.rand(4, 1))
    assert int(policy.steps_acted) == 4


def test_deterministic_and_eval_acts_do_not_use_up_the_warmup():
    box = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    policy = SACPolicy(3, box, (16, 16), random_steps=100)
    obs = torch.randn(4, 3)
    torch.testing.assert_close(policy.act(obs, True)["actions"], policy(obs).mode.detach())
    policy.eval()
    torch.manual_seed(4)
    sampled = policy.act(obs)["actions"]
    torch.manual_seed(4)
    torch.testing.assert_close(sampled, policy(obs).rsample().detach())
    assert int(policy.steps_acted) == 0
    assert policy.env_actions(torch.tensor([[2.5], [-1.0]])).tolist() == [[2.0], [-1.0]]


# -- checkpoints --------------------------------------------------------------------------------


def test_state_dict_round_trip_through_a_checkpoint_restores_everything(tmp_path):
    trained = make(config(num_train_steps=150))
    trained.learn()
    assert trained.num_updates == 101  # one after each env step from learning_starts=50 to 150
    assert int(trained.policy.steps_acted) == 150
    state = trained.state_dict()
    assert {"policy", "runner", "critic", "target_critic", "log_alpha"} <= state.keys()
    assert state["runner"]["replay"] is not None  # the replay buffer rides with the runner
    checkpoint.save({"format": 1, "state": state}, tmp_path / "sac.pt")
    fresh = make(config(seed=1))
    fresh.load_state_dict(checkpoint.load(tmp_path / "sac.pt")["state"])
    assert_same(fresh.state_dict(), trained.state_dict())
    a, b = trained.runner.storage.sample(32), fresh.runner.storage.sample(32)
    assert_same(a, b)  # same transitions, same sampling rng


@pytest.mark.parametrize("noise_type", ["normal", "pink"])
def test_resumed_run_equals_straight_run(tmp_path, noise_type):
    kw = dict(
        num_train_steps=500, learning_starts=100, checkpoint_every=10_000, noise_type=noise_type
    )
    straight = derl.train(config(logdir=str(tmp_path / "a"), **kw), progress=False)
    first = derl.train(config(logdir=str(tmp_path / "b"), **kw), progress=False, stop_after=250)
    assert first.interrupted and first.env_steps == 250
    second = resume(tmp_path / "b", progress=False)
    assert second.env_steps == straight.env_steps == 500
    resumed, expected = second.alg.state_dict(), straight.alg.state_dict()
    for state in (resumed, expected):  # env states hold wall-clock episode start times
        del state["runner"]["env_states"]
    assert_same(resumed, expected)
    assert second.recent_returns == straight.recent_returns
    agent = derl.load(tmp_path / "b")  # rebuilds the actor from the registry's make_policy
    obs = np.zeros(3, np.float32)
    expected = straight.alg.policy.act(torch.as_tensor(obs)[None], True)["actions"][0]
    np.testing.assert_array_equal(agent.act(obs), expected.numpy())


def test_pink_noise_has_unit_variance_and_a_1_over_f_spectrum():
    torch.manual_seed(0)
    for steps in (1000, 999):
        x = pink_noise((2000,), steps)
        assert x.shape == (2000, steps)
        assert abs(float(x.var()) - 1) < 0.03 and abs(float(x.mean())) < 0.03
    power = (torch.fft.rfft(x).abs() ** 2).mean(0)[2:400]  # per frequency, averaged
    log_f = torch.fft.rfftfreq(999)[2:400].log()
    slope = torch.linalg.lstsq(
        torch.stack([log_f, torch.ones_like(log_f)], 1), power.log()[:, None]
    )
    assert abs(float(slope.solution[0]) + 1) < 0.05  # power ~ f^-1: pink; white noise gives 0
    # Correlated in time: a step's value predicts the next one's (white noise: 0).
    assert float((x[:, 1:] * x[:, :-1]).mean()) > 0.6


def test_pink_noise_acts_one_step_of_a_sequence_per_env():
    box = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    policy = SACPolicy(3, box, (8,), noise_type="pink", num_envs=4)
    obs = torch.randn(4, 3)
    torch.manual_seed(0)
    actions = torch.stack([policy.act(obs)["actions"] for _ in range(3)])
    torch.manual_seed(0)
    block = pink_noise((4, 2), 1000)  # the first block, drawn at the first act
    dist = policy(obs)
    for t in range(3):
        expected = dist.squash(dist.loc + dist.log_std.exp() * block[:, :, t]).detach()
        torch.testing.assert_close(actions[t], expected)
    assert int(policy.state_dict()["pink.position"]) == 3
    assert "pink.block" not in SACPolicy(3, box, (8,)).state_dict()
    fresh = SACPolicy(3, box, (8,), noise_type="pink", num_envs=4)
    fresh.load_state_dict(policy.state_dict())  # a resumed run continues the same sequences
    torch.testing.assert_close(fresh.act(obs)["actions"], policy.act(obs)["actions"])
    # Another batch size (a stochastic `derl eval` of one env) gets sequences of its own, which
    # neither touch training's nor enter the state dict.
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    policy.eval()  # as derl eval acts (a training-mode act would count its warm-up steps)
    one = torch.stack([policy.act(obs[:1])["actions"] for _ in range(5)])
    policy.train()
    assert one.shape == (5, 1, 2) and one.std(0).min() > 0
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(value, state[key])
    torch.testing.assert_close(fresh.act(obs)["actions"], policy.act(obs)["actions"])


def test_pink_noise_is_a_choice_of_the_config():
    assert derl.make_config("sac", "Pendulum-v1").noise_type == "normal"
    with pytest.raises(UsageError, match="noise"):
        derl.make_config("sac", "Pendulum-v1", noise_type="ou")


# -- refusals -----------------------------------------------------------------------------------


def test_discrete_actions_are_refused():
    cfg = config(env_id="CartPole-v1")
    env = derl.env.make(cfg.env_id, 1, 0)
    with pytest.raises(UsageError, match=r"sac needs a continuous \(Box\) action space"):
        make_sac(cfg, env, torch.device("cpu"))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(tau=0.0), "--tau"),
        (dict(batch_size=0), "--batch-size"),
        (dict(buffer_size=8, batch_size=16), "--batch-size must be <= --buffer-size"),
        (dict(q_lr=-1.0), "--q-lr"),
        (dict(alpha=0.0), "--alpha"),
        (dict(learning_starts=-1), "--learning-starts"),
    ],
)
def test_bad_values_are_usage_errors(bad, message):
    with pytest.raises(UsageError, match=message):
        config(**bad)


# -- learning -----------------------------------------------------------------------------------


def test_sac_solves_pendulum(tmp_path):
    """The classic preset: mean deterministic return >= -250 (random: ~-1200) within 15k steps."""
    cfg = build_config(
        SACConfig,
        PRESETS["classic"],
        env_id="Pendulum-v1",
        seed=0,
        device="cpu",
        num_train_steps=8_000,
        logdir=str(tmp_path / "run"),
    )
    result = derl.train(cfg, progress=False)
    returns = evaluate(result.agent, num_episodes=5)
    assert returns.mean() >= -250, returns
