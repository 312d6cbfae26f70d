"""DQN and Rainbow: the loss against hand values, noise per update, presets, bad input, learning."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import derl
from derl.alg.dqn import DQNLoss, make_target
from derl.cli import main
from derl.evaluate import evaluate
from derl.models import QNetwork, make_q_network
from derl.noisy import NoisyLinear
from derl.policies import EpsilonGreedyPolicy
from derl.types import Batch

OBS = gym.spaces.Box(-1, 1, (3,), np.float32)


def table_q(values):
    """A Q 'network' whose Q values are a fixed table indexed by obs[:, 0]."""
    table = torch.nn.Parameter(torch.tensor(values, dtype=torch.float32))
    head = torch.nn.Identity()

    class Lookup(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = table
            self.out_features = table.shape[1]

        def forward(self, obs):
            return self.table[obs[:, 0].long()]

    return QNetwork(Lookup(), head)


def batch(**kw):
    obs = torch.tensor([[0.0], [1.0]])
    return Batch(
        obs=obs,
        actions=torch.tensor([0, 1]),
        returns=torch.tensor([1.0, 2.0]),
        discounts=torch.tensor([0.5, 0.0]),
        next_obs=torch.tensor([[1.0], [0.0]]),
        weights=torch.ones(2),
        **kw,
    )


def test_double_q_target_uses_online_argmax_and_target_values():
    online = table_q([[1.0, 3.0], [4.0, 2.0]])
    target = table_q([[10.0, 20.0], [30.0, 40.0]])
    out = DQNLoss(online, target, double=True)(batch())
    # sample 0: next obs 1, online argmax there is action 0 -> target Q 30; 1 + 0.5 * 30 = 16
    # sample 1: terminated (discount 0): target 2. TD errors 16 - 1 and 2 - 2.
    assert out.td_errors.tolist() == pytest.approx([15.0, 0.0])
    huber = (15 - 0.5 + 0.0) / 2
    assert out.loss.item() == pytest.approx(huber)
    plain = DQNLoss(online, target, double=False)(batch())
    assert plain.td_errors[0].item() == pytest.approx(1 + 0.5 * 40 - 1)


def test_importance_weights_scale_the_loss():
    online, target = table_q([[1.0, 3.0], [4.0, 2.0]]), table_q([[0.0, 0.0], [0.0, 0.0]])
    weighted = batch().replace(returns=torch.tensor([2.0, 2.0]), weights=torch.tensor([0.5, 1.0]))
    out = DQNLoss(online, target)(weighted)
    # TD errors: 2 + 0.5 * 0 - 1 = 1 (Huber 0.5) and 2 - 2 = 0; weighted mean 0.5 * 0.5 / 2
    assert out.td_errors.tolist() == pytest.approx([1.0, 0.0])
    assert out.loss.item() == pytest.approx(0.125)


def test_distributional_loss_is_cross_entropy_to_the_projected_target():
    torch.manual_seed(0)
    net = make_q_network(OBS, 2, dueling=True, atoms=5, v_range=(-2, 2), hidden=(8, 8))
    target = make_target(net)
    b = Batch(
        obs=torch.randn(4, 3),
        actions=torch.tensor([0, 1, 1, 0]),
        returns=torch.tensor([0.0, 1.0, -1.0, 0.5]),
        discounts=torch.tensor([0.9, 0.0, 0.9, 0.0]),
        next_obs=torch.randn(4, 3),
        weights=torch.ones(4),
    )
    out = DQNLoss(net, target)(b)
    assert out.td_errors.shape == (4,) and torch.all(out.td_errors > 0)
    # A terminal sample's target is the point mass at its return: 1.0 sits on atom 3 of
    # [-2, -1, 0, 1, 2], so its cross-entropy is -log p(atom 3).
    log_p = net(b.obs).log_softmax(-1)[1, 1]
    assert out.td_errors[1].item() == pytest.approx(-log_p[3].item(), rel=1e-5)
    assert net.q_values(b.obs).shape == (4, 2)


def test_epsilon_is_decided_per_env_and_annealed_on_env_steps():
    net = make_q_network(OBS, 3, dueling=False, hidden=(8, 8))
    policy = EpsilonGreedyPolicy(net, 3, initial_eps=1.0, final_eps=0.0, exploration_steps=1000)
    np.random.seed(0)  # the CPU draws exploration from numpy's global generator
    actions = policy.act(torch.zeros(500, 3))["actions"]
    assert len(set(actions.tolist())) == 3  # random per env, not one coin for the batch
    assert policy.epsilon == pytest.approx(0.5)
    greedy = policy.act(torch.zeros(10, 3), deterministic=True)["actions"]
    assert len(set(greedy.tolist())) == 1 and policy.epsilon == pytest.approx(0.5)


def test_epsilon_greedy_explores_with_probability_epsilon_and_repeats_under_a_seed():
    net = make_q_network(OBS, 4, dueling=False, hidden=(8, 8))
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))  # greedy: action 2
    policy = EpsilonGreedyPolicy(net, 4, initial_eps=0.4, final_eps=0.4)
    np.random.seed(1)
    actions = policy.act(torch.zeros(20_000, 3))["actions"]
    assert actions.dtype == torch.long and actions.shape == (20_000,)
    counts = torch.bincount(actions, minlength=4).double() / len(actions)
    # explore with probability 0.4, then uniform over 4 actions: 0.1 each, greedy 0.6 + 0.1
    assert torch.allclose(
        counts, torch.tensor([0.1, 0.1, 0.7, 0.1], dtype=torch.double), atol=0.015
    )
    np.random.seed(1)
    assert torch.equal(policy.act(torch.zeros(20_000, 3))["actions"], actions)
    assert policy.num_steps == 40_000 and int(policy.state_dict()["steps"]) == 40_000


def test_exploring_steps_skip_the_q_network_and_epsilon_survives_a_reload():
    """While every env explores, no forward pass (on a GPU it would also wait for the device);
    epsilon reads a Python count of the steps, which loading a state reads back."""
    net = make_q_network(OBS, 3, dueling=False, hidden=(8, 8))
    policy = EpsilonGreedyPolicy(net, 3, initial_eps=1.0, final_eps=0.0, exploration_steps=100)
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    np.random.seed(0)
    out = policy.act(torch.zeros(4, 3))["actions"]
    assert calls == [] and out.device.type == "cpu" and policy.epsilon == pytest.approx(0.96)
    for _ in range(30):  # epsilon falls: the network answers some steps
        policy.act(torch.zeros(4, 3))
    assert calls and policy.epsilon == 0.0
    fresh = EpsilonGreedyPolicy(net, 3, initial_eps=1.0, final_eps=0.0, exploration_steps=1000)
    fresh.load_state_dict(policy.state_dict())
    assert fresh.num_steps == 124 and fresh.epsilon == pytest.approx(0.876)


def test_rainbow_resamples_noise_once_per_update(tmp_path):
    config = derl.make_config(
        "rainbow",
        "CartPole-v1",
        num_train_steps=600,
        learning_starts=300,
        train_freq=100,
        gradient_steps=2,
        logdir=str(tmp_path),
        device="cpu",
    )
    env = derl.env.make("CartPole-v1", 1, 0)
    alg = derl.factory.get_alg("rainbow").make(config, env, torch.device("cpu"))
    layer = next(m for m in alg.loss.q_network.modules() if isinstance(m, NoisyLinear))
    runner = iter(alg.runner)
    first = next(runner)
    before = layer.epsilon_in.clone()
    alg.loss.q_network(first.obs)  # a forward pass keeps the noise
    assert torch.equal(before, layer.epsilon_in)
    alg.step(first)  # an update draws new noise
    assert not torch.equal(before, layer.epsilon_in)
    env.close()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dqn", "--env-id", "Pendulum-v1"], "use sac, td3, ppo or a2c"),
        (
            ["rainbow", "--env-id", "CartPole-v1", "--atoms", "51", "--v-min", "5", "--v-max", "1"],
            "--v-min < --v-max",
        ),
    ],
)
def test_bad_input(argv, message, tmp_path, capsys):
    assert main([*argv, "--logdir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_dqn_solves_cartpole_with_its_final_agent(tmp_path):
    # CartPole-v1's preset (rl-zoo's recipe with double Q, a dueling head and 3-step returns),
    # 50k steps: the agent at the end of training must hold the pole, not only best.pt (the
    # zoo's recipe alone finds 500 and falls back to ~110 by the end).
    config = derl.make_config("dqn", "CartPole-v1", seed=0, device="cpu", logdir=str(tmp_path))
    assert config.num_train_steps == 50_000 and config.nstep == 3
    result = derl.train(config, progress=False)
    assert evaluate(derl.load(result.logdir), num_episodes=10).mean() >= 475


@pytest.mark.parametrize("alg", ["dqn", "rainbow"])
def test_resume_with_the_saved_buffer_equals_the_straight_run(tmp_path, alg):
    kw = dict(
        num_train_steps=1200,
        learning_starts=400,
        train_freq=100,
        gradient_steps=3,
        checkpoint_every=400,
        save_buffer=True,
        prioritized=True,
        nstep=3,
        device="cpu",
    )
    straight = derl.train(
        derl.make_config(alg, "CartPole-v1", logdir=str(tmp_path / "a"), **kw), progress=False
    )
    config = derl.make_config(alg, "CartPole-v1", logdir=str(tmp_path / "b"), **kw)
    assert derl.train(config, progress=False, stop_after=800).interrupted
    resumed = derl.resume(tmp_path / "b", progress=False)
    pairs = zip(
        straight.alg.loss.q_network.parameters(),
        resumed.alg.loss.q_network.parameters(),
        strict=True,
    )
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_noisy_nets_explore_with_new_noise_every_rollout_during_warm_up():
    config = derl.make_config(
        "rainbow", "CartPole-v1", num_train_steps=400, learning_starts=10_000, train_freq=100
    )
    env = derl.env.make("CartPole-v1", 1, 0)
    alg = derl.factory.get_alg("rainbow").make(config, env, torch.device("cpu"))
    layer = next(m for m in alg.loss.q_network.modules() if isinstance(m, NoisyLinear))
    seen = []
    alg.runner.hooks.append(lambda step: seen.append(layer.epsilon_in.clone()))
    for _ in alg.runner:  # every rollout is warm-up: no update ever runs
        pass
    env.close()
    assert len(seen) == 4
    assert all(not torch.equal(a, b) for a, b in zip(seen, seen[1:], strict=False))


def test_rainbow_atari_starts_learning_after_80k_frames():
    config = derl.make_config("rainbow", "BreakoutNoFrameskip-v4")
    assert config.learning_starts * 4 == 80_000  # agent steps at frame skip 4, as Hessel et al.


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
def test_rainbow_classic_support_holds_the_discounted_returns(env_id):
    """C51 learns nothing about values outside its support: every return of rewards in [-1, 1]
    (CartPole +1, Acrobot and MountainCar -1 a step) must lie in [v_min, v_max]. The support
    [0, 200] tuned on CartPole left Acrobot at -490 after 35k steps."""
    c = derl.make_config("rainbow", env_id)
    bound = 1 / (1 - c.gamma)  # |sum_t gamma^t r_t| <= 1 / (1 - gamma) for |r_t| <= 1
    assert c.atoms > 1 and c.v_min <= -bound and c.v_max >= bound


def test_loaded_noisy_agent_acts_as_evaluate_does(tmp_path):
    """derl.load(...).act takes the noisy layers' mean weights, as evaluate() and `derl eval`."""
    import derl
    from derl.guard import eval_mode

    config = derl.make_config(
        "rainbow",
        "CartPole-v1",
        num_train_steps=600,
        learning_starts=300,
        eval_every=0,
        logdir=str(tmp_path),
        seed=0,
    )
    derl.train(config, progress=False)
    agent = derl.load(tmp_path)
    obs = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    with eval_mode(agent.policy):
        expected = agent.policy.env_actions(agent.policy.act(torch.as_tensor(obs), True)["actions"])
    assert np.array_equal(agent.act(obs), expected)
    assert np.array_equal(agent.act(obs), expected)  # no fresh noise at each call
