"""Speed of derl DQN against Stable-Baselines3 DQN at identical hyperparameters, in one run.

Both train plain DQN (SB3 has no double, dueling, n-step or prioritized replay, so derl turns
them off here) with the same network, batch size, buffer, learning-start, train frequency,
gradient steps per round, target period and exploration schedule, from derl's preset. Prints
steps per second of each and the ratio derl / SB3. Compare quiet runs only.

    python benchmarks/bench_dqn.py [--envs cartpole breakout] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import ale_py  # noqa: F401  registers the ALE ids for SB3's gym.make
import gymnasium as gym
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

sys.path.insert(0, str(Path(__file__).parent))
from bench_ppo import warm_up  # noqa: E402

import derl  # noqa: E402
from derl.env.families import family  # noqa: E402

ENVS = {"cartpole": ("CartPole-v1", 20_000), "breakout": ("BreakoutNoFrameskip-v4", 5_000)}
PLAIN = dict(double=False, dueling=False, nstep=1, prioritized=False, noisy=False, atoms=1)


def derl_config(env_id: str, steps: int, logdir: str | None):
    extra = {} if family(env_id) != "atari" else dict(buffer_size=20_000, learning_starts=2_000)
    return derl.make_config(
        "dqn",
        env_id,
        num_train_steps=steps,
        device="cpu",
        logdir=logdir,
        checkpoint_every=10**9,
        **PLAIN,
        **extra,
    )


def run_derl(env_id: str, steps: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = derl_config(env_id, steps, str(Path(tmp) / "run"))
        start = time.perf_counter()
        result = derl.train(config, progress=False)
        return result.env_steps, time.perf_counter() - start


def run_sb3(env_id: str, steps: int) -> tuple[int, float]:
    c = derl_config(env_id, steps, None)
    start = time.perf_counter()
    if family(env_id) == "atari":
        env = VecFrameStack(
            make_atari_env(
                env_id,
                n_envs=1,
                seed=0,
                vec_env_cls=DummyVecEnv,
                wrapper_kwargs=dict(terminal_on_life_loss=True),
            ),
            4,
        )
        policy, net = "CnnPolicy", {"net_arch": [512]}
    else:
        env, policy, net = gym.make(env_id), "MlpPolicy", {"net_arch": [256, 256]}
    model = DQN(
        policy,
        env,
        learning_rate=c.lr,
        buffer_size=c.buffer_size,
        learning_starts=c.learning_starts,
        batch_size=c.batch_size,
        tau=c.tau,
        gamma=c.gamma,
        train_freq=c.train_freq,
        gradient_steps=c.gradient_steps,
        target_update_interval=c.target_update_period,
        exploration_fraction=c.exploration_steps / c.num_train_steps,
        exploration_initial_eps=c.initial_eps,
        exploration_final_eps=c.final_eps,
        max_grad_norm=c.max_grad_norm,
        optimize_memory_usage=False,
        policy_kwargs={**net, "optimizer_kwargs": {"eps": c.optimizer_eps}},
        seed=0,
    )
    model.learn(total_timesteps=c.num_train_steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", choices=sorted(ENVS), default=list(ENVS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    warm_up("cpu")
    print(
        "| env | library | env steps | wall s | steps/s | derl/SB3 |\n|---|---|---:|---:|---:|---:|"
    )
    for name in args.envs:
        env_id, steps = ENVS[name]
        sps = {}
        for lib, run in (("derl", run_derl), ("sb3", run_sb3)):
            torch.set_num_threads(threads)
            taken, seconds = run(env_id, steps)
            sps[lib] = taken / seconds
            ratio = f"{sps['derl'] / sps['sb3']:.2f}x" if lib == "sb3" else ""
            print(
                f"| {env_id} | {lib} | {taken} | {seconds:.1f} | {sps[lib]:.0f} | {ratio} |",
                flush=True,
            )
    print(f"torch threads {threads}, torch {torch.__version__}, command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
