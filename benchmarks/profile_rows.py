"""Where the time goes in each benchmark row: derl's run under cProfile, its wall time split into
env stepping, acting (the policy's forward), updates (loss, backward, optimizer), replay (writes
and sampling: the off-policy rows), GAE (the on-policy rows) and the rest (the runner's per-step
bookkeeping, logging, evaluation, checkpoints, setup).

    python benchmarks/profile_rows.py [--rows ppo-cartpole sac-halfcheetah ...] [--threads N]
                                      [--device cuda]

The rows and their settings are bench_ppo.py's and bench_offpolicy.py's (sync vectorization).
The parts are cumulative times of these calls: the vector env's `step`, the policy's `act`,
the algorithm's `step`, the replay's `add_rollout` and `sample`, GAE's `__call__`; they do not
overlap (acting, stepping, replay and GAE happen between updates).
On CUDA, kernels run asynchronously: a part's time is the host's, and the wait for the device
lands in the call that synchronises (a `.item()`, a copy to the host), so read the split together
with the device's utilisation.
cProfile adds a cost per Python call, so the Python-heavy parts (env stepping of small envs)
read somewhat larger than they are; the split is a guide, not a timing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import torch

from derl.runners.replay import ReplayStorage
from derl.runners.transforms import GAE

sys.path.insert(0, str(Path(__file__).parent))
import bench_offpolicy  # noqa: E402
import bench_ppo  # noqa: E402

# part: the calls whose cumulative time it is, each a (file suffix, function name) that every
# function of that name in the file matches, or one function. The replay's storage methods are
# named one by one: ExperienceReplay.sample (same file, same name) calls ReplayStorage.sample.
PARTS = {
    "env step": [("vector/sync_vector_env.py", "step")],
    "acting": [("derl/policies.py", "act")],
    "update": [(f"derl/alg/{name}.py", "step") for name in ("base", "sac", "td3")],
    "replay": [ReplayStorage.add_rollout, ReplayStorage.sample],
    "GAE": [GAE.__call__],
}


def matches(key: tuple[str, int, str], call) -> bool:
    """Whether cProfile's (file, first line, name) key is `call`."""
    file, line, name = key
    if isinstance(call, tuple):
        return file.endswith(call[0]) and name == call[1]
    code = call.__code__
    return (file, line, name) == (code.co_filename, code.co_firstlineno, code.co_name)


def config_of(row: str, logdir: str, device: str = "cpu"):
    if row in bench_ppo.RUNS:
        alg, env_id = bench_ppo.RUNS[row]
        steps = 50_000 if "cartpole" in row else 16_384
        return bench_ppo.derl_config(alg, env_id, steps, 0, device, logdir)
    alg, env_id, overrides = bench_offpolicy.RUNS[row]
    return bench_offpolicy.derl_config(alg, env_id, {**overrides, "device": device}, logdir)


def profile(row: str, device: str = "cpu") -> dict[str, float]:
    import derl

    with tempfile.TemporaryDirectory() as tmp:
        config = config_of(row, str(Path(tmp) / "run"), device)
        profiler = cProfile.Profile()
        profiler.runcall(derl.train, config, progress=False)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, name), (_, _, _, ct, _) in stats.items() if name == "train")
    parts = {"total s": total}
    for part, calls in PARTS.items():
        parts[part] = sum(
            ct
            for key, (_, _, _, ct, _) in stats.items()
            if any(matches(key, call) for call in calls)
        )
    parts["rest"] = total - sum(parts[p] for p in PARTS)
    return parts


def main() -> None:
    rows = [*bench_ppo.RUNS, *bench_offpolicy.RUNS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", choices=rows, default=rows)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where derl trains")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {args.threads}, torch {torch.__version__}")
    print("| row | wall s (profiled) | " + " | ".join([*PARTS, "rest"]) + " |")
    print("|---|---:|" + "---:|" * (len(PARTS) + 1))
    for row in args.rows:
        p = profile(row, args.device)
        shares = " | ".join(f"{100 * p[k] / p['total s']:.0f}%" for k in [*PARTS, "rest"])
        print(f"| {row} | {p['total s']:.1f} | {shares} |", flush=True)


if __name__ == "__main__":
    main()
