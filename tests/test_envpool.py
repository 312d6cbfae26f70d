"""--vectorization envpool: the same semantics as the gymnasium path (derl.env.envpool)."""

import gymnasium as gym
import numpy as np
import pytest

import derl
from derl.cli import main
from derl.env import make, make_single
from derl.env.envpool import MUJOCO_IDS
from derl.errors import UsageError

envpool = pytest.importorskip("envpool")


def cartpole_action(obs: np.ndarray, env_index: int, rng: np.random.Generator) -> int:
    """A balancing controller on even envs (episodes run into the 500-step time limit), random
    actions on odd ones (episodes end by falling over)."""
    if env_index % 2:
        return int(rng.integers(2))
    return int(obs[2] + 0.5 * obs[3] > 0)


def test_cartpole_gives_the_returns_of_gymnasium_from_the_same_start():
    """The same policy gives the same episodes through both backends when they start from the
    same state. Equal seeds do not give equal starts: EnvPool draws initial states with its own
    C++ RNG, gymnasium with numpy's. So every episode EnvPool plays is replayed in gymnasium's
    CartPole with the same actions, each step from EnvPool's previous observation (CartPole's
    observation is its whole state; it is float32, so a replay left to itself would drift from
    the float64 state by rounding, 1e-7 after 50 steps, and grow). Every step's observation,
    reward, terminated and truncated agree, so the episodes and their returns are the same.
    This also checks the same-step autoreset: the observation after an episode end is a fresh
    start, and `final_obs` holds where the episode really ended, for falls (terminated) and time
    limits (truncated) alike."""
    num_envs = 4
    env = make("CartPole-v1", num_envs=num_envs, seed=3, vectorization="envpool")
    obs, _ = env.reset(seed=3)
    twins = [gym.make("CartPole-v1") for _ in range(num_envs)]
    for twin in twins:
        twin.reset(seed=0)
    rng = np.random.default_rng(0)
    returns = np.zeros(num_envs)
    ends = {"terminated": 0, "truncated": 0}
    while min(ends.values()) < 2:
        actions = np.array([cartpole_action(obs[i], i, rng) for i in range(num_envs)])
        previous = obs
        obs, rewards, terminated, truncated, info = env.step(actions)
        returns += rewards
        for i in range(num_envs):
            twins[i].unwrapped.state = previous[i].astype(np.float64)
            t_obs, t_reward, t_term, t_trunc, _ = twins[i].step(int(actions[i]))
            assert (t_reward, t_term, t_trunc) == (rewards[i], terminated[i], truncated[i])
            real_last = info["final_obs"][i] if terminated[i] or truncated[i] else obs[i]
            np.testing.assert_allclose(real_last, t_obs, atol=1e-6)
            if terminated[i] or truncated[i]:
                assert info["final_info"]["_episode"][i]
                assert info["final_info"]["episode"]["r"][i] == returns[i]
                assert info["final_info"]["episode"]["l"][i] == returns[i]  # reward 1 per step
                ends["truncated" if truncated[i] else "terminated"] += 1
                assert abs(obs[i]).max() <= 0.05  # a fresh start: every part in +-0.05
                twins[i].reset()  # and its time limit
                returns[i] = 0
    env.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_mujoco_ids_match_gymnasium(env_id):
    """Every MuJoCo id EnvPool is allowed for has gymnasium's model, observation and reward:
    from the same noiseless start and with the same actions, the first steps agree (later they
    drift apart, as contact dynamics do between MuJoCo builds)."""
    kwargs = {"reset_noise_scale": 0.0}
    ours = gym.make(env_id, **kwargs)
    pool = envpool.make(env_id, env_type="gymnasium", num_envs=1, seed=0, **kwargs)
    obs, _ = ours.reset(seed=0)
    pool_obs, _ = pool.reset()
    np.testing.assert_allclose(pool_obs[0], obs, atol=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(3):
        action = rng.uniform(-1, 1, ours.action_space.shape) * ours.action_space.high
        obs, reward, terminated, _, _ = ours.step(action.astype(np.float32))
        pool_obs, pool_reward, pool_terminated, _, _ = pool.step(action[None].astype(np.float32))
        np.testing.assert_allclose(pool_obs[0], obs, atol=1e-4)
        assert abs(pool_reward[0] - reward) < 1e-4 and pool_terminated[0] == terminated


def test_atari_matches_the_gymnasium_path():
    """Observations [4, 84, 84] uint8, clipped rewards, a lost life ends the learning episode
    while the game goes on, and the episode statistics hold the game's true score."""
    env = make("BreakoutNoFrameskip-v4", num_envs=2, seed=0, vectorization="envpool")
    reference = make("BreakoutNoFrameskip-v4", num_envs=1, seed=0)
    assert env.single_observation_space == reference.single_observation_space
    assert env.single_action_space == reference.single_action_space
    reference.close()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert (obs == obs[:, :1]).all()  # a stack starts from the first frame, 4 times
    rng = np.random.default_rng(0)
    terminals, clipped = np.zeros(2, int), np.zeros(2)
    while True:
        last = obs
        obs, rewards, terminated, truncated, info = env.step(rng.integers(4, size=2))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
        for i in range(2):
            if terminated[i] or truncated[i]:  # a lost life or game over: a stack starts again
                assert (obs[i] == obs[i, :1]).all()
            else:  # the stack moves on by one frame
                assert np.array_equal(obs[i, :3], last[i, 1:])
        clipped += rewards
        terminals += terminated
        if "final_info" in info:
            done = np.flatnonzero(info["final_info"]["_episode"])
            i = done[0]
            assert terminals[i] == 5  # Breakout has 5 lives: 4 lost, then the game is over
            assert info["final_info"]["episode"]["r"][i] >= clipped[i]
            assert info["final_info"]["episode"]["l"][i] > 100
            break
    env.close()


def test_sticky_actions_follow_the_id():
    from derl.env.envpool import task

    assert task("BreakoutNoFrameskip-v4", "atari", None)[1]["repeat_action_probability"] == 0.0
    assert task("ALE/Breakout-v5", "atari", None)[1]["repeat_action_probability"] == 0.25
    name, kwargs = task("ALE/Pong-v5", "atari", {"repeat_action_probability": 0.0})
    assert name == "Pong-v5" and kwargs["repeat_action_probability"] == 0.0


def test_every_atari_game_has_its_envpool_name():
    from derl.env.envpool import task

    available = envpool.list_all_envs()
    # EnvPool names a game by its ROM: "tic_tac_toe_3d" is TicTacToe3d, not the id's TicTacToe3D
    assert task("ALE/TicTacToe3D-v5", "atari", None, available)[0] == "TicTacToe3d-v5"
    assert task("BreakoutNoFrameskip-v4", "atari", None, available)[0] == "Breakout-v5"
    # A wheel without some envs (benchmarks/gpu/trim_envpool.py keeps Atari and classic control)
    with pytest.raises(UsageError, match="this EnvPool has no Pong-v5 for 'ALE/Pong-v5'; use"):
        task("ALE/Pong-v5", "atari", None, ["CartPole-v1"])
    with pytest.raises(UsageError, match="'Hopper-v5' is not in this EnvPool"):
        task("Hopper-v5", "mujoco", None, ["CartPole-v1"])


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("Humanoid-v4", "is not known to match gymnasium's"),
        ("Reacher-v5", "is not known to match gymnasium's"),
        ("FrozenLake-v1", "is not covered by derl's EnvPool backend"),
    ],
)
def test_ids_envpool_lacks_are_refused(env_id, message, tmp_path, capsys):
    argv = ["ppo", "--env-id", env_id, "--vectorization", "envpool"]
    assert main([*argv, "--logdir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--vectorization sync" in err
    assert not (tmp_path / "r").exists()


def test_what_envpool_refuses_when_it_builds_is_one_line():
    env = make("CartPole-v1", num_envs=2, seed=0, vectorization="envpool")
    with pytest.raises(UsageError, match=r"int32.*; use --vectorization sync or async"):
        env.reset(seed=3_000_000_000)  # derl's --seed stops at 2**31 - 1; EnvPool's assert


def test_missing_envpool_names_the_extra(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_envpool(name, *args, **kwargs):
        if name == "envpool":
            raise ImportError("no envpool")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_envpool)
    argv = ["ppo", "--env-id", "CartPole-v1", "--vectorization", "envpool"]
    assert main([*argv, "--logdir", str(tmp_path / "r")]) == 2
    assert 'pip install "derl[envpool]"' in capsys.readouterr().err


def test_env_fn_needs_gymnasium_vectorization():
    with pytest.raises(UsageError, match="env_fn needs sync or async"):
        make("mine", vectorization="envpool", env_fn=lambda: make_single("CartPole-v1"))


def test_training_checkpoint_and_resume_through_envpool(tmp_path, capsys, one_thread):
    """A run trains; resumed from a checkpoint half way (EnvPool's envs start fresh episodes,
    the model and step count continue), it completes; the agent evaluates in gymnasium's envs."""
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--vectorization", "envpool", "--logdir", str(logdir)]
    argv += ["--num-train-steps", "4096", "--checkpoint-every", "2048", "--threads", "1"]
    assert main(argv) == 0
    checkpoints = sorted((logdir / "checkpoints").glob("step-*.pt"))
    checkpoints[-1].unlink()  # as if the run had stopped after its first checkpoint
    assert main(["resume", str(logdir)]) == 0
    assert "4096 env steps" in capsys.readouterr().out
    assert derl.load(logdir).config.vectorization == "envpool"
    assert main(["eval", str(logdir), "--episodes", "2"]) == 0


@pytest.mark.slow
def test_ppo_solves_cartpole_through_envpool(tmp_path, one_thread):
    config = derl.make_config(
        "ppo", "CartPole-v1", vectorization="envpool", logdir=str(tmp_path / "run"), seed=0
    )
    derl.train(config, progress=False)
    from derl.evaluate import evaluate

    assert evaluate(derl.load(tmp_path / "run"), num_episodes=10).mean() >= 475


def test_an_unseeded_first_reset_is_random_as_in_gymnasium():
    """gymnasium's `reset(seed=None)` on a new env draws fresh entropy; so does EnvPool's path
    (it used to seed 0, so every unseeded pool played the same episodes)."""
    starts = []
    for _ in range(2):
        env = make("CartPole-v1", num_envs=2, seed=None, vectorization="envpool")
        obs, _ = env.reset()
        starts.append(obs)
        env.close()
    assert not np.array_equal(starts[0], starts[1])
    seeded = [make("CartPole-v1", num_envs=2, seed=5, vectorization="envpool") for _ in range(2)]
    np.testing.assert_array_equal(seeded[0].reset(seed=5)[0], seeded[1].reset(seed=5)[0])
