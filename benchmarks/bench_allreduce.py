"""The cost of one gradient all-reduce between processes on this machine (gloo on the CPU).

    torchrun --standalone --nproc-per-node 2 benchmarks/bench_allreduce.py

Prints the mean time of `torch.distributed.all_reduce` for the gradient sizes of derl's
presets: what data-parallel training pays per optimizer step (derl.distributed).
"""

import time

import torch
import torch.distributed as dist

SIZES = {  # parameters of the network whose gradient is averaged
    "1 float (latency)": 1,
    "PPO CartPole-v1 actor-critic (64-64)": 9_000,
    "SAC HalfCheetah-v5 twin critic (256-256)": 141_000,
    "PPO Atari Nature CNN": 1_700_000,
}


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    for name, size in SIZES.items():
        x = torch.randn(size)
        for _ in range(10):
            dist.all_reduce(x)
        repeats = 300 if size < 100_000 else 50
        start = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(x)
        ms = (time.perf_counter() - start) / repeats * 1e3
        if dist.get_rank() == 0:
            print(f"{name}: {size:,} floats, {ms:.2f} ms per all-reduce", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
