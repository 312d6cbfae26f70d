"""Training throughput of derl's PPO against Stable-Baselines3's PPO, same hyperparameters.

For each env (CartPole-v1, BreakoutNoFrameskip-v4) this script takes derl's preset from
`derl.make_config("ppo", env_id, ...)`, maps every field onto `stable_baselines3.PPO`, trains both
libraries for the same number of env steps, each run in a fresh process (`isolated.py`), and prints
a markdown table of env steps actually taken, wall seconds, steps per second and the derl / SB3
speed ratio (> 1: derl is faster).

What is timed, for both libraries alike: building the vector env and the model, then training
(derl: `derl.train(config, progress=False)`, which also writes TensorBoard scalars and its final
checkpoint to a temporary logdir; SB3: `PPO(...)` + `learn()` with no logger output). Imports are
not timed. Both libraries round the step budget up to whole rollouts, so the steps each really took
are reported and the rate is computed from them. Both run with the same `torch.set_num_threads`
and sync vectorization (derl's default "sync", SB3's DummyVecEnv).

Hyperparameter mapping notes (speed does not depend on them, learning curves may a little):
  * derl's value loss is 0.5 * mean(max(unclipped, clipped)) (baselines ppo2); SB3's is the
    mean of the clipped squared error without the 0.5, so vf_coef = 0.5 * value_loss_coef gives
    the same loss scale, and clip_range_vf = clip_range when clip_value_loss.
  * Atari preprocessing: derl uses gymnasium's AtariPreprocessing plus its own wrappers; SB3 uses
    make_atari_env (AtariWrapper) + VecFrameStack(4). Both: noop reset, frame skip 4 with max-pool,
    84x84 gray, life-loss terminals, FIRE on reset, reward clipping, 4 stacked frames.

Usage: python benchmarks/bench_ppo.py [--envs cartpole breakout] [--steps-cartpole N]
       [--steps-breakout N] [--seed S] [--device cpu] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import ale_py  # noqa: F401  registers the ALE ids for SB3's gym.make
import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

import derl
from derl.env.families import family

sys.path.insert(0, str(Path(__file__).parent))
from isolated import isolated  # noqa: E402

gym.register_envs(ale_py)

ENVS = {"cartpole": "CartPole-v1", "breakout": "BreakoutNoFrameskip-v4"}


def derl_config(env_id: str, steps: int, seed: int, device: str, logdir: str | None):
    return derl.make_config(
        "ppo", env_id, num_train_steps=steps, seed=seed, device=device, logdir=logdir
    )


def sb3_kwargs(c) -> dict:
    """derl's PPOConfig `c` as keyword arguments of stable_baselines3.PPO."""
    assert c.vectorization == "sync" and not c.normalize, "only sync, unnormalised configs map 1:1"
    lr = (lambda progress_remaining: c.lr * progress_remaining) if c.anneal_lr else c.lr
    return dict(
        learning_rate=lr,
        n_steps=c.num_runner_steps,
        batch_size=c.num_envs * c.num_runner_steps // c.num_minibatches,
        n_epochs=c.num_epochs,
        gamma=c.gamma,
        gae_lambda=c.gae_lambda,
        clip_range=c.clip_range,
        clip_range_vf=c.clip_range if c.clip_value_loss else None,
        normalize_advantage=c.normalize_advantages,
        ent_coef=c.entropy_coef,
        vf_coef=0.5 * c.value_loss_coef,  # derl halves the squared error itself, SB3 does not
        max_grad_norm=c.max_grad_norm,
        # MlpPolicy: separate 64-64 tanh MLPs for pi and vf (derl's MLP); CnnPolicy: shared
        # NatureCNN torso (derl's Atari model). Both use orthogonal init.
        policy_kwargs=dict(optimizer_kwargs=dict(eps=c.optimizer_eps)),
        seed=c.seed,
        device=c.device,
        verbose=0,
    )


def run_derl(env_id: str, steps: int, seed: int, device: str) -> tuple[int, float]:
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  imports are not timed

    with tempfile.TemporaryDirectory() as tmp:
        config = derl_config(env_id, steps, seed, device, str(Path(tmp) / "run"))
        start = time.perf_counter()
        result = derl.train(config, progress=False)
        return result.env_steps, time.perf_counter() - start


def run_sb3(env_id: str, steps: int, seed: int, device: str) -> tuple[int, float]:
    c = derl_config(env_id, steps, seed, device, None)  # the same numbers derl trains with
    start = time.perf_counter()
    if family(env_id) == "atari":
        env = VecFrameStack(
            make_atari_env(env_id, n_envs=c.num_envs, seed=seed, vec_env_cls=DummyVecEnv), n_stack=4
        )
        policy = "CnnPolicy"
    else:
        env = make_vec_env(env_id, n_envs=c.num_envs, seed=seed, vec_env_cls=DummyVecEnv)
        policy = "MlpPolicy"
    model = PPO(policy, env, **sb3_kwargs(c))
    model.learn(total_timesteps=c.num_train_steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps, elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", choices=sorted(ENVS), default=["cartpole", "breakout"])
    parser.add_argument("--steps-cartpole", type=int, default=50_000)
    parser.add_argument("--steps-breakout", type=int, default=16_384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads for both libraries (0: torch's default)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per library and env, alternating; the fastest is reported",
    )
    args = parser.parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    if os.getloadavg()[0] > 0.5:
        print(
            f"note: 1-min load average {os.getloadavg()[0]:.1f} at start; if other processes "
            "still compete for the CPUs, torch's thread pool and these timings slow down a lot"
        )

    rows = []
    for name in args.envs:
        env_id = ENVS[name]
        steps = getattr(args, f"steps_{name}")
        results: dict[str, tuple[int, float, float]] = {}
        for _ in range(args.repeats):
            for lib, run in (("derl", run_derl), ("sb3", run_sb3)):
                taken, seconds = isolated(
                    run, env_id, steps, args.seed, args.device, threads=threads
                )
                if lib not in results or seconds < results[lib][1]:
                    results[lib] = (taken, seconds, taken / seconds)
                print(
                    f"{env_id:24s} {lib:5s} {taken:>8d} steps {seconds:8.1f} s "
                    f"{taken / seconds:8.0f} steps/s",
                    flush=True,
                )
        ratio = results["derl"][2] / results["sb3"][2]
        for lib, (taken, seconds, sps) in results.items():
            rows.append((env_id, lib, taken, seconds, sps, ratio if lib == "derl" else None))

    print("\n| env | library | env steps | wall s | steps/s | derl/SB3 |")
    print("|---|---|---:|---:|---:|---:|")
    for env_id, lib, taken, seconds, sps, ratio in rows:
        r = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"| {env_id} | {lib} | {taken} | {seconds:.1f} | {sps:.0f} | {r} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ndevice={args.device} torch_threads={threads} cpus={os.cpu_count()} "
        f"repeats={args.repeats} torch={torch.__version__} derl={derl.__version__} "
        f"load_avg_after={load} (compare quiet runs only)"
    )
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
