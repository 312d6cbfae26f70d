"""Training speed of derl's DQN, SAC and TD3 against Stable-Baselines3's, same hyperparameters.

Five runs per library: DQN on CartPole-v1 and BreakoutNoFrameskip-v4, SAC on Pendulum-v1 and
HalfCheetah-v5, TD3 on HalfCheetah-v5, each from derl's preset for the env (`derl.make_config`)
with every field mapped onto SB3's class: network, batch size, buffer, learning start, env steps
per round of updates and updates per round, target updates, exploration, learning rates. DQN runs
plain (no double, dueling, n-step, prioritized replay, noisy nets or C51), as SB3 has none of them.

Every run is a fresh Python process (multiprocessing "spawn"), so neither library inherits the
other's torch state (worker threads, the flush-denormal flag derl sets, warm caches). What is
timed, alike for both: building the env and the model, then training. derl: `derl.train(config,
progress=False)`, which also writes TensorBoard scalars and a final checkpoint to a temporary
logdir; SB3: `DQN(...)` / `SAC(...)` / `TD3(...)` and `learn()` with verbose=0. Imports are not
timed. derl runs once per `--variants` entry (sync: its default; envpool; compile) against one
SB3 baseline.

Mapping notes: SB3 has one learning rate for SAC's actor, critics and temperature, so derl's q_lr
is set to lr (the presets' are equal already); the same for TD3, whose noises derl gives in half-
widths of the action box and SB3 in action units (HalfCheetah's box is [-1, 1]: equal). derl's SAC
squashes the actor's log std into [-5, 2] (CleanRL), SB3 clips it to [-20, 2]; SB3 computes critic
gradients it throws away in the actor update, derl freezes the critic there. These are part of what
is measured. Atari: derl uses gymnasium's AtariPreprocessing plus its own life-loss and FIRE
wrappers, SB3 make_atari_env + VecFrameStack(4): the same preprocessing.

    python benchmarks/bench_offpolicy.py [--runs dqn-cartpole ...] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from isolated import isolated  # noqa: E402
from paired import PAIRED_NOTE, paired_ratio  # noqa: E402

# (algorithm, env id, overrides of derl's preset): short budgets that a 2-core machine runs in
# minutes; buffers and learning starts shrunk where the preset's would not fill in that time.
RUNS = {
    "dqn-cartpole": ("dqn", "CartPole-v1", dict(num_train_steps=20_000)),
    "dqn-breakout": (
        "dqn",
        "BreakoutNoFrameskip-v4",
        dict(num_train_steps=6_000, buffer_size=20_000, learning_starts=2_000),
    ),
    "sac-pendulum": ("sac", "Pendulum-v1", dict(num_train_steps=6_000, learning_starts=1_000)),
    "sac-halfcheetah": (
        "sac",
        "HalfCheetah-v5",
        dict(num_train_steps=4_000, learning_starts=1_000),
    ),
    "td3-halfcheetah": (
        "td3",
        "HalfCheetah-v5",
        dict(num_train_steps=6_000, learning_starts=1_000),
    ),
}
# derl runs once per --variants entry, against one SB3 baseline.
VARIANTS = {
    "sync": {},
    "envpool": dict(vectorization="envpool"),
    "compile": dict(compile=True),
}
PLAIN_DQN = dict(double=False, dueling=False, nstep=1, prioritized=False, noisy=False, atoms=1)


def derl_config(alg: str, env_id: str, overrides: dict, logdir: str | None, variant: str = "sync"):
    import derl

    # SB3's SAC and TD3 have one learning rate: the critics get the actor's (the presets' are
    # equal).
    extra = dict(PLAIN_DQN) if alg == "dqn" else dict(q_lr=derl.make_config(alg, env_id).lr)
    extra.update(VARIANTS[variant])
    fields = dict(
        device="cpu",  # --device overrides it
        seed=0,
        logdir=logdir,
        checkpoint_every=10**9,  # the final checkpoint is still written (and timed)
        eval_every=0,  # SB3 does not evaluate during learn(); the CartPole preset would
        threads=0,  # derl leaves torch's thread count as the harness set it for both libraries
    )
    return derl.make_config(alg, env_id, **{**fields, **overrides, **extra})


def run_derl(alg: str, env_id: str, overrides: dict, variant: str = "sync") -> tuple[int, float]:
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  imports are not timed

    import derl

    with tempfile.TemporaryDirectory() as tmp:
        config = derl_config(alg, env_id, overrides, str(Path(tmp) / "run"), variant)
        start = time.perf_counter()
        result = derl.train(config, progress=False)
        return result.env_steps, time.perf_counter() - start


def sb3_env(env_id: str):
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    from derl.env.families import family

    gym.register_envs(ale_py)
    if family(env_id) == "atari":
        env = make_atari_env(
            env_id,
            n_envs=1,
            seed=0,
            vec_env_cls=DummyVecEnv,
            wrapper_kwargs=dict(terminal_on_life_loss=True),
        )
        return VecFrameStack(env, 4)
    return make_vec_env(env_id, n_envs=1, seed=0, vec_env_cls=DummyVecEnv)


def sb3_model(alg: str, env, c):
    """SB3's DQN, SAC or TD3 from derl's config `c`, field by field."""
    import numpy as np
    from stable_baselines3 import DQN, SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    from derl.factory.config import layer_sizes
    from derl.models import is_image

    common = dict(
        buffer_size=c.buffer_size,
        learning_starts=c.learning_starts,
        batch_size=c.batch_size,
        tau=c.tau,
        gamma=c.gamma,
        train_freq=c.train_freq,
        gradient_steps=c.gradient_steps,
        seed=c.seed,
        device=c.device,
        verbose=0,
    )
    if alg == "sac":
        assert c.lr == c.q_lr and c.num_envs == 1 and c.nstep == 1 and c.policy_frequency == 1
        return SAC(
            "MlpPolicy",
            env,
            learning_rate=c.lr,
            ent_coef=f"auto_{c.alpha}" if c.autotune else c.alpha,
            target_entropy="auto",  # -dim(A), as derl
            policy_kwargs=dict(net_arch=list(layer_sizes(c.hidden))),
            **common,
        )
    if alg == "td3":
        assert c.lr == c.q_lr and c.num_envs == 1 and c.nstep == 1
        half = (env.action_space.high - env.action_space.low) / 2  # derl's noise: half-widths
        sizes = list(layer_sizes(c.hidden))
        return TD3(
            "MlpPolicy",
            env,
            learning_rate=c.lr,
            policy_delay=c.policy_frequency,
            target_policy_noise=c.policy_noise * float(half.mean()),
            target_noise_clip=c.noise_clip * float(half.mean()),
            action_noise=NormalActionNoise(np.zeros_like(half), c.exploration_noise * half),
            policy_kwargs=dict(net_arch=sizes),
            **common,
        )
    image = is_image(env.observation_space)
    # derl's hidden "h1,...,hk": an MLP torso of h1..h(k-1), then the head's Linear(., hk) + ReLU
    # and Linear(hk, A): SB3's net_arch [h1, ..., hk]. Images: derl's conv torso, then "512" as
    # the head's hidden layer = SB3's NatureCNN (ending in Linear(., 512) + ReLU), net_arch [].
    sizes = list(layer_sizes(c.hidden))
    policy, net_arch = ("CnnPolicy", []) if image else ("MlpPolicy", sizes)
    return DQN(
        policy,
        env,
        learning_rate=c.lr,
        target_update_interval=c.target_update_period,
        exploration_fraction=c.exploration_steps / c.num_train_steps,
        exploration_initial_eps=c.initial_eps,
        exploration_final_eps=c.final_eps,
        max_grad_norm=c.max_grad_norm,
        policy_kwargs=dict(net_arch=net_arch, optimizer_kwargs=dict(eps=c.optimizer_eps)),
        **common,
    )


def run_sb3(alg: str, env_id: str, overrides: dict) -> tuple[int, float]:
    c = derl_config(alg, env_id, overrides, None)
    start = time.perf_counter()
    env = sb3_env(env_id)
    model = sb3_model(alg, env, c)
    model.learn(total_timesteps=c.num_train_steps)
    seconds = time.perf_counter() - start
    env.close()
    return model.num_timesteps, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["sync"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--repeats", type=int, default=1, help="runs per library; fastest kept")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: both libraries train there")
    args = parser.parse_args(argv)
    if os.getloadavg()[0] > 0.5:
        print(f"note: 1-min load average {os.getloadavg()[0]:.1f} at start: timings may suffer")
    rows = []
    for run in args.runs:
        alg, env_id, overrides = RUNS[run]
        spec = (alg, env_id, {**overrides, "device": args.device})
        best: dict[str, tuple[int, float]] = {}
        rates: dict[str, list[float | None]] = {}  # steps/s of each round (None: failed)
        for _ in range(args.repeats):
            runs = [(f"derl {v}", run_derl, (v,)) for v in args.variants]
            for lib, fn, extra in [*runs, ("sb3", run_sb3, ())]:
                try:  # one row that dies (seen: --compile on a new torch) keeps the others
                    steps, seconds = isolated(fn, *spec, *extra, threads=args.threads)
                except RuntimeError as exc:
                    print(f"{run} {lib}: FAILED: {exc}", flush=True)
                    rates.setdefault(lib, []).append(None)
                    continue
                rates.setdefault(lib, []).append(steps / seconds)
                print(f"{run} {lib}: {steps} steps in {seconds:.1f} s", flush=True)
                if lib not in best or steps / seconds > best[lib][0] / best[lib][1]:
                    best[lib] = (steps, seconds)
        sps = {lib: steps / seconds for lib, (steps, seconds) in best.items()}
        for lib, (steps, seconds) in best.items():
            ratio = f"{sps[lib] / sps['sb3']:.2f}x" if lib != "sb3" and "sb3" in sps else ""
            row = f"| {alg} | {env_id} | {lib} | {steps} | {seconds:.1f} | {sps[lib]:.0f} |"
            row = f"{row} {ratio} |"
            if args.repeats > 1:
                paired = paired_ratio(rates[lib], rates["sb3"]) if ratio else None
                row += f" {paired:.2f}x |" if paired is not None else " |"
            rows.append(row)
    paired_column = args.repeats > 1
    print(
        "\n| run | env | library | env steps | wall s | steps/s | derl/SB3 |"
        + " paired |" * paired_column
    )
    print("|---|---|---|---:|---:|---:|---:|" + "---:|" * paired_column)
    print("\n".join(rows))
    if paired_column:
        print(PAIRED_NOTE)
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ntorch threads {args.threads}, cpus {os.cpu_count()}, repeats {args.repeats}, "
        f"torch {torch.__version__}, device {args.device}, load average after {load}"
    )
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
