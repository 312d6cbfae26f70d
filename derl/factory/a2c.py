"""A2C: config, presets, and the factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from gymnasium.vector import VectorEnv

from derl.alg import A2CLoss, Alg, linear_schedule
from derl.env import observation_space
from derl.factory.config import (
    ActorCriticConfig,
    hp,
    make_actor_critic_policy,
    resample_sde_before_rollouts,
)
from derl.logger import Logger
from derl.optim import RMSpropTF
from derl.runners import GAE, EnvRunner, MergeTimeBatch, NormalizeAdvantages, Transform
from derl.types import Runner


@dataclass(frozen=True)
class A2CConfig(ActorCriticConfig):
    # The actor-critic fields (ActorCriticConfig) with the A2C paper's / baselines' defaults:
    num_runner_steps: int = 5
    gae_lambda: float = 1.0
    # A2CLoss halves the squared error: 1.0 is baselines' and SB3's vf_coef 0.5.
    value_loss_coef: float = 1.0
    normalize_advantages: bool = False
    lr: float = 7e-4

    rmsprop_alpha: float = hp(0.99, "RMSprop smoothing constant", at_least=0, below=1)
    rmsprop_tf: bool = hp(
        False,
        "TensorFlow's RMSprop (eps inside the root, squared-gradient average starting at 1), "
        "as openai baselines; torch's takes far larger first steps",
    )


PRESETS: dict[str, dict] = {
    # openai baselines A2C on Atari, with its TensorFlow RMSprop (rl-zoo: RMSpropTFLike).
    "atari": dict(num_envs=8, num_train_steps=10_000_000, rmsprop_tf=True, hidden="", threads=0),
    # rl-zoo's A2C recipe for the PyBullet locomotion envs (HalfCheetahBulletEnv-v0), without its
    # gSDE, log-std and init tweaks, and at 1M steps where the zoo runs 2M.
    "mujoco": dict(
        num_envs=4,
        num_train_steps=1_000_000,
        num_runner_steps=8,
        gae_lambda=0.9,
        value_loss_coef=0.8,  # the zoo's vf_coef 0.4
        entropy_coef=0.0,
        lr=9.6e-4,
        normalize=True,
    ),
    # rl-zoo's CartPole-v1 recipe, except that the lr anneals to 0 (the config's default; the
    # zoo's is constant): for classic envs without a table of their own, a safer default.
    "classic": dict(num_envs=8, num_train_steps=500_000, entropy_coef=0.0),
}


def make_a2c(
    config: A2CConfig,
    env: VectorEnv,
    device: torch.device,
    logger: Logger | None = None,
    model_fn: Callable | None = None,
) -> Alg:
    """A2C as a recipe: policy -> runner -> n-step (GAE) advantages -> one update per rollout."""
    policy = make_actor_critic_policy(
        config, observation_space(env), env.single_action_space, model_fn
    ).to(device)
    runner: Runner = EnvRunner(
        env, policy, config.num_runner_steps, config.num_train_steps, device, logger
    )
    resample_sde_before_rollouts(runner, policy, config.sde_sample_freq)
    transforms: list[Callable[[Any], Any]] = [
        GAE(policy, config.gamma, config.gae_lambda),
        MergeTimeBatch(),
    ]
    if config.normalize_advantages:
        transforms.append(NormalizeAdvantages())
    runner = Transform(runner, transforms)
    loss = A2CLoss(policy, config.value_loss_coef, config.entropy_coef)
    rmsprop = RMSpropTF if config.rmsprop_tf else torch.optim.RMSprop
    optimizer = rmsprop(
        policy.parameters(), lr=config.lr, alpha=config.rmsprop_alpha, eps=config.optimizer_eps
    )
    schedules = {}
    if config.anneal_lr:
        schedules["lr"] = linear_schedule(config.lr, config.num_train_steps)
    return Alg(runner, loss, optimizer, config.max_grad_norm, schedules)
