"""Users' own networks, envs and callbacks through the normal path: derl.train, checkpoints,
resume, derl.load, the CLI. The envs here are registered nowhere: they exist in this file."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import derl
from derl import checkpoint
from derl.callbacks import Callback, SaveEvery, StopOnReward
from derl.cli import main
from derl.evaluate import evaluate

# -- envs of our own ----------------------------------------------------------------------------


class Signs(gym.Env):
    """Say the sign of a number: reward 1 for action (x > 0), 10 steps per episode.

    A random policy earns ~5 an episode, a learned one 10. `obs`: "box" (x alone), "dict" (x
    beside a 36x36 image of noise and a discrete distractor) or "discrete" (x's sign as 0 or 1).
    """

    def __init__(self, obs: str = "box", render_mode: str | None = None):
        self.kind, self.render_mode = obs, render_mode
        x = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.observation_space = {
            "box": x,
            "dict": gym.spaces.Dict(
                {
                    "x": x,
                    "image": gym.spaces.Box(0, 255, (1, 36, 36), np.uint8),
                    "noise": gym.spaces.Discrete(3),
                }
            ),
            "discrete": gym.spaces.Discrete(2),
            "rgb": gym.spaces.Box(0, 255, (36, 36, 3), np.uint8),  # channels last, as renders
        }[obs]
        self.action_space = gym.spaces.Discrete(2)

    def observe(self):
        x = np.array([self.x], np.float32)
        if self.kind == "box":
            return x
        if self.kind == "discrete":
            return int(self.x > 0)
        if self.kind == "rgb":  # the sign in the red channel only; green and blue are noise
            image = self.np_random.integers(0, 256, (36, 36, 3), dtype=np.uint8)
            image[:, :, 0] = 255 if self.x > 0 else 0
            return image
        image = self.np_random.integers(0, 256, (1, 36, 36), dtype=np.uint8)
        return {"x": x, "image": image, "noise": int(self.np_random.integers(3))}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, float(self.np_random.uniform(-1, 1))
        return self.observe(), {}

    def step(self, action):
        reward = float(int(action) == int(self.x > 0))
        self.t, self.x = self.t + 1, float(self.np_random.uniform(-1, 1))
        return self.observe(), reward, False, self.t >= 10, {}

    def render(self):
        return np.full((8, 8, 3), 255 if self.x > 0 else 0, np.uint8)


def make_signs():
    return Signs("box")


def make_dict_signs():
    return Signs("dict")


def make_discrete_signs():
    return Signs("discrete")


def make_rgb_signs():
    return Signs("rgb")


# -- a network of our own -----------------------------------------------------------------------

CALLS = []


def tiny_encoder(observation_space, action_space, config):
    """obs -> 16 features; records what it was built for."""
    CALLS.append((observation_space, action_space, config.env_id))
    return nn.Sequential(nn.Linear(observation_space.shape[0], 16), nn.Tanh())


class DictEncoder(nn.Module):
    """Reads the structure of a Dict observation: the vector, and the image by its mean."""

    out_features = 9

    def __init__(self):
        super().__init__()
        self.x = nn.Linear(1, 8)

    def forward(self, obs):
        assert obs["image"].dtype == torch.uint8 and obs["image"].shape[1:] == (1, 36, 36)
        assert obs["noise"].shape[1] == 3  # one-hot
        image = obs["image"].float().mean(dim=(1, 2, 3))[:, None] / 255
        return torch.cat([torch.tanh(self.x(obs["x"])), image], dim=-1)


def dict_encoder(observation_space, action_space, config):
    return DictEncoder()


SMALL = {
    "ppo": dict(
        num_envs=2, num_runner_steps=32, num_minibatches=2, num_epochs=4, num_train_steps=4096
    ),
    "a2c": dict(num_envs=2, num_runner_steps=8, num_train_steps=8192),
    "dqn": dict(num_envs=1, learning_starts=200, buffer_size=2000, num_train_steps=3000),
}
SMALL["rainbow"] = SMALL["dqn"]


def small(alg="ppo", **overrides):
    """A config of `alg` for a Signs env, small enough to train in seconds."""
    return derl.make_config(alg, "Signs", family="classic", **{**SMALL[alg], **overrides})


def test_a_network_of_your_own_trains_checkpoints_resumes_and_loads(tmp_path):
    CALLS.clear()
    config = small(logdir=str(tmp_path / "run"), num_train_steps=2048, checkpoint_every=1024)
    result = derl.train(config, progress=False, model=tiny_encoder, env_fn=make_signs)
    assert CALLS and CALLS[0][0] == Signs().observation_space and CALLS[0][2] == "Signs"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == "test_custom:tiny_encoder"  # importable: recorded by name
    assert saved["env_fn"] == "test_custom:make_signs"
    encoder = result.alg.runner.policy.model.encoder
    assert encoder.module[0].out_features == 16  # the user's network is in the policy
    # Resume from the first checkpoint by name only, as `derl resume` would.
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    checkpoints[-1].unlink()
    resumed = derl.resume(tmp_path / "run", progress=False)
    assert resumed.env_steps == result.env_steps
    for a, b in zip(
        result.alg.runner.policy.parameters(), resumed.alg.runner.policy.parameters(), strict=True
    ):
        assert torch.equal(a, b)  # bit for bit
    agent = derl.load(tmp_path / "run")
    assert agent.act(np.array([0.5], np.float32)).shape == ()


def test_an_unimportable_network_is_passed_again_to_load(tmp_path):
    def local_encoder(observation_space, action_space, config):
        return nn.Linear(1, 4)

    config = small(logdir=str(tmp_path / "run"), num_train_steps=256)
    derl.train(config, progress=False, model=local_encoder, env_fn=make_signs)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"].startswith(
        "<not importable>"
    )
    with pytest.raises(derl.UsageError, match="cannot be imported by name"):
        derl.load(tmp_path / "run")
    agent = derl.load(tmp_path / "run", model=local_encoder)
    assert agent.act(np.array([0.5], np.float32)) in (0, 1)


@pytest.mark.parametrize("alg", ["ppo", "a2c", "dqn", "rainbow"])
def test_every_discrete_algorithm_learns_an_env_registered_nowhere(alg, tmp_path):
    values = {}
    if alg in ("dqn", "rainbow"):
        values = dict(train_freq=4, gradient_steps=1, exploration_steps=1000)
        values |= dict(target_update_period=100, eval_every=0)
        if alg == "rainbow":
            values |= dict(v_min=0.0, v_max=10.0, nstep=1, num_train_steps=2000)
    config = small(alg, logdir=str(tmp_path / alg), seed=1, **values)
    result = derl.train(config, progress=False, env_fn=make_signs)
    returns = evaluate(result.agent, num_episodes=10)
    assert returns.mean() >= 9  # random: ~5


@pytest.mark.parametrize("alg", ["sac", "td3"])
def test_continuous_algorithms_take_your_network_with_an_encoder_per_critic(alg, tmp_path):
    config = derl.make_config(
        alg,
        "Pendulum-v1",
        num_train_steps=300,
        learning_starts=100,
        hidden="32",
        activation="tanh",
        logdir=str(tmp_path / alg),
    )
    result = derl.train(config, progress=False, model=tiny_encoder)
    actor, critic = result.alg.runner.policy, result.alg.critic
    assert isinstance(actor.net[1], nn.Tanh)  # --activation reaches the MLP
    assert actor.encoder is not critic.encoder  # each network its own encoder
    assert isinstance(derl.load(tmp_path / alg).act(np.zeros(3, np.float32)), np.ndarray)


def test_channels_last_images_are_turned_and_stored_whole(tmp_path):
    env = derl.env.make("Signs", 1, env_fn=make_rgb_signs)
    assert env.single_observation_space.shape == (3, 36, 36)  # ChannelsFirst, for the CNN
    values = dict(train_freq=4, gradient_steps=1, exploration_steps=1000, eval_every=0)
    values |= dict(target_update_period=100)
    config = small("dqn", logdir=str(tmp_path / "dqn"), seed=1, **values)
    result = derl.train(config, progress=False, env_fn=make_rgb_signs)
    # Not a frame stack: the replay keeps all three channels (a stack would keep the last one,
    # blue noise here, and nothing could be learned).
    assert not result.alg.runner.storage.frame_stack
    assert evaluate(result.agent, num_episodes=10).mean() >= 9  # random: ~5
    image = make_rgb_signs().reset(seed=0)[0]  # as the env gives it: [36, 36, 3]
    agent = derl.load(tmp_path / "dqn")
    assert agent.act(image) == agent.act(np.transpose(image, (2, 0, 1)))


def test_a_dict_observation_env_trains_with_one_encoder_per_key(tmp_path):
    config = small(logdir=str(tmp_path / "dict"), num_train_steps=4096, seed=2)
    result = derl.train(config, progress=False, env_fn=make_dict_signs)
    encoder = result.alg.runner.policy.model.encoder
    kinds = [type(e).__name__ for e in encoder.encoders]
    assert sorted(kinds) == ["Flatten", "Flatten", "ImageEncoder"]  # image, noise, x
    assert evaluate(result.agent, 10).mean() >= 9
    agent = derl.load(tmp_path / "dict", env_fn=make_dict_signs)
    obs, _ = Signs("dict").reset(seed=0)
    assert agent.act(obs) == int(obs["x"][0] > 0)  # a Dict as the env gives it


def test_your_dict_network_sees_the_structure(tmp_path):
    config = small(logdir=str(tmp_path / "run"), num_train_steps=6144, hidden="16")
    result = derl.train(config, progress=False, env_fn=make_dict_signs, model=dict_encoder)
    assert evaluate(result.agent, 10).mean() >= 9


def test_discrete_observations_are_one_hot(tmp_path):
    config = small(logdir=str(tmp_path / "run"), num_train_steps=2048)
    result = derl.train(config, progress=False, env_fn=make_discrete_signs)
    assert result.alg.runner.env.single_observation_space.shape == (2,)
    assert evaluate(result.agent, 10).mean() >= 9


def test_gymnasium_envs_with_discrete_and_tuple_observations_train(tmp_path):
    for env_id in ("FrozenLake-v1", "Taxi-v4", "Blackjack-v1"):
        config = derl.make_config("ppo", env_id, num_train_steps=512, logdir=str(tmp_path / env_id))
        assert derl.train(config, progress=False).env_steps >= 512


# -- env kwargs -----------------------------------------------------------------------------


def test_env_kwargs_reach_gymnasium_make_and_bad_ones_are_one_line(tmp_path, capsys):
    config = derl.make_config(
        "ppo", "FrozenLake-v1", num_train_steps=256, env_kwargs={"map_name": "8x8"}
    )
    env = derl.env.make(config.env_id, env_kwargs=config.env_kwargs)
    assert derl.env.observation_space(env) == gym.spaces.Discrete(64)
    argv = ["ppo", "--env-id", "FrozenLake-v1", "--num-train-steps", "256"]
    assert (
        main([*argv, "--env-kwargs", '{"map_name": "8x8"}', "--logdir", str(tmp_path / "a")]) == 0
    )
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["env_kwargs"] == {"map_name": "8x8"}
    capsys.readouterr()
    assert main([*argv, "--env-kwargs", '{"colour": 1}', "--logdir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and err.count("\n") == 1 and not (tmp_path / "b").exists()
    assert main([*argv, "--env-kwargs", "map_name=8x8", "--logdir", str(tmp_path / "c")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_model_flag_imports_your_module(tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def wide(observation_space, action_space, config):\n"
        "    return nn.Sequential(nn.Linear(observation_space.shape[0], 32), nn.ReLU())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["ppo", "--env-id", "CartPole-v1", "--num-train-steps", "512", "--hidden", "16"]
    assert main([*argv, "--model", "mynets:wide", "--logdir", str(tmp_path / "run")]) == 0
    agent = derl.load(tmp_path / "run")
    assert agent.policy.model.encoder.module[0].out_features == 32
    assert agent.policy.model.policy_body[0].out_features == 16  # --hidden on top
    for bad, message in [
        ("mynets:narrow", "has no 'narrow'"),
        ("nowhere:wide", "cannot import module 'nowhere'"),
        ("wide", "must be module:function"),
    ]:
        capsys.readouterr()
        assert main([*argv, "--model", bad, "--logdir", str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


# -- networks that cannot work: one line, exit 2 ---------------------------------------------

BAD_NETS = """
import torch
from torch import nn


def no_arguments():
    return nn.Linear(4, 8)


def keyword_only(observation_space, *, action_space, config):
    return nn.Linear(4, 8)


def raises_inside(observation_space, action_space, config):
    return nn.Linear(observation_space["x"].shape[0], 8)  # CartPole's space is no Dict


def not_a_module(observation_space, action_space, config):
    return lambda obs: obs


def says_64_gives_32(observation_space, action_space, config):
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU())
    net.out_features = 64
    return net


def one_vector_per_batch(observation_space, action_space, config):
    return nn.Flatten(0)                # [B, 4] -> [4B]: the batch dimension is lost


def joins_the_batch(observation_space, action_space, config):
    class Joined(nn.Module):
        out_features = 4

        def forward(self, obs):
            return obs.reshape(1, -1)   # [B, 4] -> [1, 4B]: right for a batch of 1 only
    return Joined()


def integer_features(observation_space, action_space, config):
    class Rounds(nn.Module):
        def forward(self, obs):
            return obs.round().long()
    return Rounds()


def wrong_input_size(observation_space, action_space, config):
    return nn.Sequential(nn.Linear(7, 32), nn.ReLU())      # CartPole has 4 numbers


def batch_norm(observation_space, action_space, config):
    size = observation_space.shape[0]
    return nn.Sequential(nn.Linear(size, 32), nn.BatchNorm1d(32), nn.ReLU())
"""


@pytest.fixture
def bad_nets(tmp_path, monkeypatch):
    (tmp_path / "badnets.py").write_text(BAD_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    "fn, says",
    [
        ("no_arguments", "must take (observation_space, action_space, config)"),
        ("keyword_only", "its signature is (observation_space, *, action_space, config)"),
        ("raises_inside", "raised TypeError"),
        ("not_a_module", "must return a torch.nn.Module, not function"),
        ("says_64_gives_32", "out_features is 64, but its output has 32 features"),
        ("one_vector_per_batch", "returned shape (8,) for a batch of 2 observations"),
        ("joins_the_batch", "returned shape (1, 8) for a batch of 2 observations"),
        ("integer_features", "returned int64 values"),
        ("wrong_input_size", "fails on a batch of 2 observations"),
    ],
)
def test_a_network_that_cannot_work_is_one_line(fn, says, bad_nets, capsys):
    argv = ["ppo", "--env-id", "CartPole-v1", "--num-train-steps", "256"]
    logdir = bad_nets / fn
    assert main([*argv, "--model", f"badnets:{fn}", "--logdir", str(logdir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"derl: error: --model badnets:{fn}") and says in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_batch_norm_network_with_one_env_is_one_line(bad_nets, capsys):
    """Acting in training mode on one observation per step, batch norm would fail at the
    first step with torch's traceback."""
    argv = ["ppo", "--env-id", "CartPole-v1", "--num-train-steps", "256", "--num-envs", "1"]
    assert main([*argv, "--model", "badnets:batch_norm", "--logdir", str(bad_nets / "r")]) == 2
    err = capsys.readouterr().err
    assert "has a BatchNorm layer" in err and "--num-envs 2 or more" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_batch_norm_network_probes_in_eval_mode_and_trains(bad_nets):
    argv = ["ppo", "--env-id", "CartPole-v1", "--num-train-steps", "256", "--hidden", "16"]
    assert main([*argv, "--model", "badnets:batch_norm", "--logdir", str(bad_nets / "r")]) == 0
    # The probe (a batch of 2 in eval mode, on a fork of the RNG) left the running statistics
    # alone: a built encoder's batch norm has seen no batch.
    from badnets import batch_norm

    config = derl.make_config("ppo", "CartPole-v1", hidden="16")
    env = derl.env.make("CartPole-v1")
    policy = derl.factory.get_alg("ppo").make_policy(
        config, env.single_observation_space, env.single_action_space, batch_norm
    )
    norm = policy.model.encoder.module[1]
    assert norm.training and int(norm.num_batches_tracked) == 0
    assert derl.load(bad_nets / "r").act(np.zeros(4, np.float32)) in (0, 1)


def test_a_bad_network_from_python_is_a_usage_error(tmp_path):
    config = small(logdir=str(tmp_path / "run"), num_train_steps=64)
    with pytest.raises(derl.UsageError, match=r"must take \(observation_space, action_space"):
        derl.train(config, progress=False, env_fn=make_signs, model=lambda: nn.Linear(1, 4))
    with pytest.raises(derl.UsageError, match="out_features is 3, but its output has 4"):
        derl.train(config, progress=False, env_fn=make_signs, model=lambda o, a, c: WrongWidth())


class WrongWidth(nn.Linear):
    """A Linear of 4 outputs that says it has 3."""

    def __init__(self):
        super().__init__(1, 4)
        self.out_features = 3

    def forward(self, obs):
        return nn.functional.linear(obs, self.weight, self.bias)


def test_hidden_and_activation_for_every_algorithm():
    for alg in ("ppo", "a2c", "dqn", "rainbow", "sac", "td3"):
        env_id = "Pendulum-v1" if alg in ("sac", "td3") else "CartPole-v1"
        config = derl.make_config(alg, env_id, hidden="48,24", activation="elu")
        env = derl.env.make(env_id)
        policy = derl.factory.get_alg(alg).make_policy(
            config, env.single_observation_space, env.single_action_space
        )
        linears = [m.out_features for m in policy.modules() if hasattr(m, "out_features")]
        assert 48 in linears and 24 in linears, (alg, linears)
        assert any(isinstance(m, nn.ELU) for m in policy.modules()), alg


# -- callbacks ------------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_training_start(self, event):
        self.events.append(("start", event.step))

    def on_update(self, event):
        self.events.append(("update", event.step))

    def on_rollout(self, event):
        self.events.append(("rollout", event.step))
        assert "train/loss" in event.metrics and "episode/return_mean" in event.metrics

    def on_checkpoint(self, event):
        self.events.append(("checkpoint", event.step))
        assert event.path.exists()

    def on_evaluation(self, event):
        self.events.append(("evaluation", event.step))
        assert math.isfinite(event.eval_return)

    def on_training_end(self, event):
        self.events.append(("end", event.step))


def test_callbacks_hear_every_event_in_order(tmp_path):
    recorder = Recorder()
    config = small(
        logdir=str(tmp_path / "run"),
        num_train_steps=256,
        num_epochs=2,
        checkpoint_every=128,
        eval_every=128,
    )
    result = derl.train(config, progress=False, env_fn=make_signs, callbacks=[recorder])
    kinds = [kind for kind, _ in recorder.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and result.stopped_by == ""
    # 4 rollouts of 64 steps, 2 epochs of 2 minibatches each
    assert kinds.count("update") == 4 * 2 * 2
    assert ("rollout", 64) in recorder.events and ("checkpoint", 128) in recorder.events
    assert ("evaluation", 128) in recorder.events and ("evaluation", 256) in recorder.events
    assert ("checkpoint", 256) in recorder.events
    # An evaluation and a checkpoint of one step: the checkpoint comes after and records the
    # evaluation done, so a run resumed from it does not evaluate that step again.
    assert kinds.index("checkpoint") > kinds.index("evaluation")
    saved = checkpoint.load(tmp_path / "run" / "checkpoints" / "step-000000000128.pt")
    assert saved["schedule"]["last_eval"] == 128


def test_stop_on_reward_stops_cleanly_with_a_checkpoint(tmp_path):
    config = small(logdir=str(tmp_path / "run"), num_train_steps=50_000, eval_every=512, seed=3)
    result = derl.train(config, progress=False, env_fn=make_signs, callbacks=[StopOnReward(9.5)])
    assert result.stopped_by == "StopOnReward" and not result.interrupted
    assert result.env_steps < 50_000
    newest = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert newest.name == f"step-{result.env_steps:012d}.pt"
    assert evaluate(derl.load(newest, env_fn=make_signs), 10).mean() >= 9.5


def test_returning_false_stops_and_save_every_keeps_agents(tmp_path):
    class StopAt(Callback):
        def on_update(self, event):
            return event.step < 1000

    config = small(logdir=str(tmp_path / "run"), num_train_steps=8192)
    result = derl.train(
        config, progress=False, env_fn=make_signs, callbacks=[SaveEvery(256), StopAt()]
    )
    assert result.stopped_by == "StopAt" and 1000 <= result.env_steps < 1100
    saved = {p.name for p in (tmp_path / "run" / "agents").iterdir()}
    assert saved == {f"agent-{s}.pt" for s in (256, 512, 768, 1024)}
    assert derl.load(tmp_path / "run" / "agents" / "agent-512.pt", env_fn=make_signs)


def test_stops_at_a_checkpoint_and_in_the_last_rollout_are_kept(tmp_path):
    class StopAtCheckpoint(Recorder):
        def on_checkpoint(self, event):
            super().on_checkpoint(event)
            return False

    class StopLate(Callback):
        def on_update(self, event):
            return event.step < 256  # only the last rollout's updates say stop

    stopper = StopAtCheckpoint()
    config = small(logdir=str(tmp_path / "a"), num_train_steps=1024, checkpoint_every=128)
    result = derl.train(config, progress=False, env_fn=make_signs, callbacks=[stopper])
    assert result.stopped_by == "StopAtCheckpoint" and result.env_steps == 128
    assert [e for e in stopper.events if e[0] == "checkpoint"] == [("checkpoint", 128)]
    config = small(logdir=str(tmp_path / "b"), num_train_steps=256)
    result = derl.train(config, progress=False, env_fn=make_signs, callbacks=[StopLate()])
    assert result.stopped_by == "StopLate" and result.env_steps == 256


def test_a_video_that_fails_is_a_warning_and_the_run_goes_on(tmp_path, capsys):
    def no_render_mode():  # the README's make_env has no render_mode either
        return make_signs()

    config = small(
        logdir=str(tmp_path / "run"),
        num_train_steps=256,
        checkpoint_every=128,
        capture_video_every=128,
    )
    result = derl.train(config, progress=False, env_fn=no_render_mode)
    assert result.env_steps == 256
    assert "derl: warning: no video at step 128" in capsys.readouterr().err
    saved = {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
    assert {"step-000000000128.pt", "step-000000000256.pt"} <= saved


def test_stop_on_reward_needs_evaluations(tmp_path):
    config = small(num_train_steps=64, logdir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="eval_every"):
        derl.train(config, progress=False, env_fn=make_signs, callbacks=[StopOnReward(1)])
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_readme_example_runs(tmp_path, monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Your own networks, envs and callbacks") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 10)]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["result"].stopped_by in ("StopOnReward", "")
    assert (tmp_path / "runs" / "mine" / "config.json").exists()


class Bytes(gym.Env):
    """A 1-D uint8 observation, as ALE's RAM: the step count, 8 times; reward = the action."""

    observation_space = gym.spaces.Box(0, 255, (8,), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(8, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full(8, self.t, np.uint8), float(action), self.t >= 20, False, {}


class BoxBytes(Bytes):
    """Bytes with a continuous action, for SAC: reward = the action."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(0)
        return obs, float(action[0]), terminated, truncated, info


@pytest.mark.parametrize("alg,env_fn", [("dqn", Bytes), ("sac", BoxBytes)])
def test_a_uint8_vector_observation_trains_from_replay(alg, env_fn, tmp_path):
    """Only images stay uint8 in the replay: a uint8 vector reaches the MLP as floats, as the
    runner hands it over (it once failed at the first update with a dtype error)."""
    config = derl.make_config(
        alg,
        "Bytes",
        family="classic",
        logdir=str(tmp_path / alg),
        num_train_steps=300,
        learning_starts=100,
        eval_every=0,
    )
    result = derl.train(config, progress=False, env_fn=env_fn)
    assert result.env_steps >= 300


def test_a_lazy_layer_draws_its_own_weights_not_the_next_layers():
    """The probe's forward pass initialises lazy layers: it must advance torch's RNG as any
    layer's initialisation does, or derl's next layer would draw the same numbers. A network
    without lazy layers is probed on a fork of the RNG and leaves it as it was."""
    import gymnasium as gym
    from torch import nn

    from derl.models import UserEncoder

    space = gym.spaces.Box(-1, 1, (4,))
    for module, advances in [(nn.LazyLinear(64), True), (nn.Linear(4, 64), False)]:
        before = torch.get_rng_state()
        UserEncoder(space, module, "--model m:f")
        assert (not torch.equal(before, torch.get_rng_state())) is advances
