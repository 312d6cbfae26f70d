#!/usr/bin/env bash
# Run HERE, before a call to the lent GPU machine: that machine reaches no package index, and its
# image has Python 3.12 with CUDA torch, numpy, tensorboard, tqdm, opencv, matplotlib, imageio,
# pyyaml and pytest, but none of the env packages. This fetches their cp312 wheels (no
# dependencies: the image has the rest) into .gpu/wheels (gitignored), about 30 MB, which the
# call carries: carry [".gpu"]. EnvPool's cp312 wheel (64 MB) does not fit the carry limit, so it
# goes there repacked with its Atari and classic-control envs only (3.5 MB, trim_envpool.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=${PIP:-.venv/bin/pip}
mkdir -p .gpu/wheels
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    -d .gpu/wheels \
    "gymnasium==1.4.0" farama-notifications "ale-py==0.12.1" \
    "mujoco==4.0.1" "mujoco-core==4.0.1" "mujoco-studio==4.0.1" glfw pyopengl \
    "stable-baselines3==2.9.2"
rm -rf .gpu/envpool-full && mkdir -p .gpu/envpool-full
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d .gpu/envpool-full "envpool==1.2.7"
"${PIP%pip}python" benchmarks/gpu/trim_envpool.py .gpu/envpool-full/envpool-*.whl .gpu/wheels
rm -rf .gpu/envpool-full  # not carried: the trimmed wheel is in .gpu/wheels
du -sh .gpu/wheels
