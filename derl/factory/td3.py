"""TD3: config, presets, and the factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import torch
from gymnasium.vector import VectorEnv

from derl.alg.td3 import TD3
from derl.env import observation_space as observation_space_of
from derl.factory.config import (
    OffPolicyConfig,
    hp,
    layer_sizes,
    make_box_encoder,
    make_replay_runner,
    make_twin_critic,
)
from derl.factory.sac import check_box
from derl.logger import Logger
from derl.models import ACTIVATIONS
from derl.policies import TD3Policy


@dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    learning_starts: int = 25_000  # the TD3 paper's random steps (the replay fields: base)

    policy_frequency: int = hp(
        2, "critic updates per actor and target update (the delay)", at_least=1
    )
    q_lr: float = hp(3e-4, "Adam learning rate of the critics", above=0)
    exploration_noise: float = hp(
        0.1, "std of the acting noise (OU: its sigma), in half-widths of the box", at_least=0
    )
    noise_type: str = hp(
        "normal",
        "acting noise: normal (i.i.d. Gaussian) or ou (Ornstein-Uhlenbeck per env, theta 0.15, "
        "dt 0.01: correlated in time, as SB3's OrnsteinUhlenbeckActionNoise)",
        choices=("normal", "ou"),
    )
    policy_noise: float = hp(
        0.2, "std of the target action's smoothing noise (half-widths)", at_least=0
    )
    noise_clip: float = hp(
        0.5, "the smoothing noise is clipped to +- this (half-widths)", at_least=0
    )


_COMMON = dict(num_envs=1, vectorization="sync", normalize=False)
# Pendulum-v1: 1000 random steps, lr 1e-3 (as rl-zoo's TD3 there).
_CLASSIC = dict(**_COMMON, num_train_steps=15_000, learning_starts=1_000, lr=1e-3, q_lr=1e-3)
PRESETS: dict[str, dict] = {
    # The paper's MuJoCo setting as in CleanRL's td3_continuous_action: lr 3e-4, batch 256,
    # 25k random steps, exploration noise 0.1, smoothing 0.2 clipped at 0.5, delay 2.
    "mujoco": dict(**_COMMON, num_train_steps=1_000_000),
    "classic": _CLASSIC,
}


def make_td3_policy(
    config: TD3Config,
    observation_space: gym.Space,
    action_space: gym.spaces.Box,
    model_fn: Callable | None = None,
):
    """The actor (also what `derl.load` rebuilds from a checkpoint)."""
    return TD3Policy(
        gym.spaces.flatdim(observation_space),
        action_space,
        layer_sizes(config.hidden),
        config.learning_starts,
        config.exploration_noise,
        ACTIVATIONS[config.activation],
        make_box_encoder(config, observation_space, action_space, model_fn),
        config.noise_type,
        config.num_envs,
    )


def make_td3(
    config: TD3Config,
    env: VectorEnv,
    device: torch.device,
    logger: Logger | None = None,
    model_fn: Callable | None = None,
) -> TD3:
    """TD3 as a recipe: actor -> runner -> uniform replay -> twin critics -> TD3."""
    action_space = check_box(env.single_action_space, "td3")
    obs_space = observation_space_of(env)
    policy = make_td3_policy(config, obs_space, action_space, model_fn).to(device)
    runner = make_replay_runner(config, env, policy, device, logger)
    critic = make_twin_critic(config, obs_space, action_space, model_fn).to(device)
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
