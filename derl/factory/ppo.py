"""PPO: config, presets from the published recipes, and the factory that wires the layers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from gymnasium.vector import VectorEnv

from derl.alg import Alg, PPOLoss, linear_schedule
from derl.env import observation_space
from derl.factory.config import (
    ActorCriticConfig,
    hp,
    make_actor_critic_policy,
    resample_sde_before_rollouts,
)
from derl.logger import Logger
from derl.runners import GAE, EnvRunner, MergeTimeBatch, Minibatches, NormalizeAdvantages, Transform
from derl.types import Runner


@dataclass(frozen=True)
class PPOConfig(ActorCriticConfig):
    # The actor-critic fields (ActorCriticConfig) keep their defaults: CleanRL's Atari PPO.
    num_epochs: int = hp(4, "passes over each rollout", at_least=1)
    num_minibatches: int = hp(
        4, "minibatches per epoch; must divide num_envs * num_runner_steps", at_least=1
    )
    clip_range: float = hp(
        0.1, "PPO ratio clip (also clips the value loss when clip_value_loss)", above=0
    )
    clip_value_loss: bool = hp(True, "clip the value loss around the old values (baselines ppo2)")
    anneal_clip_range: bool = hp(False, "anneal the clip range linearly to 0 over training")
    recompute_advantages: bool = hp(
        False,
        "recompute the values and GAE advantages with the current critic before every epoch "
        "(Andrychowicz et al. 2021; Tianshou's MuJoCo PPO)",
    )

    def relations(self) -> list[tuple[bool, str]]:
        batch = self.num_envs * self.num_runner_steps
        divides = batch % self.num_minibatches == 0
        return [
            *super().relations(),
            (
                divides,
                f"--num-minibatches {self.num_minibatches} does not divide the batch of "
                f"{batch} (num_envs * num_runner_steps)",
            ),
        ]


PRESETS: dict[str, dict] = {
    # CleanRL ppo_atari / openai baselines ppo2 Atari.
    # The Nature CNN with linear policy and value heads on its 512 features: no hidden layers.
    # threads=0: one per core; the CNN's convolutions pay for a second thread (README: --threads).
    "atari": dict(num_envs=8, num_train_steps=10_000_000, hidden="", threads=0),
    # CleanRL ppo_continuous_action / the PPO paper's MuJoCo setting.
    "mujoco": dict(
        num_envs=1,
        num_train_steps=1_000_000,
        num_runner_steps=2048,
        num_epochs=10,
        num_minibatches=32,
        clip_range=0.2,
        entropy_coef=0.0,
        lr=3e-4,
        normalize=True,
    ),
    # rl-zoo's tuned CartPole-v1 recipe (hyperparams/ppo.yml) on SB3's PPO: lr and clip range
    # annealed from 1e-3 and 0.2, no value clipping, and SB3's value loss 0.5 * MSE (derl's
    # loss already halves the squared error, so its weight is 1).
    "classic": dict(
        num_envs=8,
        num_train_steps=100_000,
        num_runner_steps=32,
        num_epochs=20,
        num_minibatches=1,
        gamma=0.98,
        gae_lambda=0.8,
        clip_range=0.2,
        anneal_clip_range=True,
        clip_value_loss=False,
        value_loss_coef=1.0,
        entropy_coef=0.0,
        lr=1e-3,
    ),
}


def make_ppo(
    config: PPOConfig,
    env: VectorEnv,
    device: torch.device,
    logger: Logger | None = None,
    model_fn: Callable | None = None,
) -> Alg:
    """PPO as a recipe: policy -> runner -> GAE -> minibatches -> loss -> Alg."""
    policy = make_actor_critic_policy(
        config, observation_space(env), env.single_action_space, model_fn
    ).to(device)
    runner: Runner = EnvRunner(
        env, policy, config.num_runner_steps, config.num_train_steps, device, logger
    )
    resample_sde_before_rollouts(runner, policy, config.sde_sample_freq)
    # Advantages from the values of acting time, once per rollout; or, recomputed, from the
    # critic as each epoch finds it ("What Matters in On-Policy RL", Andrychowicz et al. 2021,
    # https://arxiv.org/abs/2006.05990, recommend recomputing them once per pass).
    gae = GAE(policy, config.gamma, config.gae_lambda, config.recompute_advantages)
    if config.recompute_advantages:
        per_epoch: list[Callable] = [gae, MergeTimeBatch()]
        runner = Minibatches(runner, config.num_epochs, config.num_minibatches, per_epoch)
    else:
        runner = Transform(runner, [gae, MergeTimeBatch()])
        runner = Minibatches(runner, config.num_epochs, config.num_minibatches)
    if config.normalize_advantages:
        runner = Transform(runner, [NormalizeAdvantages()])
    loss = PPOLoss(
        policy,
        config.clip_range,
        config.value_loss_coef,
        config.entropy_coef,
        config.clip_value_loss,
    )
    optimizer = torch.optim.Adam(
        policy.parameters(), lr=config.lr, eps=config.optimizer_eps, fused=True
    )  # fused: one kernel for all parameters, ~15% faster updates of small MLPs on CPU
    schedules = {}
    if config.anneal_lr:
        schedules["lr"] = linear_schedule(config.lr, config.num_train_steps)
    if config.anneal_clip_range:
        schedules["clip_range"] = linear_schedule(config.clip_range, config.num_train_steps)
    return Alg(runner, loss, optimizer, config.max_grad_norm, schedules)
