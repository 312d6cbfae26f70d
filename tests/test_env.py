"""derl.env.make: families, Atari preprocessing, normalisation, seeding."""

import gymnasium as gym
import numpy as np
import pytest

import derl
from derl.env import VecNormalize, family, make, make_single
from derl.errors import UsageError
from derl.evaluate import evaluate


def test_families():
    assert family("CartPole-v1") == "classic"
    assert family("BreakoutNoFrameskip-v4") == "atari"
    assert family("ALE/Pong-v5") == "atari"
    assert family("HalfCheetah-v5") == "mujoco"
    assert family("HalfCheetahBulletEnv-v0") == "mujoco"
    assert family("gymnasium.envs.classic_control:CartPole-v1") == "classic"


def test_unknown_id_suggests_close_matches():
    with pytest.raises(UsageError, match="CartPole-v1"):
        family("CartPol-v1")


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "ALE/Breakout-v5"])
def test_atari_preprocessing(env_id):
    env = make(env_id, num_envs=2, seed=0)
    assert env.single_observation_space.shape == (4, 84, 84)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (2, 4, 84, 84)
    env.close()


def test_atari_life_loss_ends_learning_episodes_but_not_the_game():
    env = make_single("BreakoutNoFrameskip-v4")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    learning_episodes, clipped_sum, steps = 0, 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        assert reward in (-1.0, 0.0, 1.0)
        clipped_sum += reward
        steps += 1
        if terminated or truncated:
            learning_episodes += 1
            if "episode" in info:  # the game is over: statistics of the whole game
                break
            env.reset()  # a lost life: the same game goes on
    assert learning_episodes == 5  # Breakout has 5 lives
    assert info["episode"]["l"] >= steps  # plus the FIRE presses after each reset
    assert info["episode"]["r"] >= clipped_sum  # true score, not clipped rewards
    env.close()


def test_mujoco_is_normalised_and_statistics_can_be_restored():
    env = make("HalfCheetah-v5", num_envs=2, seed=0)
    assert isinstance(env, VecNormalize)
    env.reset(seed=0)
    for _ in range(20):
        obs, reward, *_ = env.step(env.action_space.sample())
    assert np.abs(obs).max() <= 10.0
    state = env.state_dict()
    other = make("HalfCheetah-v5", num_envs=2, seed=1)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.obs_rms.mean, env.obs_rms.mean)
    env.close(), other.close()


def test_same_seed_same_episode_returns(tmp_path):
    def run(seed):
        config = derl.make_config(
            "ppo",
            "CartPole-v1",
            seed=seed,
            num_train_steps=3000,
            device="cpu",
            logdir=str(tmp_path / f"{seed}-{np.random.rand()}"),
        )
        return derl.train(config, progress=False).recent_returns

    first, second, other = run(3), run(3), run(4)
    assert len(first) > 10
    assert first == second
    assert first != other


def test_a_frozen_agent_normalises_exactly_as_the_training_env():
    from derl.agent import Agent
    from derl.env.normalize import VecNormalize

    env = derl.env.make("Pendulum-v1", 2, seed=0, normalize=True)
    assert isinstance(env, VecNormalize)
    env.clip = 0.5  # a setting of its own, which the frozen agent must follow too
    for _ in range(20):
        env.step(env.action_space.sample())
    raw = np.random.default_rng(0).normal(0, 3, size=(5, 3)).astype(np.float32)
    agent = Agent(None, None, env.single_observation_space, env.state_dict())
    np.testing.assert_array_equal(agent.normalize(raw), env.normalize_obs(raw))
    env.close()


def test_an_env_without_a_time_limit_gets_one_only_when_asked():
    # CliffWalking-v1 registers no time limit: walking up from the start never ends an episode.
    env = make("CliffWalking-v1", max_episode_steps=50, seed=0)
    env.reset(seed=0)
    for step in range(1, 51):
        _, _, terminated, truncated, info = env.step(np.array([0]))
        assert not terminated[0] and truncated[0] == (step == 50)
    assert info["final_info"]["episode"]["l"][0] == 50  # the statistics see the cut episode
    assert make("CartPole-v1", max_episode_steps=50).get_attr("spec")[0].max_episode_steps == 500
    plain = make("CliffWalking-v1", seed=0)
    plain.reset(seed=0)
    for _ in range(60):
        assert not plain.step(np.array([0]))[3][0]


def test_evaluating_a_greedy_policy_that_loops_forever_ends(tmp_path):
    # A Q network of zeros takes action 0 everywhere: up, into CliffWalking's wall, for ever.
    config = derl.make_config(
        "dqn",
        "CliffWalking-v1",
        num_train_steps=200,
        learning_starts=100,
        eval_every=0,
        logdir=str(tmp_path),
        seed=0,
    )
    derl.train(config, progress=False)
    agent = derl.load(tmp_path)
    for p in agent.policy.parameters():
        p.data.zero_()
    returns = evaluate(agent, num_episodes=2)
    assert returns.tolist() == [-10_000.0, -10_000.0]  # -1 a step, cut at EVAL_MAX_EPISODE_STEPS


def test_box2d_envs_start_fresh_episodes_on_resume_and_normalisers_are_kept():
    """Box2D keeps its world in objects derl cannot save: restoring the wrappers' counters onto
    a new world would mix two episodes, so such an env is not captured (fresh episodes on
    resume, as pybullet). gymnasium's normalising wrappers keep their running statistics."""
    from derl.env.state import get_env_state, get_vector_env_state, set_env_state

    lander = make("LunarLander-v3", num_envs=1, seed=0)
    lander.reset(seed=0)
    assert get_vector_env_state(lander) is None
    lander.close()

    def normalised():
        env = gym.wrappers.NormalizeObservation(gym.make("CartPole-v1"))
        env.reset(seed=0)
        return env

    env = normalised()
    for _ in range(5):
        env.step(0)
    other = normalised()
    set_env_state(other, get_env_state(env))
    assert np.array_equal(other.obs_rms.mean, env.obs_rms.mean)
    assert other.obs_rms.count == env.obs_rms.count > 5  # a fresh one counts 1e-4


@pytest.mark.parametrize(
    "env_id, kwargs",
    [("ALE/Breakout-v5", None), ("BreakoutNoFrameskip-v4", {"repeat_action_probability": 0.25})],
)
def test_sticky_action_atari_envs_restore_bit_for_bit(env_id, kwargs):
    """ALE leaves the action it repeats out of cloneState; derl's sticky actions are a wrapper
    whose last action checkpoints keep, so a restored env repeats the same action."""
    from derl.env.state import get_vector_env_state, set_vector_env_state

    actions = np.random.default_rng(1).integers(0, 4, size=(300, 2))

    def play(env, steps):
        return [env.step(a)[:4] for a in steps]

    env = make(env_id, num_envs=2, seed=0, env_kwargs=kwargs)
    play(env, actions[:100])
    state = get_vector_env_state(env)
    straight = play(env, actions[100:])
    restored = make(env_id, num_envs=2, seed=7, env_kwargs=kwargs)
    set_vector_env_state(restored, state)
    again = play(restored, actions[100:])
    for a, b in zip(straight, again, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    sticky = env.unwrapped.envs[0].get_wrapper_attr("repeat_action_probability")
    assert sticky == 0.25


def test_atari_env_kwargs_frameskip_is_refused_and_max_episode_steps_counts_agent_steps():
    with pytest.raises(UsageError, match="skips 4 frames"):
        make_single("ALE/Breakout-v5", env_kwargs={"frameskip": 2})
    env = make_single("BreakoutNoFrameskip-v4", env_kwargs={"max_episode_steps": 10})
    env.reset(seed=0)  # and FIRE twice: agent steps too
    truncated = False
    while not truncated:
        *_, terminated, truncated, info = env.step(0)
        assert not terminated
    assert info["episode"]["l"] == 10
    env.close()


class _Pixels(gym.Env):
    """A uint8 image env with rewards of 5."""

    observation_space = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 5.0, False, False, {}


def test_normalize_keeps_image_pixels_and_scales_rewards_only():
    env = make("Pixels-v0", num_envs=2, seed=0, normalize=True, env_fn=_Pixels)
    assert isinstance(env, VecNormalize) and not env.norm_obs
    obs, rewards, *_ = env.step(np.zeros(2, dtype=np.int64))
    assert obs.dtype == np.uint8 and obs.max() > 10  # pixels, not normalised values
    assert not np.allclose(rewards, 5.0)  # scaled by the return's std (and clipped)
    agent_view = derl.Agent.normalize  # the frozen agent leaves pixels alone too
    holder = type("A", (), {"normalizer": env.state_dict()})()
    assert agent_view(holder, obs) is obs
    env.close()


class _Shifted(_Pixels):
    action_space = gym.spaces.Discrete(3, start=-1)


def test_discrete_actions_that_do_not_start_at_0_are_refused():
    with pytest.raises(UsageError, match="does not start at 0"):
        make("Shifted-v0", env_fn=_Shifted)


def _needs_size(size):
    return gym.make("CartPole-v1")


def _cannot_find_its_map():
    raise FileNotFoundError("maze.txt")


def _no_render_mode():
    return gym.make("CartPole-v1")


def test_an_env_fn_derl_cannot_use_is_one_line():
    # Each was a traceback from inside derl; now it says what derl calls the factory with.
    with pytest.raises(UsageError, match=r"env_fn _needs_size must take \(\), but its signature"):
        make("Mine-v0", env_fn=_needs_size)
    with pytest.raises(UsageError, match="_cannot_find_its_map raised FileNotFoundError: maze.txt"):
        make("Mine-v0", env_fn=_cannot_find_its_map)
    with pytest.raises(UsageError, match="_no_render_mode takes no render_mode, so its env cannot"):
        make_single("Mine-v0", render_mode="rgb_array", env_fn=_no_render_mode)
    assert make_single("Mine-v0", env_fn=_no_render_mode).action_space.n == 2
