"""Evaluate agents: returns of whole episodes (Atari: the game score over all lives) and videos."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from derl.env import family, make_single
from derl.errors import UsageError
from derl.guard import eval_mode
from derl.video import VIDEO_SUFFIXES, write_video


def run_episodes(env, act: Callable, num_episodes: int) -> np.ndarray:
    """Returns of the first `num_episodes` episodes a vector env finishes under `act(obs)`."""
    obs, _ = env.reset()
    returns: list[float] = []
    while len(returns) < num_episodes:
        obs, _, _, _, info = env.step(act(obs))
        final = info.get("final_info", {})
        if "episode" in final:
            returns += [float(r) for r in final["episode"]["r"][final["_episode"]]]
    return np.array(returns[:num_episodes])


def evaluate(
    agent, num_episodes: int = 10, seed: int = 10_000, deterministic: bool = True
) -> np.ndarray:
    """Returns of `num_episodes` episodes in one fresh env (one env: no bias to short episodes)."""
    env = agent.make_env(num_envs=1, seed=seed)
    try:
        with eval_mode(agent.policy):
            return run_episodes(env, lambda obs: agent.act(obs, deterministic), num_episodes)
    finally:
        env.close()


def follow_with_camera(env) -> None:
    """Film MuJoCo models from their "track" camera: gymnasium's free camera stays put and a
    running HalfCheetah leaves the picture within seconds."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return
    import mujoco

    camera = mujoco.mj_name2id(env.unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if camera >= 0:
        renderer.camera_id = camera


def film_episode(
    agent, seed: int = 10_000, deterministic: bool = True, max_steps: int = 5_000
) -> tuple[np.ndarray, float, float]:
    """One episode (Atari: one whole game) as frames (T, H, W, 3), the frames per second to play
    them at, and its return (nan when `max_steps` ended the film first).

    It is the first episode `evaluate(agent, n, seed)` runs: that env is seeded by a reset when it
    is made, and its episodes start at the reset after, so this one is too. A deterministic
    policy then films the episode whose return `derl eval` reports first."""
    config = agent.config
    env = make_single(config.env_id, "rgb_array", config.env_kwargs, agent.env_fn)
    try:  # a failing render or policy must not leave a renderer (an EGL context) open
        follow_with_camera(env)
        env.reset(seed=seed)
        obs, _ = env.reset()
        frames, episode_return = [env.render()], float("nan")
        with eval_mode(agent.policy):
            for _ in range(max_steps):
                obs, _, terminated, truncated, info = env.step(agent.act(obs, deterministic))
                frames.append(env.render())
                if terminated or truncated:
                    if "episode" in info:  # Atari: a lost life is not the end of the game
                        episode_return = float(info["episode"]["r"])
                        break
                    obs, _ = env.reset()
        fps = env.metadata.get("render_fps") or 30
    finally:
        env.close()
    if agent.env_fn is None and family(config.env_id) == "atari":
        fps = 60 / 4  # one frame per agent step, four emulator frames each
    return np.stack(cast(list[np.ndarray], frames)), fps, episode_return


def record_video(
    agent,
    path: str | os.PathLike,
    seed: int = 10_000,
    deterministic: bool = True,
    max_steps: int = 5_000,
) -> float:
    """Film one episode (Atari: one whole game) to an .mp4 or .gif; returns its return."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"--video {path}: the file must end in {' or '.join(VIDEO_SUFFIXES)}")
    frames, fps, episode_return = film_episode(agent, seed, deterministic, max_steps)
    write_video(frames, fps, path)  # a failed write keeps the video that was there
    return episode_return
