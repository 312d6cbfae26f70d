"""SAC: config, presets, and the factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from derl.alg.sac import SAC
from derl.env import observation_space as observation_space_of
from derl.errors import UsageError
from derl.factory.config import (
    OffPolicyConfig,
    hp,
    layer_sizes,
    make_box_encoder,
    make_replay_runner,
    make_twin_critic,
)
from derl.logger import Logger
from derl.models import ACTIVATIONS
from derl.policies import SACPolicy


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    # The replay fields (OffPolicyConfig) keep their defaults: the SAC paper's.
    policy_frequency: int = hp(
        1,
        "actor and temperature updates are delayed to every this many critic updates (TD3)",
        at_least=1,
    )
    q_lr: float = hp(3e-4, "Adam learning rate of the critics", above=0)
    autotune: bool = hp(True, "learn the temperature so that the entropy stays near -dim(A)")
    alpha: float = hp(
        1.0, "temperature: the initial one, or the fixed one without --autotune", above=0
    )
    noise_type: str = hp(
        "normal",
        "acting noise of the Gaussian before tanh: normal (i.i.d.) or pink (1/f noise per env, "
        "correlated in time: Eberhard et al. 2023)",
        choices=("normal", "pink"),
    )


_COMMON = dict(num_envs=1, vectorization="sync", normalize=False)
# rl-zoo's Pendulum-v1 SAC (lr 1e-3) with 1000 random steps: a deterministic return near -150
# from ~5k steps on (random play: ~-1200).
_CLASSIC = dict(**_COMMON, num_train_steps=10_000, learning_starts=1_000, lr=1e-3, q_lr=1e-3)
PRESETS: dict[str, dict] = {
    # The SAC paper's MuJoCo setting (Table 1 of https://arxiv.org/abs/1812.05905), as in CleanRL's
    # sac_continuous_action (except its critic learning rate of 1e-3): lr 3e-4, batch 256,
    # tau 0.005, 1M buffer, one env, 5000 random steps.
    "mujoco": dict(**_COMMON, num_train_steps=1_000_000),
    "classic": _CLASSIC,
}


def check_box(space: gym.Space, name: str = "sac") -> gym.spaces.Box:
    """The action space, if SAC (or TD3, `name`) can act in it: a 1-D Box with finite bounds."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise UsageError(
            f"{name} needs a continuous (Box) action space; "
            "for discrete actions use ppo, a2c, dqn or rainbow"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UsageError(f"{name} squashes actions into their box, which must be finite: {space}")
    return space


def make_sac_policy(
    config: SACConfig,
    observation_space: gym.Space,
    action_space: gym.spaces.Box,
    model_fn: Callable | None = None,
):
    """The actor (also what `derl.load` rebuilds from a checkpoint)."""
    return SACPolicy(
        gym.spaces.flatdim(observation_space),
        action_space,
        layer_sizes(config.hidden),
        config.learning_starts,
        ACTIVATIONS[config.activation],
        make_box_encoder(config, observation_space, action_space, model_fn),
        config.noise_type,
        config.num_envs,
    )


def make_sac(
    config: SACConfig,
    env: VectorEnv,
    device: torch.device,
    logger: Logger | None = None,
    model_fn: Callable | None = None,
) -> SAC:
    """SAC as a recipe: actor -> runner -> uniform replay -> twin critics -> SAC."""
    action_space = check_box(env.single_action_space)
    obs_space = observation_space_of(env)
    policy = make_sac_policy(config, obs_space, action_space, model_fn).to(device)
    runner = make_replay_runner(config, env, policy, device, logger)
    critic = make_twin_critic(config, obs_space, action_space, model_fn).to(device)
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
