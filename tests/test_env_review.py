"""derl.env: env state that checkpoints keep, images inside Dict observations, and Atari games
that end inside a reset's own steps."""

import dataclasses
import random

import ale_py  # noqa: F401  (registers the Atari ids before any Atari env is made)
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics

from derl import checkpoint
from derl.env import make, observation_space
from derl.env.atari import EpisodicLife, FireReset
from derl.env.make import as_channels_first
from derl.env.state import get_env_state, get_vector_env_state, set_vector_env_state
from derl.models import make_encoder, unflatten


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """The env-state warnings come once per process: another test in this worker may have
    had them already."""
    monkeypatch.setattr("derl.env.state._warned", set())


# -- env state: dicts and objects of the user's own classes ------------------------------------


class Tally:
    """An object of the user's own class, with a Generator of its own and a reference back to
    its env (the new env's tally refers to the new env)."""

    def __init__(self, env):
        self.hits, self.rng, self.env = 0, np.random.default_rng(5), env


class Drift(gym.Env):
    """Dynamics that read a dict and a Tally, both changed by every step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.table = {"bonus": 0.0, "visits": [0, 0]}
        self.tally = Tally(self)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.table = {"bonus": 0.0, "visits": [0, 0]}
        self.tally.hits = 0
        return self.observe(), {}

    def step(self, action):
        self.table["visits"][action] += 1
        self.table["bonus"] += float(self.np_random.normal() + self.tally.rng.normal())
        self.tally.hits += 1
        reward = self.table["bonus"] * self.table["visits"][action]
        return self.observe(), reward, False, self.tally.hits >= 40, {}

    def observe(self):
        return np.array([self.table["bonus"], *self.table["visits"]], np.float32)


def play(env, actions):
    return [[np.asarray(x).tolist() for x in env.step(a)[:4]] for a in actions]


def test_dicts_and_objects_of_your_own_are_saved_and_resume_exactly(tmp_path):
    actions = np.random.default_rng(0).integers(0, 2, size=(60, 2))
    env = make("Drift", num_envs=2, seed=0, env_fn=Drift)
    play(env, actions[:15])  # mid-episode
    path = checkpoint.save(
        {"format": checkpoint.FORMAT, "env": get_vector_env_state(env)}, tmp_path / "env.pt"
    )
    straight = play(env, actions[15:])
    restored = make("Drift", num_envs=2, seed=7, env_fn=Drift)
    set_vector_env_state(restored, checkpoint.load(path)["env"])  # read with weights_only
    assert play(restored, actions[15:]) == straight


class Dice(Drift):
    """State that cannot be saved as plain data: random.Random's is a C field; a set."""

    def __init__(self):
        super().__init__()
        self.dice, self.seen = random.Random(3), {1, 2}


def test_state_that_cannot_be_saved_is_named_in_one_warning_line(capsys):
    env = make("Dice", num_envs=1, seed=0, env_fn=Dice)
    assert get_vector_env_state(env) is None  # fresh episodes on resume, not wrong ones
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("derl: warning: cannot save the env's state")
    assert "Dice.dice: a Random" in err and "Dice.seen: a set" in err
    get_vector_env_state(env)
    assert capsys.readouterr().err == ""  # once, not at every checkpoint


@dataclasses.dataclass(frozen=True)
class Weather:
    wind: float = 0.0


class Windy(Drift):
    """A frozen dataclass the env replaces as it steps; a numpy-keyed dict (which a checkpoint
    read with weights_only cannot hold); a helper object it makes only at its first step."""

    def __init__(self, numpy_keys=False, late=False):
        super().__init__()
        self.weather, self.numpy_keys, self.late = Weather(), numpy_keys, late
        self.by_cell = {}
        self.helper = None

    def step(self, action):
        self.weather = Weather(self.weather.wind + float(self.np_random.normal()))
        if self.numpy_keys:
            key = self.np_random.integers(3)  # a numpy int64
            self.by_cell[key] = self.by_cell.get(key, 0) + 1
        if self.late and self.helper is None:
            self.helper = Tally(self)
        obs, reward, terminated, truncated, info = super().step(action)
        return obs + self.weather.wind, reward, terminated, truncated, info


def test_a_frozen_dataclass_is_saved_and_set_back(tmp_path):
    actions = np.random.default_rng(1).integers(0, 2, size=(30, 1))
    env = make("Windy", num_envs=1, seed=0, env_fn=Windy)
    play(env, actions[:10])
    path = checkpoint.save({"format": 1, "env": get_vector_env_state(env)}, tmp_path / "e.pt")
    straight = play(env, actions[10:])
    restored = make("Windy", num_envs=1, seed=3, env_fn=Windy)
    assert set_vector_env_state(restored, checkpoint.load(path)["env"])
    assert play(restored, actions[10:]) == straight


def test_numpy_keys_are_named_not_written_into_an_unloadable_checkpoint(capsys):
    env = make("Windy", num_envs=1, seed=0, env_fn=lambda: Windy(numpy_keys=True))
    play(env, [[0]] * 5)
    assert get_vector_env_state(env) is None
    assert "Windy.by_cell: a key of type int64" in capsys.readouterr().err


def test_an_object_a_new_env_has_not_made_yet_starts_new_episodes(capsys):
    env = make("Windy", num_envs=1, seed=0, env_fn=lambda: Windy(late=True))
    play(env, [[0]] * 5)
    states = get_vector_env_state(env)
    fresh = make("Windy", num_envs=1, seed=0, env_fn=lambda: Windy(late=True))
    assert set_vector_env_state(fresh, states) is False  # the runner resets: new episodes
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its helper was a Tally" in err and "starts new ones" in err


def test_a_library_env_is_named_without_advice_meant_for_your_own(capsys):
    pytest.importorskip("Box2D")
    env = make("LunarLander-v3", num_envs=1, seed=0)
    assert get_vector_env_state(env) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LunarLander keeps its state in objects of a simulator" in err
    assert "keep an env's state" not in err


# -- channels-last images inside a Dict ---------------------------------------------------------


class Camera(gym.Env):
    """A Dict observation with an RGB image as renders give it ([H, W, C]) beside a vector."""

    observation_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (40, 44, 3), np.uint8),
            "speed": gym.spaces.Box(-1, 1, (2,), np.float32),
        }
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observe(), {}

    def step(self, action):
        return self.observe(), 0.0, False, False, {}

    def observe(self):
        image = self.np_random.integers(0, 256, (40, 44, 3), dtype=np.uint8)
        return {"image": image, "speed": self.np_random.uniform(-1, 1, 2).astype(np.float32)}


def test_a_channels_last_image_in_a_dict_is_turned_channels_first_for_the_cnn():
    env = make("Camera", num_envs=2, seed=0, env_fn=Camera)
    space = observation_space(env)
    assert space["image"].shape == (3, 40, 44)  # as a top-level image: ChannelsFirst
    raw = Camera().reset(seed=0)[0]
    flat, _ = make("Camera", num_envs=1, seed=0, env_fn=Camera).reset(seed=0)
    parts = unflatten(space, torch.as_tensor(flat))
    assert torch.equal(parts["image"][0], torch.as_tensor(raw["image"]).permute(2, 0, 1))
    assert make_encoder(space)(torch.as_tensor(flat)).shape == (1, 512 + 2)
    # An observation as the env gives it (Agent.act) takes the same layout.
    turned = as_channels_first(space, raw)
    assert np.array_equal(gym.spaces.flatten(space, turned), flat[0])


# -- Atari: a game that ends inside reset's no-op or FIRE steps --------------------------------


class LivesGame(gym.Env):
    """As ALE to the reset wrappers: 1 point a step, a life lost at step `lose` and the game
    over at step `end` of the game (reset's own steps count)."""

    observation_space = gym.spaces.Box(0, 255, (1,), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, lose: int, end: int):
        self.lose, self.end, self.t = lose, end, 0
        self.ale = self  # EpisodicLife reads env.unwrapped.ale.lives()

    def lives(self):
        return 2 if self.t < self.lose else 1 if self.t < self.end else 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.uint8), 1.0, self.t >= self.end, False, {}


def reported_episodes(env, steps):
    """(return, length) of the episodes that reach final_info, as derl's runner reads them."""
    env.reset(seed=0)
    episodes = []
    for _ in range(steps):
        info = env.step(np.zeros(1, np.int64))[4]
        final = info.get("final_info", {})
        if "episode" in final:
            episodes.append((float(final["episode"]["r"][0]), int(final["episode"]["l"][0])))
    return episodes


@pytest.mark.parametrize(
    "fire, lose, end, agent_steps",
    [
        (False, 3, 4, 3),  # a life lost at step 3, the game over in EpisodicLife's no-op
        (True, 3, 4, 1),  # ...with FIRE pressed after the reset: step 1, 2, the agent's 3
        (True, 99, 2, 0),  # the game over at FireReset's second press
    ],
)
def test_a_game_that_ends_in_a_resets_own_steps_is_reported(fire, lose, end, agent_steps):
    def make_one():
        env = EpisodicLife(RecordEpisodeStatistics(LivesGame(lose, end)))
        return FireReset(env) if fire else env

    env = SyncVectorEnv([make_one], autoreset_mode=AutoresetMode.SAME_STEP)
    games = 6
    # each game: the agent's steps, then one step that reports the end held by reset
    episodes = reported_episodes(env, games * (agent_steps + 1))
    assert episodes == [(float(end), end)] * games  # the true score of every game


def test_atari_step_cap_inside_fire_reset_is_reported_and_checkpointed():
    """With a cap of 2 agent steps, Breakout's FIRE presses after reset reach it: each game
    ends in reset, and the next step reports it. A checkpoint taken while the end is held
    keeps it."""
    env = make("BreakoutNoFrameskip-v4", num_envs=1, seed=0, env_kwargs={"max_episode_steps": 2})
    state = get_vector_env_state(env)  # just reset: the end of the first game is held
    assert state is not None
    assert reported_episodes_after_reset(env, 4) == [(0.0, 2)] * 4
    restored = make(
        "BreakoutNoFrameskip-v4", num_envs=1, seed=1, env_kwargs={"max_episode_steps": 2}
    )
    set_vector_env_state(restored, state)
    terminated, truncated, info = restored.step(np.zeros(1, np.int64))[2:]
    assert truncated[0] and int(info["final_info"]["episode"]["l"][0]) == 2


def reported_episodes_after_reset(env, steps):
    episodes = []
    for _ in range(steps):
        final = env.step(np.zeros(1, np.int64))[4].get("final_info", {})
        if "episode" in final:
            episodes.append((float(final["episode"]["r"][0]), int(final["episode"]["l"][0])))
    return episodes


def test_env_state_of_a_plain_env_still_round_trips():
    """CartPole's state (numbers, a Generator) is kept as before."""
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    assert get_env_state(env) is not None


def test_a_loaded_agent_acts_on_a_dict_with_a_channels_last_image_as_the_env_gives_it(
    tmp_path, one_thread
):
    """derl.load(...).act takes the observation a Camera env returns ([H, W, C] inside a
    Dict): it must see the pixels as training did, turned channels-first, not flattened in the
    env's order (same-sized, so nothing would complain)."""
    import derl

    config = derl.make_config(
        "ppo", "Camera", family="classic", num_train_steps=64, num_envs=2, logdir=str(tmp_path)
    )
    derl.train(config, progress=False, env_fn=Camera)
    agent = derl.load(tmp_path, env_fn=Camera)
    env = make("Camera", num_envs=1, seed=0, env_fn=Camera)
    flat, _ = env.reset(seed=0)
    raw = Camera().reset(seed=0)[0]
    seen = []
    act = agent.policy.act
    agent.policy.act = lambda obs, deterministic: seen.append(obs) or act(obs, deterministic)
    agent.act(raw)
    assert torch.equal(seen[0], torch.as_tensor(flat))  # what training saw, pixel for pixel


class Float32Drift(Drift):
    """A numpy float32 scalar that the dynamics accumulate in float32."""

    def __init__(self):
        super().__init__()
        self.level = np.float32(0.1)

    def step(self, action):
        self.level = self.level * np.float32(1.1) + np.float32(self.np_random.normal())
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float(self.level), terminated, truncated, info


def played_and_restored(env_fn, tmp_path):
    """An env after 7 steps, and a new one (another seed) given its state through a checkpoint
    file."""
    env = make("Mine", num_envs=1, seed=0, env_fn=env_fn)
    play(env, [[1]] * 7)
    state = {"format": checkpoint.FORMAT, "env": get_vector_env_state(env)}
    path = checkpoint.save(state, tmp_path / "e.pt")
    restored = make("Mine", num_envs=1, seed=3, env_fn=env_fn)
    assert set_vector_env_state(restored, checkpoint.load(path)["env"])
    return env, restored


def test_a_numpy_scalar_comes_back_as_the_same_numpy_scalar(tmp_path):
    env, restored = played_and_restored(Float32Drift, tmp_path)
    level = restored.unwrapped.envs[0].unwrapped.level
    assert type(level) is np.float32 and level == env.unwrapped.envs[0].unwrapped.level
    assert play(restored, [[0]] * 20) == play(env, [[0]] * 20)


class NestedFloat32(Float32Drift):
    """Numpy scalars inside a list and a dict: a checkpoint turned them into Python floats."""

    def __init__(self):
        super().__init__()
        self.history, self.stats = [np.float32(0.5)], {"peak": np.float32(0.0)}

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        self.history.append(self.history[-1] * np.float32(0.9) + self.level)
        self.stats["peak"] = max(self.stats["peak"], self.history[-1])
        return obs, float(self.history[-1] + self.stats["peak"]), terminated, truncated, info


def test_numpy_scalars_inside_lists_and_dicts_stay_numpy_scalars(tmp_path):
    env, restored = played_and_restored(NestedFloat32, tmp_path)
    base = restored.unwrapped.envs[0].unwrapped
    assert {type(v) for v in base.history} == {np.float32}
    assert type(base.stats["peak"]) is np.float32
    assert play(restored, [[0]] * 20) == play(env, [[0]] * 20)


def test_a_format_1_numpy_scalar_entry_still_restores():
    env = make("F32", num_envs=1, seed=0, env_fn=Float32Drift)
    state = get_vector_env_state(env)
    state[0]["layers"][-1]["level"] = {"scalar": np.array([0.25], dtype=np.float32)}  # as 1 wrote
    assert set_vector_env_state(env, state)
    level = env.unwrapped.envs[0].unwrapped.level
    assert type(level) is np.float32 and level == np.float32(0.25)


def test_async_envs_say_once_that_a_resume_starts_new_episodes(capsys):
    env = make("CartPole-v1", num_envs=2, seed=0, vectorization="async")
    try:
        assert get_vector_env_state(env) is None
        assert get_vector_env_state(env) is None
    finally:
        env.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "async envs keep their state where derl cannot read it" in err


@pytest.mark.parametrize("env_id", ["Ant-v5", "Reacher-v5", "Humanoid-v5"])
def test_mujoco_rewards_that_read_body_positions_resume_exactly(env_id, tmp_path):
    """Ant's and Reacher's rewards read body positions (Humanoid's its centre of mass) before
    stepping: derived by MuJoCo, not part of its integration state, they were the new env's
    own after a restore, and the first rewards differed."""
    pytest.importorskip("mujoco")
    env = make(env_id, num_envs=1, seed=0, normalize=False)
    shape = (40, 1, *env.single_action_space.shape)
    actions = np.random.default_rng(0).uniform(-0.4, 0.4, shape).astype(np.float32)
    play(env, actions[:15])
    path = checkpoint.save({"format": 1, "env": get_vector_env_state(env)}, tmp_path / "e.pt")
    restored = make(env_id, num_envs=1, seed=9, normalize=False)
    assert set_vector_env_state(restored, checkpoint.load(path)["env"])
    assert play(restored, actions[15:]) == play(env, actions[15:])
