"""derl against derl: one run at two checkouts, alternating, each run a fresh process.

What a change of derl's own speed did, apart from SB3's run-to-run noise: both checkouts run
the same `derl.train` (the row's preset, seed 0, no progress bar, TensorBoard imported before
the clock starts, as in bench_ppo.py), old then new, `--rounds` times, and every pair's ratio is
printed. Make the old checkout with `git worktree add /tmp/derl-old COMMIT`; both import their
own `derl` from their source tree through PYTHONPATH, with this interpreter's packages.

    python benchmarks/bench_commits.py /tmp/derl-old . --run ppo CartPole-v1 50176 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, tempfile, time
import torch
torch.set_num_threads(int(sys.argv[4]))
import derl
from torch.utils.tensorboard import SummaryWriter  # noqa: F401  imports are not timed
alg, env_id, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tempfile.TemporaryDirectory() as tmp:
    config = derl.make_config(alg, env_id, seed=0, num_train_steps=steps, logdir=tmp + "/run",
                              threads=0)
    start = time.perf_counter()
    derl.train(config, progress=False)
    print(time.perf_counter() - start)
"""


def timed_run(checkout: Path, alg: str, env_id: str, steps: int, threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, alg, env_id, str(steps), str(threads)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="the checkout to compare against")
    parser.add_argument("new", type=Path, help="the checkout measured")
    parser.add_argument(
        "--run",
        nargs=3,
        action="append",
        metavar=("ALG", "ENV_ID", "STEPS"),
        help="a run to time (repeatable); default: PPO and DQN CartPole-v1 of the bench rows",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    runs = args.run or [["ppo", "CartPole-v1", "50176"], ["dqn", "CartPole-v1", "20224"]]
    for source in (args.old, args.new):
        if not (source / "derl" / "__init__.py").is_file():
            parser.error(f"{source} is not a derl checkout (no derl/__init__.py)")
    print("| run | round | old s | new s | old / new |\n|---|---:|---:|---:|---:|")
    for _ in range(args.rounds):
        for alg, env_id, steps in runs:
            old = timed_run(args.old, alg, env_id, int(steps), args.threads)
            new = timed_run(args.new, alg, env_id, int(steps), args.threads)
            print(
                f"| {alg} {env_id} ({int(steps):,}) | {_ + 1} | {old:.2f} | {new:.2f} | "
                f"{old / new:.3f} |",
                flush=True,
            )
    print(f"\nthreads={args.threads} old={args.old} new={args.new} (compare quiet runs only)")


if __name__ == "__main__":
    main()
