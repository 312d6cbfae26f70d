"""Typed configs: options shared by every algorithm, validation, presets by env family."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from derl.errors import UsageError

FAMILIES = ("atari", "mujoco", "classic")


def hp(default: Any, help: str) -> Any:
    """A config field with its help text (shown by `derl <alg> -h`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Options every algorithm shares."""

    env_id: str = hp("CartPole-v1", "gymnasium env id; picks the atari / mujoco / classic preset")
    seed: int = hp(0, "seed of torch, numpy and the envs (env i gets seed + i)")
    device: str = hp("auto", "auto (cuda when available), cpu or cuda[:N]")
    logdir: str | None = hp(
        None,
        "where TensorBoard events and config.json go (default runs/<env>/<alg>-seed<seed>-<time>)",
    )
    num_envs: int = hp(8, "number of envs stepped together")
    vectorization: str = hp("sync", "sync (one process) or async (one process per env)")
    num_train_steps: int = hp(1_000_000, "env steps to train for, summed over envs")
    normalize: bool = hp(False, "running observation and reward normalisation")
    gamma: float = hp(0.99, "discount factor")
    checkpoint_every: int = hp(
        100_000, "env steps between checkpoints (one is also written at the end and on Ctrl-C)"
    )
    keep_checkpoints: int = hp(3, "how many of the newest checkpoints to keep")
    eval_every: int = hp(0, "env steps between evaluations logged as eval/return (0: never)")
    eval_episodes: int = hp(10, "episodes per evaluation")
    threads: int = hp(0, "torch CPU threads (0: torch's default, one per core)")

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message)

    def check_at_least_one(self, *names: str) -> None:
        for name in names:
            self.check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1")

    def validate(self) -> None:
        """Raise UsageError for values that cannot work; subclasses add their own checks."""
        self.check(self.num_envs >= 1, f"--num-envs must be >= 1, got {self.num_envs}")
        self.check(
            self.num_train_steps >= 1, f"--num-train-steps must be >= 1, got {self.num_train_steps}"
        )
        self.check(
            self.vectorization in ("sync", "async"),
            f"--vectorization must be sync or async, got {self.vectorization!r}",
        )
        self.check(self.checkpoint_every >= 1, "--checkpoint-every must be >= 1")
        self.check(self.keep_checkpoints >= 1, "--keep-checkpoints must be >= 1")
        self.check(self.eval_every >= 0, "--eval-every must be >= 0")
        self.check(self.eval_episodes >= 1, "--eval-episodes must be >= 1")
        self.check(self.threads >= 0, f"--threads must be >= 0, got {self.threads}")
        self.check(0 <= self.gamma <= 1, f"--gamma must be in [0, 1], got {self.gamma}")
        self.check(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"),
            f"--device must be auto, cpu or cuda[:N], got {self.device!r}",
        )


@dataclass(frozen=True)
class OffPolicyConfig(Config):
    """Options of the algorithms that learn from a replay buffer."""

    buffer_device: str = hp(
        "cpu",
        "where the replay buffer lives: cpu, cuda[:N], or auto (the training GPU when the "
        "buffer takes at most half of its free memory): on the GPU, batches need no copy",
    )

    def validate(self) -> None:
        super().validate()
        self.check(
            self.buffer_device == "auto" or self.buffer_device.split(":")[0] in ("cpu", "cuda"),
            f"--buffer-device must be auto, cpu or cuda[:N], got {self.buffer_device!r}",
        )


def make_replay_runner(config, env, policy, device, logger=None, alpha=0.0, beta=0.4):
    """The runner of every replay algorithm: EnvRunner -> ExperienceReplay over a ReplayStorage
    sized and placed by `config` (an OffPolicyConfig with the replay fields). Prioritized when
    `alpha` > 0."""
    from derl.runners import EnvRunner  # here, so that configs import without the runners
    from derl.runners.replay import ExperienceReplay, ReplayStorage

    runner = EnvRunner(env, policy, config.train_freq, config.num_train_steps, device, logger)
    storage = ReplayStorage(
        env.single_observation_space,
        env.single_action_space,
        env.num_envs,
        config.buffer_size,
        config.nstep,
        config.gamma,
        seed=config.seed,
        device=config.buffer_device,
        train_device=device,
    )
    return ExperienceReplay(
        runner,
        storage,
        config.batch_size,
        config.learning_starts,
        config.gradient_steps,
        alpha,
        beta,
        device=device,
        save_buffer=config.save_buffer,
    )


def build_config(config_cls: type, presets: dict[str, dict], family: str, **overrides) -> Config:
    """The family's preset with `overrides` on top; unknown keys and bad values are UsageErrors."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(
            f"unknown hyperparameter(s) for {config_cls.__name__}: {', '.join(unknown)}"
        )
    config = config_cls(**{**presets[family], **overrides})
    config.validate()
    return config
