"""Runner plumbing with a constant-value policy on a tiny counting env."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

from derl.errors import UsageError
from derl.models import make_model
from derl.policies import ActorCriticPolicy
from derl.runners import GAE, EnvRunner, MergeTimeBatch, Minibatches, Transform


class Counter(gym.Env):
    """obs = steps taken; reward 1; terminates after `terminate_at` steps; not registered."""

    observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_at=100):
        self.terminate_at = terminate_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= self.terminate_at, False, {}


class ConstantPolicy(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.v = value

    def act(self, obs, deterministic=False):
        n = obs.shape[0]
        return {
            "actions": torch.zeros(n, dtype=torch.long),
            "log_probs": torch.zeros(n),
            "values": torch.full((n,), self.v),
        }

    def env_actions(self, actions):
        return actions.numpy()

    def value(self, obs):
        return torch.full((obs.shape[0],), self.v)


class Log:
    def __init__(self):
        self.episodes = []

    def episode(self, ret, length, step):
        self.episodes.append((ret, length, step))


def make_env(terminate_at, time_limit):
    fns = [lambda: RecordEpisodeStatistics(TimeLimit(Counter(terminate_at), time_limit))] * 2
    env = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    return env


def test_rollout_shapes_counts_and_truncation():
    log = Log()
    runner = EnvRunner(
        make_env(terminate_at=100, time_limit=4),
        ConstantPolicy(2.0),
        num_steps=6,
        num_train_steps=12,
        logger=log,
    )
    rollouts = list(runner)
    assert len(rollouts) == 1 and runner.step_count == 12
    steps = rollouts[0].steps
    assert steps.obs.shape == (6, 2, 1) and steps.rewards.shape == (6, 2)
    # Time limit after 4 steps: step index 3 is truncated; the next obs is a reset obs (0).
    assert steps.truncated[:, 0].tolist() == [0, 0, 0, 1, 0, 0]
    assert steps.terminated.sum() == 0
    assert steps.obs[:, 0, 0].tolist() == [0, 1, 2, 3, 0, 1]
    assert rollouts[0].final_index.tolist() == [[3, 0], [3, 1]]
    assert rollouts[0].final_obs[:, 0].tolist() == [4.0, 4.0]  # the real last observation
    assert [(r, n) for r, n, _ in log.episodes] == [(4.0, 4), (4.0, 4)]


def test_gae_bootstraps_truncation_but_not_termination():
    gamma = 0.5
    for terminate_at, time_limit, bootstrap in ((3, 100, False), (100, 3, True)):
        policy = ConstantPolicy(2.0)
        runner = EnvRunner(make_env(terminate_at, time_limit), policy, 4, 8)
        rollout = GAE(policy, gamma, lam=1.0)(next(iter(runner)))
        adv = rollout.steps.advantages[:, 0]
        # step 2 ends the episode: delta = 1 + gamma * (2 if truncated else 0) - 2
        assert adv[2].item() == pytest.approx(1 + gamma * 2 * bootstrap - 2)
        # step 3 starts a new episode and bootstraps from V(last_obs)=2
        assert adv[3].item() == pytest.approx(1 + gamma * 2 - 2)


def test_minibatches_cover_the_batch_each_epoch():
    policy = ConstantPolicy(0.0)
    runner = EnvRunner(make_env(100, 100), policy, 8, 16)
    runner = Minibatches(Transform(runner, [GAE(policy), MergeTimeBatch()]), 2, 4)
    batches = list(runner)
    assert len(batches) == 8 and all(len(b) == 4 for b in batches)
    first_epoch = torch.cat([b.obs[:, 0] for b in batches[:4]]).sort().values
    assert first_epoch.tolist() == sorted([float(t) for t in range(8)] * 2)


def test_recomputed_advantages_follow_the_critic_from_epoch_to_epoch():
    # The critic changes between epochs (as PPO's updates change it); with recompute_values
    # each epoch's batch carries the values and advantages of the critic as that epoch finds it.
    policy = ConstantPolicy(2.0)
    runner = EnvRunner(make_env(100, 100), policy, 4, 8)
    gae = GAE(policy, gamma=0.5, lam=1.0, recompute_values=True)
    epochs = Minibatches(runner, 3, 1, per_epoch=[gae, MergeTimeBatch()])
    seen = []
    for batch in epochs:
        seen.append((batch.values.unique().tolist(), batch.advantages.clone()))
        policy.v += 1.0  # "the update"
    assert [values for values, _ in seen] == [[2.0], [3.0], [4.0]]
    # No episode ends: the last step bootstraps from V(last_obs) = v, the others from v too:
    # every delta is 1 + 0.5 v - v, and the advantages differ from epoch to epoch.
    for v, (_, adv) in zip((2.0, 3.0, 4.0), seen, strict=True):
        delta = 1 + 0.5 * v - v
        assert adv.view(4, 2)[-1].tolist() == [pytest.approx(delta)] * 2
    # Without it, the values of acting time stay in every epoch's batch.
    policy = ConstantPolicy(2.0)
    once = Minibatches(
        Transform(EnvRunner(make_env(100, 100), policy, 4, 8), [GAE(policy), MergeTimeBatch()]),
        3,
        1,
    )
    values = []
    for batch in once:
        values.append(batch.values.unique().tolist())
        policy.v += 1.0
    assert values == [[2.0], [2.0], [2.0]]


def test_runner_refuses_a_next_step_autoreset_vector_env():
    env = gym.make_vec("CartPole-v1", 2)  # gymnasium's default: NEXT_STEP autoreset
    policy = ActorCriticPolicy(
        make_model(env.single_observation_space, env.single_action_space), env.single_action_space
    )
    with pytest.raises(UsageError, match="autoreset_mode is NEXT_STEP.*SAME_STEP"):
        EnvRunner(env, policy, num_steps=4, num_train_steps=8)
    env.close()
    same = SyncVectorEnv(
        [lambda: gym.make("CartPole-v1")] * 2, autoreset_mode=AutoresetMode.SAME_STEP
    )
    EnvRunner(same, policy, num_steps=4, num_train_steps=8)  # accepted
    same.close()
