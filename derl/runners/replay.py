"""Experience replay as a runner wrapper: uniform or prioritized, n-step returns at sample time.

Storage is one ring per env, held as torch tensors [num_envs, per_env, ...] on the CPU or, with
`device="cuda"`, on the GPU (sampling then never copies between host and device). A step's next
observation is the next row of its ring; an episode end adds one more row, the reset
observation. Stacked image observations keep only their newest frame; a stack is rebuilt from
the frames before it, repeating the first frame of an episode as gymnasium's
FrameStackObservation does.

A rollout is written as whole blocks per env (no Python loop over steps), and the flags that
adding consults (valid, ends, complete) are kept as numpy copies on the CPU, so a GPU buffer is
never read back while adding.

Every transition has a priority in one sum tree over all rings. A new transition waits at
priority 0 until its n-step window is complete (the 2020 derl's "pending priority" trick), then
enters at the running maximum (Schaul et al. 2016, https://arxiv.org/abs/1511.05952). Until the
first priority update every sampleable transition has the same priority, so sampling is uniform
and drawn directly, without walking the tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from derl import distributed
from derl.errors import UsageError
from derl.models import is_image
from derl.returns import nstep_returns
from derl.runners.sum_tree import SumTree, importance_weights
from derl.runners.wrappers import RunnerWrapper
from derl.types import Batch, Rollout, Runner

# Columns on the buffer's device besides the observation frames.
_STEP_COLUMNS = ("action", "reward", "terminated", "truncated")


def available_memory(device: torch.device | None = None) -> int:
    """Bytes still free: MemAvailable for the CPU, free memory of a CUDA device."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


def replay_device(choice: str, train_device: torch.device, nbytes: int) -> torch.device:
    """Where the buffer goes for `--buffer-device`: cpu, cuda[:N], or auto (the training GPU
    when the buffer takes at most half of its free memory, else the CPU)."""
    if choice == "auto":
        if train_device.type == "cuda" and nbytes <= available_memory(train_device) // 2:
            return train_device
        return torch.device("cpu")
    return distributed.checked_device(choice, "--buffer-device")


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A small numpy array (indices, flags) on `device`. To a GPU through pinned memory without
    blocking: a copy from pageable memory would wait for all the work queued on the device.
    torch's pinned-memory cache keeps the block until the copy is done."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


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
        device: torch.device | str = "cpu",
        train_device: torch.device | str = "cpu",
    ):
        """`device`: cpu, cuda[:N], or auto (see `replay_device`, with `train_device`)."""
        shape = observation_space.shape
        self.frame_stack = (
            len(shape) == 3 and observation_space.dtype == np.uint8
            if frame_stack is None
            else frame_stack
        )
        self.stack = shape[0] if self.frame_stack else 1
        self.nstep, self.gamma, self.num_envs = nstep, gamma, num_envs
        # A block of c steps adds up to 2c rows; blocks of `_block` steps never lap the ring.
        self.per_env = max(capacity // num_envs, 2 * (nstep + self.stack) + 4)
        self._block = (self.per_env - self.stack - nstep - 1) // 2
        action = np.asarray(action_space.sample())
        specs = {
            "obs": (
                shape[1:] if self.frame_stack else shape,
                # as the runner hands them to the networks: uint8 frames, floats for the rest
                # (a uint8 vector, such as ALE's RAM, goes into an MLP as floats)
                torch.uint8 if is_image(observation_space) else torch.float32,
            ),
            "action": (action.shape, torch.long if action.dtype.kind in "iu" else torch.float32),
            "reward": ((), torch.float32),
            "terminated": ((), torch.bool),
            "truncated": ((), torch.bool),
            "first": ((), torch.bool),  # the first row of an episode: stacks stop there
        }
        self.bytes_per_transition = 3 + sum(  # 3: the CPU flags below
            int(np.prod(s)) * torch.empty((), dtype=d).element_size() for s, d in specs.values()
        )
        E, P = num_envs, self.per_env
        needed = self.bytes_per_transition * P * E
        self.device = replay_device(str(device), torch.device(train_device), needed)
        free = available_memory(self.device)
        if needed > free:
            raise UsageError(
                f"a replay buffer of {capacity} transitions needs {needed / 2**30:.1f} GiB, more "
                f"than the {free / 2**30:.1f} GiB free on {self.device}; lower --buffer-size"
            )
        self.columns = {
            name: torch.zeros((E, P, *s), dtype=d, device=self.device)
            for name, (s, d) in specs.items()
        }
        # On the CPU, adding writes through numpy views of the same memory: a numpy index
        # costs a microsecond where torch's costs ~15, and adding a step makes a dozen of them.
        self.host = (
            {name: c.numpy() for name, c in self.columns.items()}
            if self.device.type == "cpu"
            else None
        )
        # CPU copies of what adding consults, so a GPU buffer is never read back.
        self.valid = np.zeros((E, P), bool)  # the row holds a recorded step
        self.ends = np.zeros((E, P), bool)  # that step ended its episode
        self.complete = np.zeros((E, P), bool)  # its n-step window is complete
        self.next = np.zeros(E, np.int64)  # the slot each ring writes next (rings fill from 0)
        self.num_rows = np.zeros(E, np.int64)
        self.num_valid = np.zeros(E, np.int64)
        self.tree = SumTree(P * E)
        self.max_priority = 1.0
        self.uniform = True  # no priority updated yet: all sampleable priorities are equal
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.num_valid.sum())

    @property
    def nbytes(self) -> int:
        on_device = sum(c.numel() * c.element_size() for c in self.columns.values())
        return on_device + self.valid.nbytes + self.ends.nbytes + self.complete.nbytes

    # -- adding -------------------------------------------------------------------------------

    def _frames(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.to(self.device, self.columns["obs"].dtype)
        return obs[..., -1, :, :] if self.frame_stack else obs

    def add_rollout(self, rollout: Rollout) -> None:
        """Adds [T, N] steps from an EnvRunner (real final observations for truncations)."""
        s = rollout.steps
        actions, rewards, terminated, truncated = s.require(
            "actions", "rewards", "terminated", "truncated"
        )
        T = rewards.shape[0]
        frames = self._frames(torch.cat([s.obs, rollout.last_obs[None]]))  # [T + 1, N, ...]
        # The next observation of each step: the following one, or the real final observation
        # of a truncated episode. A terminated step never bootstraps: any frame may stand in.
        next_frames = frames[1:].clone()
        if len(rollout.final_index):
            t, env = rollout.final_index.to(self.device).long().T
            next_frames[t, env] = self._frames(rollout.final_obs)
        data = {
            "action": actions,
            "reward": rewards,
            "terminated": terminated,
            "truncated": truncated,
        }
        data = {k: v.to(self.device, self.columns[k].dtype) for k, v in data.items()}
        ends = (terminated.bool() | truncated.bool()).cpu().numpy()
        source: tuple[Any, Any, dict[str, Any]] = (frames, next_frames, data)
        if self.host is not None:  # written through numpy views: see __init__
            source = (frames.numpy(), next_frames.numpy(), {k: v.numpy() for k, v in data.items()})
        frames, next_frames, data = source
        for env in range(self.num_envs):
            for t0 in range(0, T, self._block):
                t1 = min(t0 + self._block, T)
                self._add_block(
                    env,
                    frames[t0 : t1 + 1, env],
                    next_frames[t0:t1, env],
                    {k: v[t0:t1, env] for k, v in data.items()},
                    ends[t0:t1, env],
                )

    def _add_block(self, env: int, frames, next_frames, data: dict, ends: np.ndarray) -> None:
        """Steps t = 0..n-1 of one env: from frames[t] to next_frames[t]; frames[t + 1] is the
        reset observation after a step that ended its episode."""
        P, n = self.per_env, len(ends)
        start = int(self.num_rows[env] == 0)  # an empty ring first gets the step's observation
        # Row positions after the ring's newest row: step t leads to row nxt[t] (its next
        # observation) and an episode end adds row nxt[t] + 1 (the reset observation).
        nxt = np.arange(n) + np.cumsum(ends) - ends + start
        resets = nxt[ends] + 1
        num_ends = int(ends.sum())
        length = n + num_ends + start
        row0 = int(self.next[env])
        rows = self._span(row0, length)
        # The row each step starts from: consecutive rows unless an episode end skips one.
        step_rows = (row0 + nxt - 1) % P if num_ends else self._span(row0 + start - 1, n)

        # Rows overwritten lose their transition; then frames, flags and step data go in.
        self.num_valid[env] -= self.valid[env, rows].sum()
        self.valid[env, rows] = self.ends[env, rows] = self.complete[env, rows] = False

        # numpy arrays and views on the CPU (see __init__), torch tensors on a GPU.
        columns = self.host if self.host is not None else self.columns

        def dev(a):
            if self.host is not None or isinstance(a, slice):
                return a
            return to_device(a, self.device)

        shape = (length, *next_frames.shape[1:])
        new: Any = np.empty(shape, next_frames.dtype) if self.host else next_frames.new_empty(shape)
        new[dev(nxt)] = next_frames
        # Integer positions, not a boolean mask: a mask's size is only known once the GPU has
        # counted it, which would wait for the device.
        first = np.zeros(length, bool)
        if num_ends:
            new[dev(resets)] = frames[1:][dev(np.flatnonzero(ends))]
            first[resets] = True
        if start:
            new[0], first[0] = frames[0], True
        columns["obs"][env, dev(rows)] = new
        columns["first"][env, dev(rows)] = dev(first)
        for name, values in data.items():
            columns[name][env, dev(step_rows)] = values
        self.valid[env, step_rows], self.ends[env, step_rows] = True, ends
        self.num_valid[env] += n
        self.next[env] = (self.next[env] + length) % P
        self.num_rows[env] = min(self.num_rows[env] + length, P)

        # Priorities: the new rows, and the old rows whose stacks lose their earlier frames to
        # them, can no longer be sampled; steps whose n-step windows are now complete enter.
        evicted = (row0 + np.arange(length + self.stack - 1)) % P
        entered = self._completed(env, (row0 + np.arange(-self.nstep, length)) % P)
        self.complete[env, entered] = True
        self.tree.update(  # one call: a slot in both keeps its last value, the max priority
            env * P + np.concatenate([evicted, entered]),
            np.concatenate([np.zeros(len(evicted)), np.full(len(entered), self.max_priority)]),
        )

    def _span(self, start: int, length: int) -> slice | np.ndarray:
        """Ring rows start, start + 1, ... (mod per_env): a slice where they do not wrap, as
        numpy and torch index a slice several times faster than an array of positions."""
        start %= self.per_env
        if start + length <= self.per_env:
            return slice(start, start + length)
        return (start + np.arange(length)) % self.per_env

    def _completed(self, env: int, slots: np.ndarray) -> np.ndarray:
        """The recorded, not yet complete steps at `slots` whose n-step window is now complete:
        n steps recorded, or an episode end among the recorded ones."""
        slots = slots[self.valid[env, slots] & ~self.complete[env, slots]]
        window = (slots[:, None] + np.arange(self.nstep)) % self.per_env
        recorded = np.cumprod(self.valid[env, window], axis=1).astype(bool)
        done = recorded.all(axis=1) | (self.ends[env, window] & recorded).any(axis=1)
        return slots[done]

    # -- sampling -----------------------------------------------------------------------------

    def stacked(self, env: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Observations at (env, slot) pairs, stacks rebuilt from single frames."""
        obs = self.columns["obs"]
        frames, cur = [obs[env, slots]], slots
        for _ in range(self.stack - 1):
            cur = torch.where(self.columns["first"][env, cur], cur, (cur - 1) % self.per_env)
            frames.append(obs[env, cur])
        return torch.stack(frames[::-1], dim=1) if self.frame_stack else frames[0]

    def sample(self, batch_size: int, beta: float | None = None) -> dict:
        """A batch drawn in proportion to priority, with importance weights when `beta` is set."""
        if self.uniform:
            indices = self._sample_uniform(batch_size)
        else:
            indices = self.tree.sample(batch_size, self.rng)
        batch = self.get(indices)
        if beta is not None:
            probs = self.tree.priorities(indices) / self.tree.total
            weights = importance_weights(probs, len(self), beta).astype(np.float32)
            batch["weights"] = to_device(weights, self.device)
        return batch

    def _sample_uniform(self, batch_size: int) -> np.ndarray:
        """Uniform over the sampleable slots: draw among the rows written, keep those with a
        priority (nearly all of them), draw again for the rest."""
        if not self.tree.total > 0:
            raise ValueError("no transition can be sampled yet")
        offsets = np.concatenate([[0], np.cumsum(self.num_rows)])
        found, need = [], batch_size
        while need > 0:
            flat = self.rng.integers(0, offsets[-1], size=need + need // 4 + 8)
            env = np.searchsorted(offsets, flat, side="right") - 1
            indices = env * self.per_env + flat - offsets[env]
            indices = indices[self.tree.priorities(indices) > 0][:need]
            found.append(indices)
            need -= len(indices)
        return np.concatenate(found)

    def complete_indices(self) -> np.ndarray:
        """Every transition that can be sampled (its n-step window is complete)."""
        return np.flatnonzero(self.tree.priorities(np.arange(len(self.tree))) > 0)

    def get(self, indices: np.ndarray) -> dict:
        """obs, actions, n-step returns, bootstrap discounts, next_obs, weights (1) at `indices`,
        as tensors on the buffer's device."""
        indices = np.asarray(indices)
        # to_device: a blocking upload would wait here for the update queued on the GPU
        env, slots = (to_device(a, self.device) for a in np.divmod(indices, self.per_env))
        window = (slots[:, None] + torch.arange(self.nstep, device=self.device)) % self.per_env

        def win(name):
            return self.columns[name][env[:, None], window]

        returns, discounts, k = nstep_returns(
            win("reward"), win("terminated"), win("truncated"), self.gamma
        )
        return {
            "obs": self.stacked(env, slots),
            "actions": self.columns["action"][env, slots],
            "returns": returns,
            "discounts": discounts,
            "next_obs": self.stacked(env, (slots + k) % self.per_env),
            "weights": torch.ones(len(indices), device=self.device),
            "indices": indices,
        }

    def state_dict(self) -> dict:
        """Rows written, ring positions, priorities and the sampling RNG: what a resumed run needs.

        Rings fill from slot 0, so only the first `num_rows` rows of each column and the non-zero
        priorities are kept: a small run keeps a small checkpoint.
        """
        rows = int(self.num_rows.max())
        priorities = self.tree.priorities(np.arange(len(self.tree)))
        held = np.flatnonzero(priorities)
        return {
            "columns": {name: _rows_on_host(c, rows) for name, c in self.columns.items()},
            "flags": {name: getattr(self, name)[:, :rows].copy() for name in _FLAGS},
            "counters": {name: getattr(self, name).copy() for name in _COUNTERS},
            "held": held,
            "priorities": priorities[held],
            "max_priority": self.max_priority,
            "uniform": self.uniform,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Refills a fresh storage of the same capacity from `state_dict()`."""
        for name, values in state["columns"].items():
            for env, rows in enumerate(values):  # an env at a time: no second copy of a column
                self.columns[name][env, : len(rows)].copy_(rows)
        for name, values in state["flags"].items():
            getattr(self, name)[:, : values.shape[1]] = values
        for name, values in state["counters"].items():
            getattr(self, name)[:] = values
        priorities = np.zeros(len(self.tree))
        priorities[state["held"]] = state["priorities"]
        self.tree.update(np.arange(len(self.tree)), priorities)
        self.max_priority, self.uniform = state["max_priority"], state["uniform"]
        self.rng.bit_generator.state = state["rng"]

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """New priorities (already raised to alpha); never 0, so nothing is stuck forever."""
        priorities = np.maximum(np.asarray(priorities, dtype=np.float64), 1e-6)
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.uniform = False


_FLAGS = ("valid", "ends", "complete")
_COUNTERS = ("next", "num_rows", "num_valid")


class ExperienceReplay(RunnerWrapper):
    """Adds every rollout to a ReplayStorage and yields `updates_per_rollout` sampled batches.

    Prioritized when `alpha` > 0: call `update_priorities(td_errors)` after each batch. Beta is
    annealed linearly from `beta` to 1 over the run's env steps.
    """

    def __init__(
        self,
        runner: Runner,
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
        self.has_data = False

    @property
    def beta(self) -> float:
        progress = min(self.rollout_start / self.num_train_steps, 1.0)  # as every schedule
        return self.beta0 + (1 - self.beta0) * progress

    def __iter__(self) -> Iterator[Batch]:
        for rollout in self.runner:
            self.storage.add_rollout(rollout)
            if self.step_count < self.learning_starts or not self.filled():
                continue  # a resumed run without its saved buffer refills it first
            # Uniform replay draws a round's batches at once (one gather instead of one per
            # update); prioritized replay draws each after the last one's priority update.
            per_draw = 1 if self.alpha > 0 else self.updates_per_rollout
            for _ in range(self.updates_per_rollout // per_draw):
                yield from self.sample(per_draw)

    def filled(self) -> bool:
        """Whether the replay holds a transition to sample, on every data-parallel rank. Ranks
        that decided apart would make different numbers of updates and pair their gradient
        all-reduces wrongly: with n-step returns, a rank's first transition is stored once n steps
        have passed or an episode has ended, which differs between ranks in a resumed run that
        refills its buffer. Once true, it stays true: the replay never empties."""
        if not self.has_data:
            self.has_data = distributed.all_true(self.storage.tree.total > 0)
        return self.has_data

    def sample(self, count: int = 1) -> Iterator[Batch]:
        """Yields `count` batches from one draw of `count * batch_size` transitions."""
        size = self.batch_size
        data = self.storage.sample(count * size, self.beta if self.alpha > 0 else None)
        indices = data.pop("indices")
        # Asynchronous only towards a GPU: a GPU -> CPU copy (a replay on the GPU feeding a CPU
        # learner) that does not block returns before the data has arrived.
        non_blocking = self.device.type == "cuda"
        data = {k: v.to(self.device, non_blocking=non_blocking) for k, v in data.items()}
        for i in range(count):
            self.last_indices = indices[i * size : (i + 1) * size]
            yield Batch(**{k: v[i * size : (i + 1) * size] for k, v in data.items()})

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


def _rows_on_host(column: torch.Tensor, rows: int) -> torch.Tensor:
    """The first `rows` rows of every env of `column` [envs, capacity, ...], in a CPU tensor of
    their own: torch.save writes a view's whole storage (the full capacity), and slicing a GPU
    column across envs would first copy it on the GPU. An env's rows are one contiguous block."""
    out = torch.empty((column.shape[0], rows, *column.shape[2:]), dtype=column.dtype)
    for env in range(column.shape[0]):
        out[env].copy_(column[env, :rows])
    return out
