"""`--vectorization envpool`: EnvPool's C++ env pool (https://envpool.readthedocs.io) behind the
same vector env interface as the gymnasium path, so runners, normalisation and replay see no
difference.

What this adapter adds on top of `envpool.make(..., env_type="gymnasium")`:

- **Same-step autoreset.** EnvPool resets a finished env on the *next* `step` (gymnasium's
  NEXT_STEP mode), which turns that step into a fake transition across two episodes. Here a
  finished env is reset within the step that ended it (EnvPool resets a subset of envs on
  request), and its real last observation goes to `info["final_obs"]`, as gymnasium's SAME_STEP
  vector envs do: a truncated episode is bootstrapped from where it really ended.
- **Atari as derl's gymnasium path does it**: noop starts, frame skip 4 with max-pool, 84x84 gray,
  4 stacked frames, FIRE on reset, at most 27,000 agent steps (EnvPool's own preprocessing, with
  the settings of the gymnasium id's spec: sticky actions for `ALE/*-v5`, none for
  `*NoFrameskip-v4`). A lost life ends the episode for learning (terminated) while the game goes
  on, and the frame stack starts again from the newest frame, as the gymnasium path's stack does
  at its reset after a lost life and as the replay rebuilds stacks (so this adapter stacks the
  frames itself: EnvPool's stack runs on across lives). Kept out of EnvPool's `episodic_life`
  so that the episode statistics span the whole game. Rewards are clipped to their sign for
  learning, and the episode statistics hold the true game score. A game that ends on the last
  allowed step is terminated (EnvPool reports only truncated there). One difference: after a
  lost life derl's gymnasium path presses FIRE inside the reset, here the game simply continues
  and the agent presses FIRE itself.
- **MuJoCo only where EnvPool matches gymnasium**: `MUJOCO_IDS` lists the ids whose model,
  observation and reward agree with gymnasium's to within 1e-4 over their first steps from the
  same noiseless start (tests/test_envpool.py re-checks every one); any other MuJoCo id is refused.
- Observation and action spaces are gymnasium's own for the id, so networks, checkpoints and
  `derl eval` (which runs gymnasium envs) are the same whichever backend trained.

EnvPool's envs have no state to save, so a resumed run starts fresh episodes there (like async
envs), and its initial states come from EnvPool's RNG, not numpy's: the same seed gives other
episodes than the gymnasium path.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from derl.env.atari import MAX_AGENT_STEPS
from derl.errors import UsageError

INSTALL = 'pip install "derl[envpool]" (Linux x86_64, Python >= 3.11)'

CLASSIC_IDS = (
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Pendulum-v1",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
)
# Checked against gymnasium 1.4 and mujoco 4.0 (tests/test_envpool.py). Left out: Humanoid-v4
# (its observations drift far from gymnasium's), InvertedPendulum-v4, InvertedDoublePendulum-v4,
# HumanoidStandup, Reacher and Pusher (they differ from the first step, or their start cannot be
# made noiseless to compare).
MUJOCO_IDS = (
    "HalfCheetah-v4",
    "HalfCheetah-v5",
    "Hopper-v4",
    "Hopper-v5",
    "Walker2d-v4",
    "Walker2d-v5",
    "Ant-v4",
    "Ant-v5",
    "Humanoid-v5",
    "Swimmer-v4",
    "Swimmer-v5",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
)
# gymnasium.make kwargs of an ALE id that EnvPool's Atari envs take under the same name.
ATARI_KWARGS = ("repeat_action_probability", "full_action_space", "mode", "difficulty")


def import_envpool():
    try:
        import envpool
    except ImportError:
        raise UsageError(f"--vectorization envpool needs the envpool extra: {INSTALL}") from None
    return envpool


def task(
    env_id: str, fam: str, env_kwargs: dict | None, available: Collection[str] | None = None
) -> tuple[str, dict]:
    """EnvPool's task id and make() kwargs for gymnasium id `env_id`, or a UsageError.
    `available`: EnvPool's ids (envpool.list_all_envs()), where a wheel may lack some."""
    name = env_id.split(":")[-1]
    kwargs = dict(env_kwargs or {})
    if fam == "atari":
        spec = gym.spec(name)
        # EnvPool names a game by its ROM, each part capitalised: tic_tac_toe_3d, TicTacToe3d-v5
        game = "".join(part.capitalize() for part in str(spec.kwargs["game"]).split("_"))
        if available is not None and f"{game}-v5" not in available:
            raise UsageError(
                f"--vectorization envpool: this EnvPool has no {game}-v5 for {name!r}; use "
                "--vectorization sync or async for it"
            )
        unknown = sorted(set(kwargs) - set(ATARI_KWARGS))
        if unknown:
            raise UsageError(
                f"--env-kwargs {unknown} have no EnvPool counterpart; it takes {ATARI_KWARGS}"
            )
        settings = {k: spec.kwargs[k] for k in ATARI_KWARGS if k in spec.kwargs}
        settings.update(kwargs)
        settings.update(
            episodic_life=False,  # life loss is handled in EnvPoolVectorEnv.step
            reward_clip=False,  # clipped in step(), after the true score is counted
            noop_max=30,
            frame_skip=4,
            stack_num=1,  # stacked in EnvPoolVectorEnv, which starts a stack at a lost life
            img_height=84,
            img_width=84,
            gray_scale=True,
            use_fire_reset=True,
            max_episode_steps=MAX_AGENT_STEPS,
        )
        return f"{game}-v5", settings
    allowed = tuple(i for i in CLASSIC_IDS + MUJOCO_IDS if available is None or i in available)
    if name not in allowed:
        if name in CLASSIC_IDS + MUJOCO_IDS:
            what = "is not in this EnvPool"  # a trimmed wheel (benchmarks/gpu/trim_envpool.py)
        elif fam == "mujoco":
            what = "is not known to match gymnasium's"
        else:
            what = "is not covered by derl's EnvPool backend"
        raise UsageError(
            f"--vectorization envpool: {name!r} {what} (EnvPool covers {', '.join(allowed)} "
            "and the Atari games); use --vectorization sync or async for it"
        )
    return name, kwargs


class EnvPoolVectorEnv(VectorEnv):
    """`num_envs` envs of one EnvPool, as a gymnasium vector env with same-step autoreset."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        env_id: str,
        fam: str,
        num_envs: int,
        single_observation_space: gym.Space,
        single_action_space: gym.Space,
        env_kwargs: dict | None = None,
        num_threads: int = 0,
    ):
        self.envpool = import_envpool()
        self.task, self.kwargs = task(env_id, fam, env_kwargs, self.envpool.list_all_envs())
        self.atari = fam == "atari"
        self.num_envs, self.num_threads = num_envs, num_threads
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, num_envs)
        self.action_space = batch_space(single_action_space, num_envs)
        self.pool: Any = None
        self.returns = np.zeros(num_envs)  # true score (unclipped) of the running episodes
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.starts = np.zeros(num_envs)
        self.lives = np.zeros(num_envs, dtype=np.int64)
        # Atari's stacks of the newest 4 frames, oldest first, [num_envs, 4, 84, 84]
        stack_shape = single_observation_space.shape if self.atari else None
        self.frames = np.zeros((num_envs, *(stack_shape or ())), np.uint8)

    def make_pool(self, seed: int):
        try:
            return self.envpool.make(
                self.task,
                env_type="gymnasium",
                num_envs=self.num_envs,
                seed=seed,
                num_threads=self.num_threads,
                **self.kwargs,
            )
        except (TypeError, ValueError, RuntimeError, AssertionError, KeyError) as exc:
            # an env kwarg EnvPool names otherwise, a seed out of its int32 range
            raise UsageError(
                f"EnvPool cannot make {self.task} with {self.kwargs} and seed {seed} "
                f"({str(exc).strip() or type(exc).__name__}); use --vectorization sync or async"
            ) from None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # EnvPool seeds its envs when the pool is built (env i gets seed + i), so a new seed
        # builds a new pool; without one, the running pool resets every env. A first reset
        # without a seed starts from fresh OS entropy, as gymnasium's envs do (within EnvPool's
        # int32 seeds).
        if self.pool is None or seed is not None:
            if self.pool is not None:
                self.pool.close()
            if seed is None:
                seed = int(np.random.SeedSequence().generate_state(1)[0]) % (2**31 - self.num_envs)
            self.pool = self.make_pool(seed)
        obs, info = self.pool.reset()
        self.returns[:], self.lengths[:], self.starts[:] = 0, 0, time.perf_counter()
        if self.atari:
            self.lives[:] = info["lives"]
            obs = self.stack(obs, restart=np.ones(self.num_envs, bool))
        return obs, {}

    def stack(self, obs: np.ndarray, restart: np.ndarray) -> np.ndarray:
        """The newest frames `obs` [num_envs, 1, 84, 84] pushed onto the stacks; the envs in
        `restart` start theirs from it (all 4 frames), as FrameStackObservation does at a reset.
        A copy: the runner keeps observations."""
        self.frames[:, :-1] = self.frames[:, 1:]
        self.frames[:, -1:] = obs
        self.frames[restart] = obs[restart]  # broadcast over the 4 frames
        return self.frames.copy()

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.pool.step(np.asarray(actions))
        rewards = np.asarray(rewards, dtype=np.float64)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        self.returns += rewards
        self.lengths += 1
        game_over = terminated | truncated
        if self.atari:
            # A game that ends on the step that reaches the time limit is over, not cut short:
            # EnvPool says truncated alone there, and info["terminated"] is the game's own end.
            terminated = terminated | np.asarray(info["terminated"], bool)
            lives = info["lives"]
            life_lost = (lives < self.lives) & (lives > 0)
            terminated = terminated | life_lost
            self.lives = lives.astype(np.int64)
            rewards = np.sign(rewards)
            obs = self.stack(obs, restart=life_lost)
        out_info: dict[str, Any] = {}
        done = np.flatnonzero(game_over)
        if done.size:
            out_info = self.finish(done, obs)
            reset_obs, reset_info = self.pool.reset(done)
            if self.atari:
                self.lives[done] = reset_info["lives"]
                # the finished envs' stacks start again from their first frame
                self.frames[done] = reset_obs
                obs[done] = self.frames[done]
            else:
                obs = obs.copy()
                obs[done] = reset_obs
        return obs, rewards, terminated, truncated, out_info

    def finish(self, done: np.ndarray, obs: np.ndarray) -> dict:
        """gymnasium's info of a same-step reset: the real last observations and the episode
        statistics (RecordEpisodeStatistics' "episode" with r, l, t) of the envs in `done`."""
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[done] = True
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in done:
            final_obs[i] = obs[i].copy()
        now = time.perf_counter()
        episode = {
            "r": np.where(mask, self.returns, 0.0),
            "l": np.where(mask, self.lengths, 0),
            "t": np.where(mask, np.round(now - self.starts, 6), 0.0),
            "_r": mask,
            "_l": mask,
            "_t": mask,
        }
        self.returns[done], self.lengths[done], self.starts[done] = 0, 0, now
        return {
            "final_obs": final_obs,
            "_final_obs": mask,
            "final_info": {"episode": episode, "_episode": mask},
            "_final_info": mask,
        }

    def close_extras(self, **kwargs):
        if self.pool is not None:
            self.pool.close()
            self.pool = None
