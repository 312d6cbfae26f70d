"""Typed configs: options shared by every algorithm, validation, presets by env family."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from derl.errors import UsageError

if TYPE_CHECKING:  # the runners, models and policies import only when a network is built
    import gymnasium as gym
    import torch
    from gymnasium.vector import VectorEnv
    from torch import nn

    from derl.logger import Logger
    from derl.models import UserEncoder
    from derl.policies import ActorCriticPolicy
    from derl.runners.replay import ExperienceReplay
    from derl.types import Policy

FAMILIES = ("atari", "mujoco", "classic")


def hp(
    default: Any,
    help: str,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
    device: bool = False,
    sizes: bool = False,
    mapping: bool = False,
    function: bool = False,
) -> Any:
    """A config field with its help text (shown by `derl <alg> -h`) and its bounds, which
    `Config.validate` checks: `at_least` (>=), `above` (>), `at_most` (<=), `below` (<), `choices`,
    `device` (auto, cpu or cuda[:N]), `sizes` (layer sizes such as "256,256"), `mapping` (a dict
    of str keys) and `function` (module:function)."""
    bounds = dict(
        at_least=at_least,
        above=above,
        at_most=at_most,
        below=below,
        choices=choices,
        device=device,
        sizes=sizes,
        mapping=mapping,
        function=function,
    )
    metadata = {
        "help": help,
        **{k: v for k, v in bounds.items() if v is not None and v is not False},
    }
    if isinstance(default, dict):  # a mutable default: each config gets its own copy
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def metadata(cls: type, name: str) -> dict:
    """A field's help and bounds, from the class that declared it: a subclass that only changes
    a default (`batch_size: int = 32`) keeps the help and bounds of its base."""
    for klass in cls.__mro__:
        declared = getattr(klass, "__dataclass_fields__", {}).get(name)
        if declared is not None and declared.metadata:
            return dict(declared.metadata)
    return {}


def bound_error(flag: str, value: Any, meta: dict) -> str | None:
    """What is wrong with `value` under the bounds in `meta`, or None."""
    if isinstance(value, float) and not math.isfinite(value):  # YAML .inf, `--lr nan`
        return f"{flag} must be a finite number, got {value}"
    if "choices" in meta and value not in meta["choices"]:
        return f"{flag} must be {' or '.join(meta['choices'])}, got {value!r}"
    if meta.get("sizes") and not re.fullmatch(r"([1-9][0-9]*(,[1-9][0-9]*)*)?", str(value)):
        return f"{flag} must be layer sizes such as 64,64 or 256,256 (or empty), got {value!r}"
    if meta.get("mapping") and not (
        isinstance(value, dict) and all(isinstance(k, str) for k in value)
    ):
        return f'{flag} must be a JSON object such as \'{{"map_name": "8x8"}}\', got {value!r}'
    if meta.get("function") and value and ":" not in value and not value.startswith("<"):
        return f"{flag} must be module:function, got {value!r}"
    if meta.get("device") and not (value == "auto" or value.split(":")[0] in ("cpu", "cuda")):
        return f"{flag} must be auto, cpu or cuda[:N], got {value!r}"
    low, high = meta.get("at_least"), meta.get("at_most")
    if "above" in meta and not value > meta["above"]:
        return (
            f"{flag} must be > {meta['above']}"
            + (f" and <= {high}" if high is not None else "")
            + f", got {value}"
        )
    if "below" in meta and not value < meta["below"]:
        return f"{flag} must be < {meta['below']}, got {value}"
    if low is not None and high is not None and not low <= value <= high:
        return f"{flag} must be in [{low}, {high}], got {value}"
    if low is not None and not value >= low:
        return f"{flag} must be >= {low}, got {value}"
    if high is not None and not value <= high:
        return f"{flag} must be <= {high}, got {value}"
    return None


def type_error(f: dataclasses.Field, hint: Any, value: Any, meta: dict) -> str | None:
    """What is wrong with the type of `value` for the field `f` (annotated `hint`), or None.
    Only Python (`make_config(hidden=64)`) or a damaged config.json gets a wrong type here: the
    CLI and config files convert their text to the fields' types first, so the message names
    the keyword, not the flag."""
    kinds = typing.get_args(hint) or (hint,)  # `str | None` -> (str, NoneType)
    if any(is_of_type(kind, value) for kind in kinds):
        return None
    kind = next(k for k in kinds if k is not type(None))
    example = f.default if f.default not in (dataclasses.MISSING, None, "") else None
    expected = {
        bool: "True or False",
        int: f"an int such as {example if example is not None else 1}",
        float: f"a number such as {example if example is not None else 0.5}",
        dict: "a dict such as {'map_name': '8x8'}",
        str: f"a string such as {example!r}" if example is not None else "a string",
    }[kind]
    if meta.get("function"):
        expected = "a 'module:function' string"
    elif "choices" in meta:
        expected = f"one of the strings {', '.join(map(repr, meta['choices']))}"
    if type(None) in kinds:
        expected += " or None"
    got = getattr(value, "__qualname__", None) if callable(value) else None
    got = f"{type(value).__name__} {got or repr(value)}"
    got = got if len(got) <= 60 else got[:57] + "..."
    fix = (
        f"; or pass the function itself: derl.train(config, {f.name}=...)"
        if meta.get("function") and callable(value)
        else ""
    )
    return f"{f.name} must be {expected}, got {got}{fix}"


def is_of_type(kind: type, value: Any) -> bool:
    """Whether `value` is of a field type: a bool is no number here (True would train as 1),
    and an int is a fine float (`lr=1`). numpy's ints are not ints (config.json could not hold
    them); its floats are floats."""
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def plain_values(config_cls: type, values: dict) -> dict:
    """Python values as the fields hold them, where nothing is lost: a whole float for an int
    field (`num_train_steps=1e6`, and configs derl wrote before it checked types, which kept
    it so) and a path for `logdir`. Anything else is left for `validate` to judge."""
    ints = {f.name for f in dataclasses.fields(config_cls) if f.type in (int, "int")}
    out = dict(values)
    for name, value in values.items():
        if name in ints and type(value) is float and value.is_integer():
            out[name] = int(value)
        elif name == "logdir" and isinstance(value, os.PathLike):
            out[name] = os.fspath(value)
    return out


def layer_sizes(text: str) -> tuple[int, ...]:
    """ "256,256" -> (256, 256); "" -> ()."""
    return tuple(int(size) for size in text.split(",") if size)


ACTIVATION_NAMES = ("tanh", "relu", "elu", "gelu", "silu", "leaky_relu")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Config:
    """Options every algorithm shares."""

    env_id: str = hp("CartPole-v1", "gymnasium env id; picks the atari / mujoco / classic preset")
    env_kwargs: dict = hp(
        {}, 'keyword arguments of gymnasium.make, as JSON: \'{"map_name": "8x8"}\'', mapping=True
    )
    env_fn: str = hp(
        "",
        "module:function making the env instead of gymnasium.make(env_id) (recorded by "
        "derl.train(config, env_fn=...))",
        function=True,
    )
    model: str = hp(
        "",
        "module:function (observation_space, action_space, config) -> torch.nn.Module: your "
        "encoder of observations into [batch, features]; --hidden layers and the heads go on top",
        function=True,
    )
    seed: int = hp(
        0, "seed of torch, numpy and the envs (env i gets seed + i)", at_least=0, at_most=2**31 - 1
    )
    device: str = hp("auto", "auto (cuda when available), cpu or cuda[:N]", device=True)
    logdir: str | None = hp(
        None,
        "where TensorBoard events and config.json go (default runs/<env>/<alg>-seed<seed>-<time>)",
    )
    num_envs: int = hp(8, "number of envs stepped together", at_least=1)
    vectorization: str = hp(
        "sync",
        "sync (one process), async (one process per env) or envpool (EnvPool's C++ pool: "
        'pip install "derl[envpool]")',
        choices=("sync", "async", "envpool"),
    )
    num_train_steps: int = hp(1_000_000, "env steps to train for, summed over envs", at_least=1)
    compile: bool = hp(
        False,
        "run the update through torch.compile, and acting too on CUDA (CUDA graphs there); "
        "the compile time is printed once",
    )
    deterministic: bool = hp(
        True,
        "on CUDA, deterministic kernels (cuDNN, cuBLAS, scatters), as CleanRL's "
        "--torch-deterministic: a seed repeats and a resumed run continues bit for bit, a little "
        "slower; CPU runs are deterministic either way",
    )
    normalize: bool = hp(
        False, "running observation and reward normalisation (images: rewards only)"
    )
    gamma: float = hp(0.99, "discount factor", at_least=0, at_most=1)
    checkpoint_every: int = hp(
        100_000,
        "env steps between checkpoints (one is also written at the end and on Ctrl-C)",
        at_least=1,
    )
    checkpoint_minutes: float = hp(
        0.0,
        "also write a checkpoint once this many minutes of wall time have passed since the "
        "last one (0: by steps only): what a run killed without warning loses at most",
        at_least=0,
    )
    keep_checkpoints: int = hp(3, "how many of the newest checkpoints to keep", at_least=1)
    eval_every: int = hp(
        0, "env steps between evaluations logged as eval/return (0: never)", at_least=0
    )
    eval_episodes: int = hp(10, "episodes per evaluation", at_least=1)
    threads: int = hp(
        1,
        "torch CPU threads of this run (0: one per core); the Atari presets use 0 "
        "(see --threads in the README)",
        at_least=0,
    )
    nproc: int = hp(
        1,
        "processes training together, data-parallel on torch.distributed (each steps its own "
        "--num-envs envs; --num-train-steps counts all); >1 starts them through torchrun",
        at_least=1,
    )
    dist_backend: str = hp(
        "auto",
        "torch.distributed backend of --nproc or torchrun: auto (nccl with one GPU per process, "
        "else gloo), gloo or nccl",
        choices=("auto", "gloo", "nccl"),
    )
    capture_video_every: int = hp(
        0,
        "env steps between videos of one deterministic episode of the agent, to LOGDIR/videos, "
        "TensorBoard and W&B (0: never)",
        at_least=0,
    )
    track: bool = hp(False, 'log the run to Weights & Biases (pip install "derl[wandb]")')
    wandb_project: str = hp("derl", "W&B project of --track")
    wandb_entity: str | None = hp(None, "W&B entity (user or team) of --track (None: yours)")
    wandb_group: str | None = hp(None, "W&B group of --track, e.g. the seeds of one config")

    def validate(self) -> None:
        """Raise UsageError for values that cannot work: each field's type and declared bounds,
        then the relations between fields (`relations`)."""
        types = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), metadata(type(self), f.name)
            error = type_error(f, types[f.name], value, meta) or bound_error(
                flag(f.name), value, meta
            )
            if error:
                raise UsageError(error)
        if isinstance(self.env_kwargs, dict) and "render_mode" in self.env_kwargs:
            raise UsageError(
                "--env-kwargs: render_mode is derl's to set (rgb_array when it films, "
                "--capture-video-every or `derl eval --video`); take it out"
            )
        if self.logdir is not None and not self.logdir.strip():
            raise UsageError(
                "--logdir is empty; name a directory, or leave the flag out for the default "
                "runs/<env>/<alg>-seed<seed>-<time>"
            )
        for ok, message in self.relations():
            if not ok:
                raise UsageError(message)

    def relations(self) -> list[tuple[bool, str]]:
        """(holds, message) for the checks that involve several fields; none here."""
        return []


@dataclass(frozen=True)
class ActorCriticConfig(Config):
    """Options of the on-policy actor-critics (PPO, A2C), declared once; each changes defaults."""

    num_runner_steps: int = hp(128, "env steps per env per rollout", at_least=1)
    gae_lambda: float = hp(
        0.95, "GAE lambda (1.0: the plain n-step advantage)", at_least=0, at_most=1
    )
    value_loss_coef: float = hp(0.5, "value loss weight (the loss is 0.5 * squared error)")
    entropy_coef: float = hp(0.01, "entropy bonus weight")
    normalize_advantages: bool = hp(True, "normalise advantages within each (mini)batch")
    lr: float = hp(2.5e-4, "learning rate (PPO: Adam, A2C: RMSprop)", above=0)
    anneal_lr: bool = hp(True, "anneal the learning rate linearly to 0 over training")
    optimizer_eps: float = hp(1e-5, "optimizer epsilon", above=0)
    max_grad_norm: float = hp(0.5, "clip the global gradient norm to this value", above=0)
    hidden: str = hp(
        "64,64",
        "hidden layer sizes of the policy and value MLPs (empty: heads on the encoder)",
        sizes=True,
    )
    activation: str = hp("tanh", "activation of the MLPs", choices=ACTIVATION_NAMES)
    log_std_init: float = hp(0.0, "initial log std of Gaussian actions")
    use_sde: bool = hp(
        False,
        "gSDE for Box actions: exploration noise as a function of the state, its matrix "
        "redrawn before each rollout (Raffin et al. 2022; SB3's use_sde)",
    )
    sde_sample_freq: int = hp(
        -1,
        "gSDE: also redraw the exploration matrices every this many steps within a rollout "
        "(-1: only before each rollout; SB3's sde_sample_freq)",
        at_least=-1,
    )
    ortho_init: bool = hp(True, "orthogonal init (openai baselines); off: torch's default")

    def relations(self) -> list[tuple[bool, str]]:
        freq = self.sde_sample_freq
        return [
            (freq != 0, "--sde-sample-freq must be -1 (only before each rollout) or >= 1"),
            (freq == -1 or self.use_sde, "--sde-sample-freq needs --use-sde"),
        ]


def make_encoder(
    config: Config,
    observation_space: gym.Space,
    action_space: gym.Space,
    model_fn: Callable | None = None,
) -> UserEncoder | None:
    """The encoder of the user's network (`model_fn`, else `config.model` imported), or None:
    then the network builder uses derl's own (derl.models.make_encoder) where it needs one."""
    from torch import nn

    from derl.custom import UNIMPORTABLE, call_user_function, import_function
    from derl.models import UserEncoder

    if model_fn is None and not config.model:
        return None
    fn = model_fn or import_function(config.model, "--model")
    name = config.model.removeprefix(UNIMPORTABLE).strip() or getattr(fn, "__qualname__", "")
    label = f"--model {name or 'model'}"
    args = (observation_space, action_space, config)
    module = call_user_function(fn, label, args, "(observation_space, action_space, config)")
    norms = module.modules() if isinstance(module, nn.Module) else ()
    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in norms)
    if batch_norm and getattr(config, "num_envs", 2) == 1:
        # the runner acts in training mode (noisy nets explore so) on one observation per env,
        # and torch's batch norm refuses a batch of one there, at the first step
        raise UsageError(
            f"{label} has a BatchNorm layer, which cannot act on the one observation per step "
            "of --num-envs 1; use LayerNorm instead, or --num-envs 2 or more"
        )
    return UserEncoder(observation_space, module, label)


def make_actor_critic_policy(
    config: ActorCriticConfig,
    observation_space: gym.Space,
    action_space: gym.Space,
    model_fn: Callable | None = None,
) -> ActorCriticPolicy:
    """The actor-critic a config describes (also what `derl.load` rebuilds)."""
    from derl.models import make_model
    from derl.policies import ActorCriticPolicy

    model = make_model(
        observation_space,
        action_space,
        layer_sizes(config.hidden),
        config.activation,
        config.log_std_init,
        config.ortho_init,
        make_encoder(config, observation_space, action_space, model_fn),
        config.num_envs if config.use_sde else 0,
    )
    return ActorCriticPolicy(model, action_space)


def resample_sde_before_rollouts(runner, policy, sample_freq: int = -1) -> None:
    """gSDE (`--use-sde`): new exploration matrices before each rollout, and every
    `sample_freq` steps within one when it is > 0 (SB3's sde_sample_freq: at rollout steps
    0, k, 2k, ...). Runner hooks, so a checkpoint (taken before other hooks act at its step)
    holds the matrices a resumed run then redraws the same way."""
    from derl.models import GSDEHead

    head = policy.model.head
    if not isinstance(head, GSDEHead):
        return
    runner.hooks.append(lambda step: head.resample())
    if sample_freq > 0:
        runner.step_hooks.append(lambda t: head.resample() if t and t % sample_freq == 0 else None)


def make_box_encoder(
    config: Config,
    observation_space: gym.Space,
    action_space: gym.Space,
    model_fn: Callable | None = None,
) -> nn.Module | None:
    """A new encoder for SAC's and TD3's actor or critics: the user's, derl's for observations
    that are not vectors, or None (the MLPs read vectors as they are)."""
    from derl.models import is_vector
    from derl.models import make_encoder as derl_encoder

    encoder: nn.Module | None = make_encoder(config, observation_space, action_space, model_fn)
    if encoder is None and not is_vector(observation_space):
        encoder = derl_encoder(observation_space)
    return encoder


def make_twin_critic(config: OffPolicyConfig, observation_space, action_space, model_fn=None):
    """SAC's and TD3's twin critics, with an encoder of their own (see make_box_encoder)."""
    import gymnasium as gym

    from derl.models import ACTIVATIONS, TwinQ

    return TwinQ(
        gym.spaces.flatdim(observation_space),
        action_space.shape[0],
        layer_sizes(config.hidden),
        ACTIVATIONS[config.activation],
        make_box_encoder(config, observation_space, action_space, model_fn),
    )


@dataclass(frozen=True)
class OffPolicyConfig(Config):
    """Options of the algorithms that learn from a replay buffer (DQN, Rainbow, SAC, TD3).

    Declared once here; an algorithm's config changes only their defaults.
    """

    buffer_device: str = hp(
        "cpu",
        "where the replay buffer lives: cpu, cuda[:N], or auto (the training GPU when the "
        "buffer takes at most half of its free memory): on the GPU, batches need no copy",
        device=True,
    )
    buffer_size: int = hp(1_000_000, "replay capacity in transitions", at_least=1)
    batch_size: int = hp(256, "transitions per update", at_least=1)
    learning_starts: int = hp(
        5_000,
        "env steps of experience (random actions for SAC and TD3) before the first update",
        at_least=0,
    )
    train_freq: int = hp(1, "env steps per env between rounds of updates", at_least=1)
    gradient_steps: int = hp(1, "updates per round", at_least=1)
    nstep: int = hp(1, "n-step returns (1: the papers' one-step target)", at_least=1)
    lr: float = hp(
        3e-4, "Adam learning rate (of the actor and temperature for SAC and TD3)", above=0
    )
    tau: float = hp(
        0.005,
        "target networks move this far towards the online ones (1: a copy)",
        above=0,
        at_most=1,
    )
    hidden: str = hp("256,256", "hidden layer sizes of the actor and the critics", sizes=True)
    activation: str = hp("relu", "activation of the hidden layers", choices=ACTIVATION_NAMES)
    save_buffer: bool = hp(
        True, "checkpoints hold the replay buffer, so a resumed run continues exactly"
    )

    def relations(self) -> list[tuple[bool, str]]:
        return [(self.batch_size <= self.buffer_size, "--batch-size must be <= --buffer-size")]


def make_replay_runner(
    config: OffPolicyConfig,
    env: VectorEnv,
    policy: Policy,
    device: torch.device,
    logger: Logger | None = None,
    alpha: float = 0.0,
    beta: float = 0.4,
) -> ExperienceReplay:
    """The runner of every replay algorithm: EnvRunner -> ExperienceReplay over a ReplayStorage
    sized and placed by `config` (an OffPolicyConfig with the replay fields). Prioritized when
    `alpha` > 0."""
    from derl.env.families import family
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
        # Only derl's Atari envs stack frames (4 on the first axis), which the buffer keeps once;
        # any other image is stored whole.
        frame_stack=not config.env_fn and family(config.env_id) == "atari",
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


def build_config(config_cls: type, values: dict, **overrides) -> Config:
    """`values` (resolved presets) with `overrides` on top, validated; unknown keys and bad
    values are UsageErrors."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(
            f"unknown hyperparameter(s) for {config_cls.__name__}: {', '.join(unknown)}"
        )
    config = config_cls(**plain_values(config_cls, {**values, **overrides}))
    config.validate()
    return config
