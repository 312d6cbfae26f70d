"""EnvRunner: steps a vector env with a policy and yields rollouts on the learner's device."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from derl import distributed
from derl.env.normalize import VecNormalize
from derl.env.state import get_vector_env_state, set_vector_env_state
from derl.errors import UsageError
from derl.logger import Logger
from derl.models import is_image
from derl.types import Batch, Policy, Rollout


def check_same_step_autoreset(env: gym.vector.VectorEnv) -> None:
    """Refuse vector envs that do not reset a finished env within the step that ended it.

    The runner reads each step as one transition, with the real last observation of a truncated
    episode in `info["final_obs"]`. In gymnasium's default NEXT_STEP mode the step after an
    episode end is a reset, not a transition, and there is no `final_obs`: training on it
    would learn from fake transitions across episodes.
    """
    mode = env.metadata.get("autoreset_mode")
    if mode not in (gym.vector.AutoresetMode.SAME_STEP, "SameStep"):
        raise UsageError(
            f"EnvRunner needs a vector env that autoresets in the same step, but this one's "
            f"autoreset_mode is {getattr(mode, 'name', mode)}; build it with "
            "derl.env.make(env_id, num_envs) or pass autoreset_mode=gymnasium.vector."
            "AutoresetMode.SAME_STEP to gymnasium.make_vec / SyncVectorEnv / AsyncVectorEnv"
        )


class EnvRunner:
    """Yields `Rollout`s of `num_steps` steps per env, `num_train_steps` in all."""

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        policy: Policy,
        num_steps: int,
        num_train_steps: int,
        device: torch.device | str = "cpu",
        logger: Logger | None = None,
    ):
        check_same_step_autoreset(env)
        self.env, self.policy, self.num_steps = env, policy, num_steps
        self.num_train_steps, self.device, self.logger = (
            num_train_steps,
            torch.device(device),
            logger,
        )
        self.num_envs = env.num_envs
        # Data-parallel training: every rank steps as many envs in lockstep, and step_count
        # counts them all, so that budgets, schedules and checkpoints agree (derl.distributed).
        self.world_size = distributed.world_size()
        self.step_count = 0
        self.rollout_start = 0  # step_count when the last rollout began: schedules read it
        self.obs: torch.Tensor | None = None
        # Called with step_count between rollouts (checkpoints, evaluation).
        self.hooks: list[Callable[[int], None]] = []
        # Called with the step's index in its rollout before each act (gSDE's redraws).
        self.step_hooks: list[Callable[[int], None]] = []
        space = env.single_observation_space
        self.obs_dtype = torch.uint8 if is_image(space) else torch.float32
        self.obs_np_dtype = np.uint8 if is_image(space) else np.float32

    def to_tensor(self, obs: np.ndarray) -> torch.Tensor:
        """Observations on the learner's device, in their own dtype (uint8 frames cross to a GPU
        as uint8, a quarter of float32). To CUDA through pinned memory without blocking: the copy
        overlaps with whatever the device still runs, and the policy's forward waits for it."""
        obs = np.asarray(obs)
        # One call where the dtype is already right (the array's memory is shared either way).
        if obs.dtype == self.obs_np_dtype:
            obs_t = torch.from_numpy(obs)
        else:
            obs_t = torch.as_tensor(obs).to(self.obs_dtype)
        if self.device.type == "cuda":
            return obs_t.pin_memory().to(self.device, non_blocking=True)
        return obs_t

    def __iter__(self) -> Iterator[Rollout]:
        if self.obs is None:
            self.obs = self.to_tensor(self.env.reset()[0])
        while self.step_count < self.num_train_steps:
            for hook in self.hooks:
                hook(self.step_count)
            yield self.collect()

    def collect(self) -> Rollout:
        """Run `num_steps` steps in every env."""
        T, N = self.num_steps, self.num_envs
        self.rollout_start = self.step_count
        env_keys = ("rewards", "terminated", "truncated")
        steps: dict[str, list] = defaultdict(list)  # obs, env_keys, and what the policy returns
        final_obs: list[np.ndarray] = []
        final_index: list[tuple[int, int]] = []
        obs = self.obs
        assert obs is not None, "collect() runs inside iteration, which resets the env first"
        for t in range(T):
            for step_hook in self.step_hooks:
                step_hook(t)
            out = self.policy.act(obs)
            next_obs, rewards, terminated, truncated, info = self.env.step(
                self.policy.env_actions(out["actions"])
            )
            self.step_count += N * self.world_size
            for key, value in out.items():  # actor-critics: actions, log_probs, values
                steps[key].append(value)
            steps["obs"].append(obs)
            steps["rewards"].append(rewards)
            steps["terminated"].append(terminated)
            steps["truncated"].append(truncated)
            if truncated.any():  # a time limit: keep the real last observation
                for i in np.flatnonzero(truncated & ~terminated):
                    final_obs.append(info["final_obs"][i])
                    final_index.append((t, int(i)))
            if "final_info" in info:
                self.report_episodes(info["final_info"])
            obs = self.obs = self.to_tensor(next_obs)
        batch = Batch(
            **{k: torch.stack(v) for k, v in steps.items() if k not in env_keys},
            **{
                k: torch.as_tensor(np.stack(steps[k]), device=self.device).float() for k in env_keys
            },
        )
        return Rollout(
            steps=batch,
            last_obs=obs,
            final_obs=self.to_tensor(np.stack(final_obs)) if final_obs else obs[:0],
            final_index=torch.as_tensor(final_index, dtype=torch.long, device=self.device).view(
                -1, 2
            ),
        )

    def state_dict(self) -> dict[str, Any]:
        """Step count, current observations, env states and normalisation statistics."""
        env_states = get_vector_env_state(self.env)
        return {
            "step_count": self.step_count,
            "obs": None if env_states is None else self.obs,
            "env_states": env_states,
            "normalizer": self.env.state_dict() if isinstance(self.env, VecNormalize) else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = state["step_count"]
        if state["normalizer"] is not None:
            assert isinstance(self.env, VecNormalize), "a normalizer state needs a VecNormalize"
            self.env.load_state_dict(state["normalizer"])
        states = state["env_states"]
        if states is not None and set_vector_env_state(self.env, states):
            self.obs = state["obs"].to(self.device)
        else:  # envs whose state cannot be saved (or taken back) start fresh episodes
            self.obs = None

    def report_episodes(self, final_info: dict) -> None:
        if self.logger is None or "episode" not in final_info:
            return
        episode, mask = final_info["episode"], final_info["_episode"]
        for i in np.flatnonzero(mask):
            self.logger.episode(float(episode["r"][i]), int(episode["l"][i]), self.step_count)
