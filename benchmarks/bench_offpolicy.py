"""Training throughput of derl's SAC against Stable-Baselines3's SAC, same hyperparameters.

Both train Pendulum-v1 from derl's classic SAC preset (batch 256, one gradient step per env step,
256-256 ReLU actor and twin critics, learned temperature, one env), with `--learning-starts`
random steps first and `--steps` learning steps after them. With one update per env step the
run is update-bound, so what is compared is the rate of the learning phase: env steps per second
from the first update to the end (the random warm-up is timed apart and reported too).

What is timed, for both alike: stepping the env, the replay buffer and the updates; no logger
output, no checkpoints (derl: `make_sac(...).learn()` without a logger; SB3: `learn()` with
verbose=0). Building the models and imports are not timed.

Mapping notes: SB3 has one learning rate for actor, critics and temperature, so derl's lr and q_lr
must be equal (the classic preset's are). SB3's actor clips its log std to [-20, 2], derl's
squashes it into [-5, 2] (CleanRL); SB3 computes critic gradients it throws away in the actor
update, derl freezes the critic there; derl uses fused Adam. These are part of what is measured.

Usage: python benchmarks/bench_offpolicy.py [--steps N] [--learning-starts N] [--seed S]
       [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import torch
from stable_baselines3 import SAC as SB3SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

import derl
import derl.env
from derl.factory.config import build_config
from derl.factory.sac import PRESETS, SACConfig, make_sac

ENV_ID = "Pendulum-v1"


def sac_config(steps: int, learning_starts: int, seed: int) -> SACConfig:
    return build_config(
        SACConfig,
        PRESETS,
        "classic",
        env_id=ENV_ID,
        seed=seed,
        device="cpu",
        learning_starts=learning_starts,
        num_train_steps=learning_starts + steps,
    )


def sb3_kwargs(c: SACConfig) -> dict:
    """derl's SACConfig `c` as keyword arguments of stable_baselines3.SAC."""
    assert c.lr == c.q_lr and c.num_envs == 1 and c.nstep == 1 and c.policy_frequency == 1
    return dict(
        learning_rate=c.lr,
        buffer_size=c.buffer_size,
        learning_starts=c.learning_starts,
        batch_size=c.batch_size,
        tau=c.tau,
        gamma=c.gamma,
        train_freq=c.train_freq,
        gradient_steps=c.gradient_steps,
        ent_coef=f"auto_{c.alpha}" if c.autotune else c.alpha,
        target_entropy="auto",  # -dim(A), as derl
        policy_kwargs=dict(net_arch=[c.hidden, c.hidden]),
        seed=c.seed,
        device=c.device,
        verbose=0,
    )


def run_derl(c: SACConfig) -> tuple[float, float]:
    """(seconds of the random warm-up, seconds of the learning phase)."""
    env = derl.env.make(c.env_id, c.num_envs, c.seed)
    alg = make_sac(c, env, torch.device(c.device))
    marks = {}
    alg.runner.hooks.append(lambda step: marks.setdefault(step >= c.learning_starts, time.time()))
    start = time.time()
    alg.learn()
    end = time.time()
    env.close()
    return marks[True] - start, end - marks[True]


class _Mark(BaseCallback):
    """Notes the time of the first step after `learning_starts` env steps."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts, self.time = learning_starts, None

    def _on_step(self) -> bool:
        if self.time is None and self.num_timesteps >= self.learning_starts:
            self.time = time.time()
        return True


def run_sb3(c: SACConfig) -> tuple[float, float]:
    env = make_vec_env(c.env_id, n_envs=c.num_envs, seed=c.seed, vec_env_cls=DummyVecEnv)
    model = SB3SAC("MlpPolicy", env, **sb3_kwargs(c))
    mark = _Mark(c.learning_starts)
    start = time.time()
    model.learn(total_timesteps=c.num_train_steps, callback=mark)
    end = time.time()
    env.close()
    return mark.time - start, end - mark.time


def bench_sac(
    steps: int = 5_000, learning_starts: int = 1_000, seed: int = 0, repeats: int = 1
) -> dict[str, tuple[float, float]]:
    """{library: (warm-up steps/s, learning steps/s)}, the fastest of `repeats` runs each."""
    c = sac_config(steps, learning_starts, seed)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for lib, run in (("derl", run_derl), ("sb3", run_sb3)):
            warmup_s, learn_s = run(c)
            rates = (learning_starts / warmup_s, steps / learn_s)
            print(
                f"{lib:5s} warm-up {learning_starts} steps {warmup_s:6.1f} s  "
                f"learning {steps} steps {learn_s:6.1f} s  {rates[1]:6.0f} steps/s",
                flush=True,
            )
            if lib not in best or rates[1] > best[lib][1]:
                best[lib] = rates
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5_000, help="env steps after learning starts")
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads for both (1: small MLPs gain little from more)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per library; fastest kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if os.getloadavg()[0] > 0.5:
        print(f"note: 1-min load average {os.getloadavg()[0]:.1f} at start: timings may suffer")
    best = bench_sac(args.steps, args.learning_starts, args.seed, args.repeats)

    print(f"\n| {ENV_ID} SAC | warm-up steps/s | learning steps/s | derl/SB3 (learning) |")
    print("|---|---:|---:|---:|")
    ratio = best["derl"][1] / best["sb3"][1]
    for lib, (warm, learn) in best.items():
        r = f"{ratio:.2f}x" if lib == "derl" else ""
        print(f"| {lib} | {warm:.0f} | {learn:.0f} | {r} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ntorch_threads={args.threads} cpus={os.cpu_count()} repeats={args.repeats} "
        f"torch={torch.__version__} derl={derl.__version__} load_avg_after={load}"
    )
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
