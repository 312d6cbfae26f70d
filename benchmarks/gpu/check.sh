#!/usr/bin/env bash
# Run THERE, on the lent GPU machine, after benchmarks/gpu/wheels.sh here, in two calls that
# each fit one 10-minute device call (a session has 15 minutes of device time in all; the second
# call finds the machine warm):
#   run(command="bash benchmarks/gpu/check.sh tests", carry=[".gpu"], timeout_s=300)
#   run(command="bash benchmarks/gpu/check.sh bench", carry=[".gpu"], timeout_s=590)
# (no argument: both, in one call of about 12 minutes, over a call's limit).
# It installs the env wheels beside the image's CUDA torch, then writes to $OUT:
#   env.txt          GPU, driver, torch and package versions
#   gpu-tests.log    python -m pytest -m gpu: a smoke test per algorithm, exact resume on CUDA,
#                    --compile with CUDA graphs, a CPU learner with a GPU replay
#   bench.log        derl against Stable-Baselines3 on the GPU, same hyperparameters, side by
#                    side in one run: DQN Breakout, PPO Breakout (8 envs: gymnasium and EnvPool;
#                    64 envs: EnvPool, derl alone), SAC HalfCheetah-v5
#   profile.log      where derl's time goes on CUDA in the PPO and DQN Breakout rows (cProfile)
# Each step has its own time limit, so one that hangs does not take the others' time.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# MUJOCO_GL=disable: the image has no libEGL, and nothing here renders.
export PYTHONUNBUFFERED=1 MUJOCO_GL=disable PYTHONPATH="/tmp/derl-site:$PWD"
python3 -m pip install --quiet --no-index --no-deps --target /tmp/derl-site .gpu/wheels/*.whl
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, gymnasium, ale_py, mujoco, stable_baselines3 as sb3; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name()); \
print('gymnasium', gymnasium.__version__, 'ale_py', ale_py.__version__, 'mujoco', \
mujoco.__version__, 'sb3', sb3.__version__)"
    nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
MODE=${1:-all}
# The compile test last and alone: on 2026-12-04 (torch 2.11, H200) it failed and the tests after
# it ran out of time; pytest-timeout (in the image) caps each test so one hang takes one slot.
PYTEST="python3 -m pytest -m gpu -v -rfE --tb=short --timeout 60 -p no:cacheprovider tests/test_gpu.py tests/test_replay.py"
[ "$MODE" = bench ] || {
    timeout 170 $PYTEST -k "not compile"
    timeout 60 $PYTEST -k compile
} 2>&1 | tee "$OUT/gpu-tests.log" | grep -E "PASSED|FAILED|ERROR|passed|failed|Error" | tail -30
[ "$MODE" = tests ] && exit 0
# DQN first: its 0.55x of 2026-12-04 is the figure to re-measure after the exploration change.
{
    timeout 80 python3 benchmarks/bench_offpolicy.py --device cuda --runs dqn-breakout \
        --variants sync --threads 4
    # EnvPool (trimmed to Atari and classic control by wheels.sh): the issue's H100 targets,
    # PPO Breakout >= 2,800 steps/s with 8 envs and >= 6,500 with 64 (no SB3 row at 64 envs:
    # its DummyVecEnv would take minutes there).
    timeout 170 python3 benchmarks/bench_ppo.py --device cuda --runs ppo-breakout \
        --variants sync envpool --threads 4
    timeout 80 python3 benchmarks/bench_ppo.py --device cuda --runs ppo-breakout --num-envs 64 \
        --steps-breakout 131072 --variants envpool --skip-sb3 --threads 4
    timeout 100 python3 benchmarks/bench_offpolicy.py --device cuda --runs sac-halfcheetah \
        --variants sync --threads 4
} 2>&1 | tee "$OUT/bench.log" | grep -v "^ *[0-9]*%" | tail -40
timeout 110 python3 benchmarks/profile_rows.py --device cuda --rows dqn-breakout ppo-breakout \
    --threads 4 2>&1 | tee "$OUT/profile.log" | tail -8
