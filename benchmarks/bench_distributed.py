"""Data-parallel scaling: env steps per second with 1 and 2 processes (derl --nproc).

    python benchmarks/bench_distributed.py [--rows ppo-cartpole,ppo-breakout,sac-halfcheetah]

For each row, four runs as fresh `derl` commands, one torch thread per process unless said:

- weak scaling (DD-PPO's measure): every process keeps the single-process batch; 2 processes
  vs 1, so the ideal is 2x;
- strong scaling: the same total batch (PPO: half the envs per process; SAC: half the batch per
  process) in 2 processes vs 1 process with 2 torch threads.

The rate is measured in the run itself, from the wall times TensorBoard stored with `time/sps`:
env steps over all processes per second, between a quarter of the run and its end (start-up,
imports and the first updates are left out). Run it on a quiet machine: another process on the
cores skews every row.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# name: (alg, env id, env steps per process, flags of every run, how to halve the batch)
ROWS = {
    "ppo-cartpole": ("ppo", "CartPole-v1", 40_960, [], ["--num-envs", "4"]),
    "ppo-breakout": ("ppo", "BreakoutNoFrameskip-v4", 8_192, [], ["--num-envs", "4"]),
    "sac-halfcheetah": (
        "sac",
        "HalfCheetah-v5",
        4_000,
        ["--learning-starts", "1000"],
        ["--batch-size", "128"],
    ),
}


def steady_sps(logdir: Path) -> float:
    """Env steps per second from a quarter of the run to its end, by TensorBoard's wall times."""
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("time/sps")
    last = events[-1]
    first = next(e for e in events if e.step >= last.step / 4)
    return (last.step - first.step) / (last.wall_time - first.wall_time)


def run(alg: str, env_id: str, steps: int, flags: list[str], root: Path, name: str) -> float:
    logdir = root / name
    command = [
        sys.executable,
        "-m",
        "derl",
        alg,
        "--env-id",
        env_id,
        "--num-train-steps",
        str(steps),
        "--eval-every",
        "0",
        "--checkpoint-every",
        str(10 * steps),
        "--logdir",
        str(logdir),
        "--seed",
        "0",
        *flags,
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return steady_sps(logdir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    args = parser.parse_args(argv)
    print(
        "| row | 1 process, 1 thread | 2 processes (weak) | weak scaling | "
        "1 process, 2 threads | 2 processes, half batch each (strong) | strong scaling |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.rows.split(","):
            alg, env_id, steps, flags, half = ROWS[name]
            one = run(alg, env_id, steps, [*flags, "--threads", "1"], root, f"{name}-1")
            weak = run(
                alg,
                env_id,
                2 * steps,
                [*flags, "--nproc", "2", "--threads", "1"],
                root,
                f"{name}-weak",
            )
            two_threads = run(alg, env_id, steps, [*flags, "--threads", "2"], root, f"{name}-1t2")
            strong = run(
                alg,
                env_id,
                steps,
                [*flags, *half, "--nproc", "2", "--threads", "1"],
                root,
                f"{name}-strong",
            )
            print(
                f"| {alg} {env_id} | {one:,.0f} | {weak:,.0f} | {weak / one:.2f}x | "
                f"{two_threads:,.0f} | {strong:,.0f} | {strong / two_threads:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
