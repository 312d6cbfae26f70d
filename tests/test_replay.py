"""Experience replay: n-step targets across terminations and truncations, frames stored once,
priorities, memory refusal."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import FrameStackObservation, TimeLimit

from derl.errors import UsageError
from derl.runners import EnvRunner
from derl.runners.replay import ExperienceReplay, ReplayStorage


class Count(gym.Env):
    """obs = [t]; the step from obs t earns reward t + 1; terminates at `terminate_at`."""

    observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_at=100):
        self.terminate_at = terminate_at

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.array([0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), float(self.t), self.t >= self.terminate_at, False, {}


class Frames(gym.Env):
    """3x3 uint8 frames whose value encodes (episode, t) as 8 * episode + t; episodes of 6."""

    observation_space = gym.spaces.Box(0, 255, (3, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode = -1

    def frame(self):
        return np.full((3, 3), 8 * self.episode + self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        self.episode, self.t = self.episode + 1, 0
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        return self.frame(), 0.0, self.t >= 6, False, {}


class FirstAction(torch.nn.Module):
    def act(self, obs):
        return {"actions": torch.zeros(obs.shape[0], dtype=torch.long)}

    def env_actions(self, actions):
        return actions.numpy()


def vector(fns):
    env = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    return env


def filled_storage(env, nstep, gamma, steps=12, capacity=1000):
    storage = ReplayStorage(
        env.single_observation_space,
        env.single_action_space,
        env.num_envs,
        capacity,
        nstep=nstep,
        gamma=gamma,
    )
    for rollout in EnvRunner(env, FirstAction(), num_steps=steps // 2, num_train_steps=steps):
        storage.add_rollout(rollout)
    return storage


def test_nstep_targets_stop_at_terminations_and_bootstrap_truncations():
    g = 0.5
    env = vector([lambda: Count(terminate_at=5), lambda: TimeLimit(Count(), 4)])
    storage = filled_storage(env, nstep=3, gamma=g)
    batch = storage.get(storage.complete_indices())
    found = {}
    for env_id, obs, ret, disc, nxt in zip(
        batch["indices"] // storage.per_env,
        batch["obs"][:, 0],
        batch["returns"],
        batch["discounts"],
        batch["next_obs"][:, 0],
        strict=True,
    ):
        found.setdefault((int(env_id), float(obs)), (float(ret), float(disc), float(nxt)))
    # env 0 terminates after 5 steps (rewards 1..5): no bootstrap across the termination.
    assert found[(0, 0.0)] == pytest.approx((1 + g * 2 + g * g * 3, g**3, 3.0))
    assert found[(0, 3.0)][:2] == pytest.approx((4 + g * 5, 0.0))
    assert found[(0, 4.0)][:2] == pytest.approx((5.0, 0.0))
    # env 1 is cut by a time limit after 4 steps: bootstrap from the real final observation [4].
    assert found[(1, 2.0)] == pytest.approx((3 + g * 4, g**2, 4.0))
    assert found[(1, 3.0)] == pytest.approx((4.0, g, 4.0))
    assert found[(1, 1.0)] == pytest.approx((2 + g * 3 + g * g * 4, g**3, 4.0))


def test_the_newest_steps_wait_until_their_window_is_complete():
    env = vector([lambda: Count()])
    storage = filled_storage(env, nstep=3, gamma=0.9, steps=6)
    obs = sorted(storage.get(storage.complete_indices())["obs"][:, 0].tolist())
    assert obs == [0.0, 1.0, 2.0, 3.0]  # steps from obs 4 and 5 lack their 3rd reward


def test_frames_are_stored_once_and_stacks_rebuilt_across_resets():
    env = vector([lambda: FrameStackObservation(Frames(), 4)] * 2)
    storage = filled_storage(env, nstep=1, gamma=0.99, steps=40)
    assert storage.frame_stack and storage.columns["obs"].shape[2:] == (3, 3)
    batch = storage.get(storage.complete_indices())
    for obs, nxt, disc in zip(batch["obs"], batch["next_obs"], batch["discounts"], strict=True):
        value = int(obs[-1, 0, 0])
        episode, t = divmod(value, 8)
        expected = [8 * episode + max(t - j, 0) for j in (3, 2, 1, 0)]
        assert obs[:, 0, 0].tolist() == expected
        if disc > 0:
            assert nxt[:, 0, 0].tolist() == [8 * episode + max(t + 1 - j, 0) for j in (3, 2, 1, 0)]


def test_eviction_keeps_every_sampled_stack_whole():
    env = vector([lambda: FrameStackObservation(Frames(), 4)])
    storage = filled_storage(env, nstep=1, gamma=0.99, steps=120, capacity=32)
    assert len(storage) <= 32
    for obs in storage.get(storage.complete_indices())["obs"]:
        episode, t = divmod(int(obs[-1, 0, 0]), 8)
        assert obs[:, 0, 0].tolist() == [8 * episode + max(t - j, 0) for j in (3, 2, 1, 0)]


def test_atari_frames_cost_about_7_kb_a_transition():
    import derl.env

    env = derl.env.make("BreakoutNoFrameskip-v4", num_envs=1)
    storage = ReplayStorage(env.single_observation_space, env.single_action_space, 1, 10_000)
    per_transition = storage.nbytes / 10_000
    assert storage.bytes_per_transition == pytest.approx(per_transition, rel=0.01)
    assert 7_000 < per_transition < 7_200  # one 84x84 frame; a 4-frame stack would be 28 KB
    env.close()


def test_a_buffer_that_does_not_fit_is_refused_with_its_size():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with pytest.raises(UsageError, match=r"needs \d+\.\d GiB"):
        ReplayStorage(space, gym.spaces.Discrete(4), 1, 10**11)


def test_prioritized_replay_enters_at_max_and_samples_in_proportion():
    env = vector([lambda: Count()])
    storage = filled_storage(env, nstep=1, gamma=0.9, steps=8)
    indices = storage.complete_indices()
    assert np.all(storage.tree.priorities(indices) == 1.0)  # the running max so far
    storage.update_priorities(indices, np.arange(1, len(indices) + 1, dtype=float))
    assert storage.max_priority == len(indices)
    storage.update_priorities(indices[:1], np.array([0.0]))
    assert storage.tree.priorities(indices[:1])[0] > 0  # never stuck at 0
    counts = np.bincount(storage.sample(20_000, beta=0.5)["indices"], minlength=len(storage.tree))
    probs = storage.tree.priorities(indices) / storage.tree.total
    assert counts[indices] / 20_000 == pytest.approx(probs, abs=0.01)
    weights = storage.sample(64, beta=0.5)["weights"]
    assert weights.max() == pytest.approx(1.0) and weights.min() > 0


def test_experience_replay_wrapper_yields_batches_after_learning_starts():
    env = vector([lambda: Count(), lambda: Count()])
    runner = EnvRunner(env, FirstAction(), num_steps=1, num_train_steps=40)
    storage = ReplayStorage(env.single_observation_space, env.single_action_space, 2, 100)
    replay = ExperienceReplay(runner, storage, batch_size=4, learning_starts=10, alpha=0.6)
    batches = list(replay)
    assert len(batches) == 16  # 20 rollouts of 2 steps; learning starts after the 5th
    assert batches[0].obs.shape == (4, 1) and batches[0].weights.shape == (4,)
    replay.update_priorities(torch.ones(4))
    assert 0.4 < replay.beta <= 1.0


def test_buffer_device_auto_keeps_the_buffer_with_a_cpu_learner():
    env = vector([lambda: Count()])
    space, actions = env.single_observation_space, env.single_action_space
    assert ReplayStorage(space, actions, 1, 100, device="auto").device.type == "cpu"


def test_the_torch_write_path_of_a_gpu_buffer_stores_what_the_numpy_path_does():
    """A GPU buffer writes with torch indexing (a CPU one through numpy views): the same code,
    run here on the CPU, gives the same rows, flags and samples."""
    env = vector(  # truncations in env 0, terminations in env 1
        [
            lambda: FrameStackObservation(TimeLimit(Frames(), 4), 4),
            lambda: FrameStackObservation(Frames(), 4),
        ]
    )
    space, actions = env.single_observation_space, env.single_action_space
    numpy_path = ReplayStorage(space, actions, 2, 40, nstep=3, seed=1)
    torch_path = ReplayStorage(space, actions, 2, 40, nstep=3, seed=1)
    torch_path.host = None  # as on a GPU
    for rollout in EnvRunner(env, FirstAction(), num_steps=7, num_train_steps=140):
        numpy_path.add_rollout(rollout)
        torch_path.add_rollout(rollout)
    for name, column in numpy_path.columns.items():
        assert torch.equal(column, torch_path.columns[name]), name
    a, b = numpy_path.sample(32), torch_path.sample(32)
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


def test_a_replay_checkpoint_holds_only_the_rows_written(tmp_path):
    env = vector([lambda: FrameStackObservation(Frames(), 4)] * 2)
    space, actions = env.single_observation_space, env.single_action_space
    storage = ReplayStorage(space, actions, 2, 200_000, nstep=3, seed=1)
    for rollout in EnvRunner(env, FirstAction(), num_steps=10, num_train_steps=100):
        storage.add_rollout(rollout)
    path = tmp_path / "replay.pt"
    torch.save(storage.state_dict(), path)
    # 50 rows of 9-byte frames per env, not the 100,000 slots of each (1.8 MB of frames alone)
    assert path.stat().st_size < 100_000
    again = ReplayStorage(space, actions, 2, 200_000, nstep=3, seed=1)
    again.load_state_dict(torch.load(path, weights_only=False))
    for name, column in storage.columns.items():
        assert torch.equal(column, again.columns[name]), name
    a, b = storage.sample(32), again.sample(32)
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_buffer_holds_and_samples_what_a_cpu_buffer_does():
    env = vector([lambda: FrameStackObservation(Frames(), 4)] * 2)
    space, actions = env.single_observation_space, env.single_action_space
    cpu = ReplayStorage(space, actions, 2, 64, nstep=3, seed=1)
    gpu = ReplayStorage(space, actions, 2, 64, nstep=3, seed=1, device="cuda")
    for rollout in EnvRunner(env, FirstAction(), num_steps=10, num_train_steps=100):
        cpu.add_rollout(rollout)
        gpu.add_rollout(rollout)
    a, b = cpu.sample(32), gpu.sample(32)
    assert b["obs"].is_cuda
    for key in a:
        x, y = (v if key == "indices" else v.cpu().numpy() for v in (a[key], b[key]))
        assert np.array_equal(x, y), key
