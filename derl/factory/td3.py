"""TD3: config, presets, and the factory."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from derl.alg.td3 import TD3
from derl.factory.config import OffPolicyConfig, hp, make_replay_runner
from derl.factory.sac import check_box
from derl.models import TwinQ
from derl.policies import TD3Policy


@dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    buffer_size: int = hp(1_000_000, "replay capacity in transitions")
    batch_size: int = hp(256, "transitions per update")
    learning_starts: int = hp(
        25_000, "env steps of uniformly random actions before the first update"
    )
    train_freq: int = hp(1, "env steps per env between rounds of updates")
    gradient_steps: int = hp(1, "critic updates per round")
    policy_frequency: int = hp(2, "critic updates per actor and target update (the delay)")
    lr: float = hp(3e-4, "Adam learning rate of the actor")
    q_lr: float = hp(3e-4, "Adam learning rate of the critics")
    tau: float = hp(0.005, "Polyak averaging rate of the target actor and critics")
    exploration_noise: float = hp(0.1, "std of the acting noise, in half-widths of the box")
    policy_noise: float = hp(0.2, "std of the target action's smoothing noise (half-widths)")
    noise_clip: float = hp(0.5, "the smoothing noise is clipped to +- this (half-widths)")
    nstep: int = hp(1, "n-step returns (1: the paper's one-step target)")
    hidden: int = hp(256, "width of the two hidden layers of the actor and the critics")
    save_buffer: bool = hp(
        True, "checkpoints hold the replay buffer, so a resumed run continues exactly"
    )

    def validate(self) -> None:
        super().validate()
        self.check_at_least_one(
            "buffer_size",
            "batch_size",
            "train_freq",
            "gradient_steps",
            "policy_frequency",
            "nstep",
            "hidden",
        )
        self.check(self.learning_starts >= 0, "--learning-starts must be >= 0")
        self.check(self.lr > 0 and self.q_lr > 0, "--lr and --q-lr must be > 0")
        self.check(0 < self.tau <= 1, f"--tau must be in (0, 1], got {self.tau}")
        self.check(
            min(self.exploration_noise, self.policy_noise, self.noise_clip) >= 0,
            "--exploration-noise, --policy-noise and --noise-clip must be >= 0",
        )
        self.check(self.batch_size <= self.buffer_size, "--batch-size must be <= --buffer-size")


_COMMON = dict(num_envs=1, vectorization="sync", normalize=False)
# Pendulum-v1: 1000 random steps, lr 1e-3 (as rl-zoo's TD3 there).
_CLASSIC = dict(**_COMMON, num_train_steps=15_000, learning_starts=1_000, lr=1e-3, q_lr=1e-3)
PRESETS = {
    "atari": _CLASSIC,  # discrete actions: refused by make_td3
    # The paper's MuJoCo setting as in CleanRL's td3_continuous_action: lr 3e-4, batch 256,
    # 25k random steps, exploration noise 0.1, smoothing 0.2 clipped at 0.5, delay 2.
    "mujoco": dict(**_COMMON, num_train_steps=1_000_000),
    "classic": _CLASSIC,
}


def make_td3_policy(config: TD3Config, observation_space, action_space) -> TD3Policy:
    """The actor (also what `derl.load` rebuilds from a checkpoint)."""
    hidden = (config.hidden, config.hidden)
    obs_dim = observation_space.shape[0]
    return TD3Policy(
        obs_dim, action_space, hidden, config.learning_starts, config.exploration_noise
    )


def make_td3(config: TD3Config, env, device: torch.device, logger=None) -> TD3:
    """TD3 as a recipe: actor -> runner -> uniform replay -> twin critics -> TD3."""
    action_space = check_box(env, "td3")
    obs_space = env.single_observation_space
    policy = make_td3_policy(config, obs_space, action_space).to(device)
    runner = make_replay_runner(config, env, policy, device, logger)
    hidden = (config.hidden, config.hidden)
    critic = TwinQ(obs_space.shape[0], action_space.shape[0], hidden).to(device)
    return TD3(
        runner,
        critic,
        config.lr,
        config.q_lr,
        config.tau,
        config.policy_noise,
        config.noise_clip,
        config.policy_frequency,
    )
