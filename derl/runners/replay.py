"""Experience replay as a runner wrapper: uniform or prioritized, n-step returns at sample time.

Storage is `derl.buffer.TransitionStorage` (one ring per env, so a step's next observation is
the next row of its ring), the same storage the stand-alone toolkit uses. Stacked image
observations keep only their newest frame; a stack is rebuilt from the frames before it,
repeating the first frame of an episode as gymnasium's FrameStackObservation does.

Every transition has a priority in one sum tree over all rings (uniform replay: all 1). A new
transition waits at priority 0 until its n-step window is complete (the 2020 derl's "pending
priority" trick), then enters at the running maximum (Schaul et al. 2016,
https://arxiv.org/abs/1511.05952).
"""

from __future__ import annotations

import numpy as np
import torch

from derl.alg.targets import nstep_returns
from derl.buffer import TransitionStorage
from derl.errors import UsageError
from derl.runners.sum_tree import SumTree, importance_weights
from derl.runners.wrappers import RunnerWrapper
from derl.types import Batch, Rollout

# Per-transition columns besides the observation: action, reward, 2 flags, valid, first, done.
_FLAG_COLUMNS = ("terminated", "truncated", "valid", "first", "complete")


def available_memory() -> int:
    """Bytes the OS can still hand out (MemAvailable), or a huge number where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


class ReplayStorage:
    """Transitions of `num_envs` envs, `capacity` in all; sampled by priority, n-step returns."""

    def __init__(
        self,
        observation_space,
        action_space,
        num_envs: int,
        capacity: int,
        nstep: int = 1,
        gamma: float = 0.99,
        frame_stack: bool | None = None,
        seed: int = 0,
    ):
        shape = observation_space.shape
        self.frame_stack = (
            len(shape) == 3 and observation_space.dtype == np.uint8
            if frame_stack is None
            else frame_stack
        )
        self.stack = shape[0] if self.frame_stack else 1
        self.per_env = max(capacity // num_envs, nstep + 2)
        self.nstep, self.gamma, self.num_envs = nstep, gamma, num_envs
        frame = np.zeros(shape[1:] if self.frame_stack else shape, observation_space.dtype)
        action = np.asarray(action_space.sample())
        self.bytes_per_transition = frame.nbytes + action.nbytes + 4 + len(_FLAG_COLUMNS) + 8
        needed = self.bytes_per_transition * self.per_env * num_envs
        if needed > available_memory():
            raise UsageError(
                f"a replay buffer of {capacity} transitions needs {needed / 2**30:.1f} GiB, more "
                f"than the {available_memory() / 2**30:.1f} GiB available; lower --buffer-size"
            )
        # Preallocated to capacity, so slots never move (the sum tree indexes them).
        self.rings = [
            TransitionStorage(self.per_env, initial_rows=self.per_env) for _ in range(num_envs)
        ]
        columns = {"obs": frame, "action": action, "reward": np.float32(0)}
        columns.update({name: False for name in _FLAG_COLUMNS})
        for ring in self.rings:
            for name, example in columns.items():
                ring.declare(name, example)
        self.tree = SumTree(self.per_env * num_envs)
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return sum(len(ring) for ring in self.rings)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for ring in self.rings for c in ring.columns.values())

    # -- adding -------------------------------------------------------------------------------

    def _frame(self, obs: np.ndarray) -> np.ndarray:
        return obs[-1] if self.frame_stack else obs

    def _start(self, env: int, obs: np.ndarray) -> None:
        slot = self.rings[env].start(self._frame(obs))
        self.rings[env].write("first", slot, True)
        self._evict(env, slot)

    def _evict(self, env: int, new_row: int) -> None:
        """The new row replaces the oldest transition, and the next oldest ones lose the frames
        before them that their stacks are rebuilt from: none of them may be sampled again."""
        rows = (new_row + np.arange(self.stack)) % self.per_env
        self.tree.update(env * self.per_env + rows, np.zeros(len(rows)))

    def add(self, env: int, action, reward, terminated: bool, truncated: bool, next_obs) -> None:
        ring = self.rings[env]
        slot = ring.add(action, reward, terminated, truncated, self._frame(next_obs))
        self._evict(env, int(ring.shift(slot, 1)))
        # Windows that are now complete: the one n-1 steps back, or all of them at an episode end.
        back = range(self.nstep) if (terminated or truncated) else [self.nstep - 1]
        for k in back:
            self._complete(env, ring.shift(slot, -k))

    def _complete(self, env: int, slot: int) -> None:
        ring = self.rings[env]
        if ring.columns["valid"][slot] and not ring.columns["complete"][slot]:
            ring.write("complete", slot, True)
            self.tree.update([env * self.per_env + slot], [self.max_priority])

    def add_rollout(self, rollout: Rollout) -> None:
        """Adds [T, N] steps from an EnvRunner (real final observations for truncations)."""
        steps = {k: v.cpu().numpy() for k, v in vars(rollout.steps).items()}
        final = {
            tuple(i): o
            for i, o in zip(
                rollout.final_index.tolist(), rollout.final_obs.cpu().numpy(), strict=True
            )
        }
        last_obs = rollout.last_obs.cpu().numpy()
        T = steps["rewards"].shape[0]
        for t in range(T):
            for env in range(self.num_envs):
                if self.rings[env].num_rows == 0:
                    self._start(env, steps["obs"][t, env])
                after = steps["obs"][t + 1, env] if t + 1 < T else last_obs[env]
                term, trunc = bool(steps["terminated"][t, env]), bool(steps["truncated"][t, env])
                # A terminated step never bootstraps: any observation can stand for its last one.
                next_obs = final.get((t, env), steps["obs"][t, env]) if term or trunc else after
                self.add(
                    env, steps["actions"][t, env], steps["rewards"][t, env], term, trunc, next_obs
                )
                if term or trunc:
                    self._start(env, after)  # the reset observation begins the next episode

    # -- sampling -----------------------------------------------------------------------------

    def stacked(self, env: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Observations at `slots`, stacks rebuilt from single frames."""
        obs = self.column("obs", env, slots)
        if not self.frame_stack:
            return obs
        frames, cur = [obs], slots.copy()
        for _ in range(self.stack - 1):
            first = self.column("first", env, cur)
            cur = np.where(first, cur, (cur - 1) % self.per_env)
            frames.append(self.column("obs", env, cur))
        return np.stack(frames[::-1], axis=1)

    def column(self, name: str, env: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Column `name` at (env, slot) pairs: one fancy-indexing gather per env."""
        like = self.rings[0].columns[name]
        out = np.empty((len(slots), *like.shape[1:]), like.dtype)
        for e, ring in enumerate(self.rings):
            mask = env == e
            if mask.any():
                out[mask] = ring.columns[name][slots[mask]]
        return out

    def sample(self, batch_size: int, beta: float | None = None) -> dict:
        """A batch drawn in proportion to priority, with importance weights when `beta` is set."""
        indices = self.tree.sample(batch_size, self.rng)
        batch = self.get(indices)
        if beta is not None:
            probs = self.tree.priorities(indices) / self.tree.total
            batch["weights"] = importance_weights(probs, len(self), beta).astype(np.float32)
        return batch

    def complete_indices(self) -> np.ndarray:
        """Every transition that can be sampled (its n-step window is complete)."""
        return np.flatnonzero(self.tree.priorities(np.arange(len(self.tree))) > 0)

    def get(self, indices: np.ndarray) -> dict:
        """obs, actions, n-step returns, bootstrap discounts, next_obs, weights (1) at `indices`."""
        env, slots = np.divmod(np.asarray(indices), self.per_env)
        window = (slots[:, None] + np.arange(self.nstep)) % self.per_env
        flat_env = np.repeat(env, self.nstep)

        def win(name):
            values = self.column(name, flat_env, window.ravel()).reshape(len(slots), self.nstep)
            return torch.as_tensor(values.astype(np.float32))

        returns, discounts, k = nstep_returns(
            win("reward"), win("terminated"), win("truncated"), self.gamma
        )
        return {
            "obs": self.stacked(env, slots),
            "actions": self.column("action", env, slots),
            "returns": returns.numpy(),
            "discounts": discounts.numpy(),
            "next_obs": self.stacked(env, (slots + k.numpy()) % self.per_env),
            "weights": np.ones(len(slots), np.float32),
            "indices": np.asarray(indices),
        }

    def state_dict(self) -> dict:
        """Rows written, ring positions, priorities and the sampling RNG: what a resumed run needs.

        Rings are preallocated and fill from slot 0, so only the first `num_rows` rows of each
        column and the non-zero priorities are kept: a small run keeps a small checkpoint.
        """
        rings = [
            {
                "columns": {name: col[: ring.num_rows] for name, col in ring.columns.items()},
                "next": ring._next,
                "num_rows": ring.num_rows,
                "num_valid": ring._num_valid,
            }
            for ring in self.rings
        ]
        priorities = self.tree.priorities(np.arange(len(self.tree)))
        held = np.flatnonzero(priorities)
        return {
            "rings": rings,
            "held": held,
            "priorities": priorities[held],
            "max_priority": self.max_priority,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Refills a fresh storage of the same capacity from `state_dict()`."""
        for ring, saved in zip(self.rings, state["rings"], strict=True):
            for name, values in saved["columns"].items():
                ring.columns[name][: len(values)] = values
            ring._next, ring.num_rows = saved["next"], saved["num_rows"]
            ring._num_valid = saved["num_valid"]
            ring.version += 1
        priorities = np.zeros(len(self.tree))
        priorities[state["held"]] = state["priorities"]
        self.tree.update(np.arange(len(self.tree)), priorities)
        self.max_priority = state["max_priority"]
        self.rng.bit_generator.state = state["rng"]

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """New priorities (already raised to alpha); never 0, so nothing is stuck forever."""
        priorities = np.maximum(np.asarray(priorities, dtype=np.float64), 1e-6)
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))


class ExperienceReplay(RunnerWrapper):
    """Adds every rollout to a ReplayStorage and yields `updates_per_rollout` sampled batches.

    Prioritized when `alpha` > 0: call `update_priorities(td_errors)` after each batch. Beta is
    annealed linearly from `beta` to 1 over the run's env steps.
    """

    def __init__(
        self,
        runner,
        storage: ReplayStorage,
        batch_size: int,
        learning_starts: int,
        updates_per_rollout: int = 1,
        alpha: float = 0.0,
        beta: float = 0.4,
        eps: float = 1e-6,
        device: torch.device | str = "cpu",
        save_buffer: bool = False,
    ):
        super().__init__(runner)
        self.storage, self.batch_size, self.learning_starts = storage, batch_size, learning_starts
        self.updates_per_rollout, self.alpha, self.beta0, self.eps = (
            updates_per_rollout,
            alpha,
            beta,
            eps,
        )
        self.device = torch.device(device)
        self.last_indices: np.ndarray | None = None
        self.save_buffer = save_buffer  # checkpoints hold the replay too (large for Atari)

    @property
    def beta(self) -> float:
        return self.beta0 + (1 - self.beta0) * min(self.step_count / self.num_train_steps, 1.0)

    def __iter__(self):
        for rollout in self.runner:
            self.storage.add_rollout(rollout)
            if self.step_count < self.learning_starts or self.storage.tree.total == 0:
                continue  # a resumed run without its saved buffer refills it first
            for _ in range(self.updates_per_rollout):
                yield self.sample()

    def sample(self) -> Batch:
        data = self.storage.sample(self.batch_size, self.beta if self.alpha > 0 else None)
        self.last_indices = data.pop("indices")
        return Batch(**{k: torch.as_tensor(v, device=self.device) for k, v in data.items()})

    def state_dict(self) -> dict:
        state = self.runner.state_dict()
        return {**state, "replay": self.storage.state_dict() if self.save_buffer else None}

    def load_state_dict(self, state: dict) -> None:
        self.runner.load_state_dict(state)
        if state.get("replay") is not None:
            self.storage.load_state_dict(state["replay"])

    def update_priorities(self, td_errors: torch.Tensor) -> None:
        """Priorities of the last batch from its TD errors: (|delta| + eps)^alpha."""
        if self.alpha > 0 and self.last_indices is not None:
            priorities = (td_errors.detach().abs().cpu().numpy() + self.eps) ** self.alpha
            self.storage.update_priorities(self.last_indices, priorities)
