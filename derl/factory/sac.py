"""SAC: config, presets, and the factory."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from derl.alg.sac import SAC
from derl.errors import UsageError
from derl.factory.config import OffPolicyConfig, hp, make_replay_runner
from derl.models import TwinQ
from derl.policies import SACPolicy


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    buffer_size: int = hp(1_000_000, "replay capacity in transitions")
    batch_size: int = hp(256, "transitions per update")
    learning_starts: int = hp(
        5_000, "env steps of uniformly random actions before the first update"
    )
    train_freq: int = hp(1, "env steps per env between rounds of updates")
    gradient_steps: int = hp(1, "updates per round")
    policy_frequency: int = hp(
        1, "actor and temperature updates are delayed to every this many critic updates (TD3)"
    )
    lr: float = hp(3e-4, "Adam learning rate of the actor and the temperature")
    q_lr: float = hp(3e-4, "Adam learning rate of the critics")
    tau: float = hp(0.005, "Polyak averaging rate of the target critics")
    autotune: bool = hp(True, "learn the temperature so that the entropy stays near -dim(A)")
    alpha: float = hp(1.0, "temperature: the initial one, or the fixed one without --autotune")
    nstep: int = hp(1, "n-step returns (1: the paper's one-step soft Bellman target)")
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
        self.check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        self.check(self.q_lr > 0, f"--q-lr must be > 0, got {self.q_lr}")
        self.check(0 < self.tau <= 1, f"--tau must be in (0, 1], got {self.tau}")
        self.check(self.alpha > 0, f"--alpha must be > 0, got {self.alpha}")
        self.check(self.batch_size <= self.buffer_size, "--batch-size must be <= --buffer-size")


_COMMON = dict(num_envs=1, vectorization="sync", normalize=False)
# rl-zoo's Pendulum-v1 SAC (lr 1e-3) with 1000 random steps: a deterministic return near -150
# from ~5k steps on (random play: ~-1200).
_CLASSIC = dict(**_COMMON, num_train_steps=10_000, learning_starts=1_000, lr=1e-3, q_lr=1e-3)
PRESETS = {
    # SAC on Atari is not supported (discrete actions): make_sac refuses it with a UsageError.
    "atari": _CLASSIC,
    # The SAC paper's MuJoCo setting (Table 1 of https://arxiv.org/abs/1812.05905), as in CleanRL's
    # sac_continuous_action (except its critic learning rate of 1e-3): lr 3e-4, batch 256,
    # tau 0.005, 1M buffer, one env, 5000 random steps.
    "mujoco": dict(**_COMMON, num_train_steps=1_000_000),
    "classic": _CLASSIC,
}


def check_box(env, name: str = "sac") -> gym.spaces.Box:
    """The action space, if SAC (or TD3) can act in it: a 1-D Box with finite bounds."""
    space = env.single_action_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise UsageError(
            f"{name} needs a continuous (Box) action space; "
            "for discrete actions use ppo, a2c, dqn or rainbow"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UsageError(f"{name} squashes actions into their box, which must be finite: {space}")
    obs_space = env.single_observation_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(f"{name} takes 1-D Box observations, not {obs_space}")
    return space


def make_sac_policy(config: SACConfig, observation_space, action_space) -> SACPolicy:
    """The actor (also what `derl.load` rebuilds from a checkpoint)."""
    hidden = (config.hidden, config.hidden)
    return SACPolicy(observation_space.shape[0], action_space, hidden, config.learning_starts)


def make_sac(config: SACConfig, env, device: torch.device, logger=None) -> SAC:
    """SAC as a recipe: actor -> runner -> uniform replay -> twin critics -> SAC."""
    action_space = check_box(env)
    obs_space = env.single_observation_space
    policy = make_sac_policy(config, obs_space, action_space).to(device)
    runner = make_replay_runner(config, env, policy, device, logger)
    hidden = (config.hidden, config.hidden)
    critic = TwinQ(obs_space.shape[0], action_space.shape[0], hidden).to(device)
    return SAC(
        runner,
        critic,
        config.lr,
        config.q_lr,
        config.tau,
        config.alpha,
        config.autotune,
        config.policy_frequency,
    )
