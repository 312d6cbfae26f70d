"""Training throughput of derl's PPO and A2C against Stable-Baselines3's, same hyperparameters.

For each run (PPO CartPole-v1 and BreakoutNoFrameskip-v4, A2C Breakout) this script takes derl's
preset from `derl.make_config(alg, env_id, ...)`, maps every field onto SB3's PPO / A2C, trains both
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

derl runs once per `--variants` entry against the one SB3 baseline: `sync` (derl's default),
`async`, `envpool` (--vectorization), `compile` (--compile) and `envpool+compile`.

Usage: python benchmarks/bench_ppo.py [--runs ppo-cartpole ppo-breakout a2c-breakout]
       [--steps-cartpole N] [--steps-breakout N] [--variants sync envpool ...] [--seed S]
       [--device cpu] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import ale_py  # noqa: F401  registers the ALE ids for SB3's gym.make
import gymnasium as gym
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

import derl
from derl.env.families import family

sys.path.insert(0, str(Path(__file__).parent))
from isolated import isolated  # noqa: E402
from paired import PAIRED_NOTE, paired_ratio  # noqa: E402

gym.register_envs(ale_py)

RUNS = {
    "ppo-cartpole": ("ppo", "CartPole-v1"),
    "ppo-breakout": ("ppo", "BreakoutNoFrameskip-v4"),
    "a2c-breakout": ("a2c", "BreakoutNoFrameskip-v4"),
}
VARIANTS = {
    "sync": {},
    "async": dict(vectorization="async"),
    "envpool": dict(vectorization="envpool"),
    "compile": dict(compile=True),
    "envpool+compile": dict(vectorization="envpool", compile=True),
}


def derl_config(
    alg: str,
    env_id: str,
    steps: int,
    seed: int,
    device: str,
    logdir: str | None,
    num_envs: int = 0,  # 0: the preset's
    **variant,
):
    if num_envs:
        variant = {**variant, "num_envs": num_envs}
    # threads=0: derl leaves torch's thread count as the harness set it for both libraries.
    return derl.make_config(
        alg,
        env_id,
        num_train_steps=steps,
        seed=seed,
        device=device,
        logdir=logdir,
        threads=0,
        **variant,
    )


def sb3_a2c_kwargs(c) -> dict:
    """derl's A2CConfig `c` as keyword arguments of stable_baselines3.A2C."""
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    assert c.vectorization == "sync" and not c.normalize, "only sync, unnormalised configs map 1:1"
    lr = (lambda progress_remaining: c.lr * progress_remaining) if c.anneal_lr else c.lr
    optimizer = dict(alpha=c.rmsprop_alpha, eps=c.optimizer_eps, weight_decay=0)
    if c.rmsprop_tf:
        optimizer = dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=optimizer)
    else:
        optimizer = dict(optimizer_kwargs=optimizer)
    return dict(
        learning_rate=lr,
        n_steps=c.num_runner_steps,
        gamma=c.gamma,
        gae_lambda=c.gae_lambda,
        ent_coef=c.entropy_coef,
        vf_coef=0.5 * c.value_loss_coef,  # derl halves the squared error itself, SB3 does not
        max_grad_norm=c.max_grad_norm,
        normalize_advantage=c.normalize_advantages,
        policy_kwargs=optimizer,
        seed=c.seed,
        device=c.device,
        verbose=0,
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


def run_derl(
    alg: str, env_id: str, steps: int, seed: int, device: str, num_envs: int, variant: str = "sync"
) -> tuple[int, float]:
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  imports are not timed

    with tempfile.TemporaryDirectory() as tmp:
        logdir = str(Path(tmp) / "run")
        config = derl_config(
            alg, env_id, steps, seed, device, logdir, num_envs, **VARIANTS[variant]
        )
        start = time.perf_counter()
        result = derl.train(config, progress=False)
        return result.env_steps, time.perf_counter() - start


def run_sb3(
    alg: str, env_id: str, steps: int, seed: int, device: str, num_envs: int
) -> tuple[int, float]:
    c = derl_config(alg, env_id, steps, seed, device, None, num_envs)  # derl's numbers
    start = time.perf_counter()
    if family(env_id) == "atari":
        env = VecFrameStack(
            make_atari_env(env_id, n_envs=c.num_envs, seed=seed, vec_env_cls=DummyVecEnv), n_stack=4
        )
        policy = "CnnPolicy"
    else:
        env = make_vec_env(env_id, n_envs=c.num_envs, seed=seed, vec_env_cls=DummyVecEnv)
        policy = "MlpPolicy"
    if alg == "ppo":
        model = PPO(policy, env, **sb3_kwargs(c))
    else:
        model = A2C(policy, env, **sb3_a2c_kwargs(c))
    model.learn(total_timesteps=c.num_train_steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps, elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["sync"])
    parser.add_argument("--steps-cartpole", type=int, default=50_000)
    parser.add_argument("--steps-breakout", type=int, default=16_384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--num-envs", type=int, default=0, help="envs per row for both libraries (0: the preset's)"
    )
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
    parser.add_argument(
        "--skip-sb3",
        action="store_true",
        help="derl's rows only (GPU-only absolutes, e.g. 64 envs, where SB3 would take minutes)",
    )
    args = parser.parse_args(argv)
    if importlib.util.find_spec("envpool") is None and any("envpool" in v for v in args.variants):
        print("note: envpool is not installed (pip install -e '.[envpool]'): its variants skipped")
        args.variants = [v for v in args.variants if "envpool" not in v]
    threads = args.threads or torch.get_num_threads()
    if os.getloadavg()[0] > 0.5:
        print(
            f"note: 1-min load average {os.getloadavg()[0]:.1f} at start; if other processes "
            "still compete for the CPUs, torch's thread pool and these timings slow down a lot"
        )

    rows = []
    for name in args.runs:
        alg, env_id = RUNS[name]
        steps = args.steps_cartpole if "cartpole" in name else args.steps_breakout
        results: dict[str, tuple[int, float, float]] = {}
        rates: dict[str, list[float | None]] = {}  # steps/s of each round (None: failed)
        for _ in range(args.repeats):
            runs = [(f"derl {v}", run_derl, (v,)) for v in args.variants]
            baseline = [] if args.skip_sb3 else [("sb3", run_sb3, ())]
            for lib, run, extra in [*runs, *baseline]:
                try:  # one row that dies (seen: --compile on a new torch) keeps the others
                    taken, seconds = isolated(
                        run,
                        alg,
                        env_id,
                        steps,
                        args.seed,
                        args.device,
                        args.num_envs,
                        *extra,
                        threads=threads,
                    )
                except RuntimeError as exc:
                    print(f"{alg} {env_id:24s} {lib:20s} FAILED: {exc}", flush=True)
                    rates.setdefault(lib, []).append(None)
                    continue
                rates.setdefault(lib, []).append(taken / seconds)
                if lib not in results or seconds < results[lib][1]:
                    results[lib] = (taken, seconds, taken / seconds)
                print(
                    f"{alg} {env_id:24s} {lib:20s} {taken:>8d} steps {seconds:8.1f} s "
                    f"{taken / seconds:8.0f} steps/s",
                    flush=True,
                )
        for lib, (taken, seconds, sps) in results.items():
            ratio = sps / results["sb3"][2] if lib != "sb3" and "sb3" in results else None
            paired = paired_ratio(rates[lib], rates["sb3"]) if ratio is not None else None
            rows.append((f"{alg} {env_id}", lib, taken, seconds, sps, ratio, paired))

    paired_column = args.repeats > 1
    print(
        "\n| run | library | env steps | wall s | steps/s | derl/SB3 |"
        + " paired |" * paired_column
    )
    print("|---|---|---:|---:|---:|---:|" + "---:|" * paired_column)
    for env_id, lib, taken, seconds, sps, ratio, paired in rows:
        r = f"{ratio:.2f}x" if ratio is not None else ""
        line = f"| {env_id} | {lib} | {taken} | {seconds:.1f} | {sps:.0f} | {r} |"
        if paired_column:
            line += f" {paired:.2f}x |" if paired is not None else " |"
        print(line)
    if paired_column:
        print(PAIRED_NOTE)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ndevice={args.device} torch_threads={threads} cpus={os.cpu_count()} "
        f"repeats={args.repeats} torch={torch.__version__} derl={derl.__version__} "
        f"load_avg_after={load} (compare quiet runs only)"
    )
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
