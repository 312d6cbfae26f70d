"""A replay buffer to drop into any project: wrap an env, step it, read transitions as a Dataset.

    env, replay_buffer = wrap(gym.make("CartPole-v1"), plot=True)
    replay_buffer.attach_enrichment(DiscountedReturns(key="g", discount=0.99))
    episode(env, policy)                       # or: for transition in step_environment(env, policy)
    ds = ReplayBufferDataset(replay_buffer, fields=("s", "a"), info_keys=["g"])
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))     # Transition(s=[B, 4], a=[B], g=[B])

It imports only numpy, torch and gymnasium >= 1.0 (matplotlib to plot), on Python >= 3.10: copy
this one file anywhere.

`TransitionStorage` keeps one row per observation, plus the step taken from it once known. A
step's next observation is the next row, so observations are stored once, in their own dtype, and
`shift(slots, k)` reaches an n-step window. The row after an episode's last step holds the real
final observation and no step (as in gymnasium's next-step autoreset), so truncations can
bootstrap. derl's own experience replay (`derl/runners/replay.py`) uses the same layout, but
writes whole rollouts as torch blocks that can live on the GPU, so it has its own storage.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import warnings
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Dataset field -> storage column. d is `terminated`; a time limit shows in `trunc` instead.
FIELDS = {
    "s": "obs",
    "a": "action",
    "s_p": "obs",
    "r": "reward",
    "d": "terminated",
    "trunc": "truncated",
}
DEFAULT_FIELDS = ("s", "a", "s_p", "r", "d")
EPISODE_FIELDS = (*DEFAULT_FIELDS, "trunc")  # what an Enricher sees


class TransitionStorage:
    """Ring buffer of growing preallocated numpy arrays; row i: observation i, the step from it."""

    def __init__(self, capacity: int = 1_000_000, initial_rows: int = 1024):
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 (a step and its next observation): {capacity}")
        self.capacity = capacity
        self.columns: dict[str, np.ndarray] = {}
        self.fill: dict[str, Any] = {}  # what a new row holds in each column; 0 if not listed
        self._rows = min(initial_rows, capacity)  # allocated rows; doubles up to `capacity`
        self._next = 0  # the slot the next row goes to
        self.num_rows = 0  # rows held, the newest (current observation) included
        self._num_valid = 0
        self.version = 0  # bumped on every change, so readers can cache index maps

    def __len__(self) -> int:
        """Number of complete transitions."""
        return self._num_valid

    def start(self, obs) -> int:
        """Appends a row holding `obs` (e.g. the first of an episode); returns its slot."""
        if self.num_rows == self._rows:
            if self._rows < self.capacity:
                self._grow(min(2 * self._rows, self.capacity))
            elif "valid" in self.columns and self.columns["valid"][self._next]:
                self._num_valid -= 1  # the oldest transition is evicted
        slot = self._next
        for name, column in self.columns.items():
            column[slot] = self.fill.get(name, 0)
        self.write("obs", slot, obs)
        self._next = (slot + 1) % self._rows
        self.num_rows = min(self.num_rows + 1, self._rows)
        return slot

    def add(self, action, reward: float, terminated: bool, truncated: bool, next_obs) -> int:
        """Records the step from the newest row, appends `next_obs`; returns the step's slot."""
        if self.num_rows == 0:
            raise RuntimeError("no observation to step from: call start(obs) (env.reset()) first")
        slot = (self._next - 1) % self._rows  # the newest row
        for name, value in (
            ("action", action),
            ("reward", reward),
            ("terminated", terminated),
            ("truncated", truncated),
            ("valid", True),
        ):
            self.write(name, slot, value)
        self._num_valid += 1
        self.start(next_obs)
        return (self._next - 2) % self._rows  # the step's row again: growth may have moved it

    def declare(self, name: str, example) -> None:
        """Creates column `name` for values like `example` before any row is written."""
        if name not in self.columns:
            example = np.asarray(example)
            shape = (self._rows, *example.shape)
            self.columns[name] = np.full(shape, self.fill.get(name, 0), example.dtype)

    def write(self, name: str, slots, values) -> None:
        """Writes `values` to column `name` at `slots`; the first write creates the column."""
        if name not in self.columns:
            sample = np.asarray(values)[0] if np.ndim(slots) else np.asarray(values)
            if sample.dtype == object:
                raise TypeError(
                    f"cannot store {name} {type(sample)} as an array; flatten dict "
                    "observations with gymnasium.wrappers.FlattenObservation"
                )
            dtype = np.float32 if sample.dtype == np.float64 and name != "obs" else sample.dtype
            self.columns[name] = np.full((self._rows, *sample.shape), self.fill.get(name, 0), dtype)
        self.columns[name][slots] = values
        self.version += 1

    def slots(self, logical) -> np.ndarray:
        """Physical slots of logical rows (0 is the oldest row held, -1 the newest)."""
        logical = np.asarray(logical)
        logical = np.where(logical < 0, logical + self.num_rows, logical)
        return (self._next - self.num_rows + logical) % self._rows

    def shift(self, slots, k: int) -> np.ndarray:
        """The slots `k` rows later (earlier if k < 0): next observations, n-step windows."""
        return (np.asarray(slots) + k) % self._rows

    def valid_slots(self) -> np.ndarray:
        """Slots of all complete transitions, oldest first."""
        rows = self.slots(np.arange(self.num_rows))
        return rows[self.columns.get("valid", np.zeros(self._rows, bool))[rows]]

    def ends(self, slots: np.ndarray) -> np.ndarray:
        """Whether each transition at `slots` ends its episode (terminated or truncated)."""
        if "terminated" not in self.columns:
            return np.zeros(len(slots), bool)
        return self.columns["terminated"][slots] | self.columns["truncated"][slots]

    def clear(self) -> None:
        """Drops every row but the newest (the current observation, so recording can go on)."""
        if "valid" in self.columns:
            self.columns["valid"][self.slots(np.arange(self.num_rows - 1))] = False
        self.num_rows, self._num_valid = min(self.num_rows, 1), 0
        self.version += 1

    def _grow(self, rows: int) -> None:
        # Rows move to slots 0..num_rows-1, oldest first (after a clear they may have wrapped).
        order = self.slots(np.arange(self.num_rows))
        for name, column in self.columns.items():
            grown = np.full((rows, *column.shape[1:]), self.fill.get(name, 0), column.dtype)
            grown[: self.num_rows] = column[order]
            self.columns[name] = grown
        self._next, self._rows = self.num_rows, rows
        self.version += 1


@cache
def transition_type(fields: tuple[str, ...]) -> type:
    """The `Transition` namedtuple class with these fields (one class per tuple of fields)."""

    def __repr__(self) -> str:  # numpy scalars as plain numbers, as in `Transition(r=1.0, d=False)`
        shown = [str(v) if isinstance(v, np.generic) else repr(v) for v in self]
        return f"Transition({', '.join(f'{k}={v}' for k, v in zip(fields, shown, strict=True))})"

    make_class: Any = namedtuple  # fields known only at run time: no static namedtuple type
    cls = make_class("Transition", fields)
    cls.__repr__ = __repr__
    # Pickle by field names, not by class, so DataLoader workers can send items back.
    cls.__reduce__ = lambda self: (_make_transition, (fields, tuple(self)))
    return cls


def _make_transition(fields: tuple[str, ...], values: tuple) -> tuple:
    return transition_type(fields)(*values)


class Enricher:
    """Computes per-transition values for each finished episode; subclass it and set `keys`."""

    keys: tuple[str, ...] = ()

    def __call__(self, episode) -> dict[str, np.ndarray]:
        """Episode (a Transition of arrays s, a, s_p, r, d, trunc, in time order) -> {key: [T]}."""
        raise NotImplementedError


def discounted_returns(rewards: np.ndarray, discount: float) -> np.ndarray:
    """g_t = r_t + discount * g_{t+1} over one episode, nothing after its last step."""
    returns, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + discount * running
        returns[t] = running
    return returns


class DiscountedReturns(Enricher):
    """Monte-Carlo discounted return from each step to the episode's end (no bootstrap)."""

    def __init__(self, key: str = "g", discount: float = 0.95):  # 0.95: the seed's default
        self.keys, self.discount = (key,), discount

    def __call__(self, episode) -> dict[str, np.ndarray]:
        return {self.keys[0]: discounted_returns(episode.r, self.discount)}


class GAE(Enricher):
    """GAE (arxiv.org/abs/1506.02438) advantages and value targets; truncations bootstrap."""

    def __init__(
        self,
        value_fn: Callable,
        discount: float = 0.99,
        lam: float = 0.95,
        key: str = "adv",
        target_key: str = "v_target",
    ):
        self.value_fn, self.discount, self.lam = value_fn, discount, lam
        self.keys = (key, target_key)

    def __call__(self, episode) -> dict[str, np.ndarray]:
        obs = np.concatenate([episode.s, episode.s_p[-1:]])
        values = np.asarray(_call(self.value_fn, obs), np.float64).reshape(len(obs))
        if episode.d[-1]:  # a terminal state has no future
            values[-1] = 0.0
        deltas = episode.r + self.discount * values[1:] - values[:-1]
        advantages = discounted_returns(deltas, self.discount * self.lam)
        return {self.keys[0]: advantages, self.keys[1]: advantages + values[:-1]}


class ReplayBuffer:
    """The transitions an env made (see `wrap`), their enrichments, and episode statistics."""

    def __init__(self, capacity: int = 1_000_000, plot: LivePlot | None = None):
        self.storage = TransitionStorage(capacity)
        self.enrichers: list[Enricher] = []
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.num_steps = 0  # env steps recorded, evicted ones included
        self.plot = plot
        self._return, self._length, self._ended = 0.0, 0, True

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def info_keys(self) -> list[str]:
        """The keys the attached enrichers produce."""
        return [key for enricher in self.enrichers for key in enricher.keys]

    def attach_enrichment(self, enricher: Enricher) -> None:
        """Adds an enricher: it runs on each episode that ends, and now on those already stored."""
        # Not a field, nor a storage column: an enricher writes its keys into the storage.
        taken = set(self.info_keys) | set(FIELDS) | set(FIELDS.values()) | set(self.storage.columns)
        taken.add("valid")
        keys = list(enricher.keys)
        if not keys or taken & set(keys):
            raise ValueError(
                f"enricher keys {keys} must be given and new, not one of {sorted(taken)}"
            )
        if not all(key.isidentifier() and not key.startswith("_") for key in keys):
            raise ValueError(f"enricher keys {keys} must be identifiers without a leading '_'")
        self.enrichers.append(enricher)
        slots = self.storage.valid_slots()
        ends = np.flatnonzero(self.storage.ends(slots))
        for episode_slots in np.split(slots, ends + 1)[:-1]:  # the last piece is unfinished
            self._enrich(episode_slots, [enricher])

    def clear(self) -> None:
        """Forgets all stored transitions (e.g. after an on-policy update); recording goes on."""
        self.storage.clear()

    def on_reset(self, obs) -> None:
        """Records a reset; a reset in mid-episode cuts it short, which is a truncation."""
        if not self._ended:
            if self._length and self.storage.num_rows >= 2:
                self.storage.write("truncated", self.storage.slots(-2), True)
            self._end_episode()
        self.storage.start(obs)
        self._ended = False

    def on_step(self, action, next_obs, reward, terminated: bool, truncated: bool) -> None:
        """Records a step taken from the current observation."""
        action = action.detach().cpu().numpy() if isinstance(action, torch.Tensor) else action
        self.storage.add(action, float(reward), bool(terminated), bool(truncated), next_obs)
        self.num_steps += 1
        self._return += float(reward)
        self._length, self._ended = self._length + 1, False
        if terminated or truncated:
            self._end_episode()

    def _end_episode(self) -> None:
        self._ended = True
        if self._length == 0:
            return
        # Counted before enriching: an enricher that raises leaves the next episode's count clean.
        length, self._length = self._length, 0
        self.episode_returns.append(self._return)
        self.episode_lengths.append(length)
        self._return = 0.0
        # The episode is the rows before the newest one (fewer if evicted or cleared).
        num_kept = min(length, self.storage.num_rows - 1)
        self._enrich(self.storage.slots(np.arange(-num_kept - 1, -1)), self.enrichers)
        if self.plot is not None:
            self.plot.update(self.episode_returns, self.episode_lengths, self.num_steps)

    def _enrich(self, slots: np.ndarray, enrichers: list[Enricher]) -> None:
        if len(slots) == 0 or not enrichers:
            return
        episode = self.gather(slots, EPISODE_FIELDS)
        for enricher in enrichers:
            values = enricher(episode)
            for key in enricher.keys:
                column = np.asarray(values[key])
                self.storage.fill.setdefault(key, np.nan if column.dtype.kind == "f" else 0)
                self.storage.write(key, slots, column)

    def gather(self, slots: np.ndarray, names: Iterable[str]) -> tuple:
        """A Transition of arrays: the fields or info keys `names` at `slots`."""
        names = tuple(names)
        shifted = self.storage.shift(slots, 1)
        columns = self.storage.columns
        values = [columns[FIELDS.get(n, n)][shifted if n == "s_p" else slots] for n in names]
        return transition_type(names)(*values)

    def close(self) -> None:
        """Draws the plot one last time."""
        if self.plot is not None:
            self.plot.update(self.episode_returns, self.episode_lengths, self.num_steps, force=True)


class BufferedEnv(gym.Wrapper):
    """Records each transition of the wrapped env in `replay_buffer`, however it is stepped."""

    def __init__(self, env: gym.Env, replay_buffer: ReplayBuffer):
        super().__init__(env)
        self.replay_buffer = replay_buffer

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.replay_buffer.on_reset(obs)
        return obs, info

    def step(self, action):
        if self.replay_buffer.storage.num_rows == 0:
            raise RuntimeError("call env.reset() before env.step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.replay_buffer.on_step(action, obs, reward, terminated, truncated)
        return obs, reward, terminated, truncated, info

    def close(self):
        self.replay_buffer.close()
        super().close()


def _check_no_autoreset(env) -> None:
    """Refuse envs that reset themselves: the buffer closes an episode on terminated or
    truncated and expects the next observation to come from the caller's reset()."""
    if isinstance(env, gym.vector.VectorEnv):
        raise ValueError(
            "buffer.wrap takes one gymnasium.Env, not a vector env: wrap each env, "
            "e.g. gymnasium.make(env_id), before vectorising"
        )
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.Autoreset):
            raise ValueError(
                "buffer.wrap needs an env that does not autoreset: the step after an episode "
                "end would be recorded as a transition; remove the Autoreset wrapper and call "
                "env.reset() yourself (step_environment does)"
            )
        layer = layer.env


def wrap(
    env: gym.Env,
    plot: bool = False,
    plot_blocksize: int = 8,
    capacity: int = 1_000_000,
    plot_path: str = "buffer_stats.png",
) -> tuple[BufferedEnv, ReplayBuffer]:
    """Wraps `env` so that every transition is recorded; returns the env and its replay buffer.

    `plot=True` shows episode return and length, averaged over blocks of `plot_blocksize`
    episodes, in a window if there is a display and otherwise in the PNG file `plot_path`.
    """
    _check_no_autoreset(env)
    title = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    live_plot = LivePlot(plot_path, plot_blocksize, title) if plot else None
    replay_buffer = ReplayBuffer(capacity, live_plot)
    return BufferedEnv(env, replay_buffer), replay_buffer


def _call(fn: Callable, obs):
    """Calls a policy or value function; a torch module gets a tensor and no gradients."""
    if not isinstance(fn, torch.nn.Module):
        out = fn(obs)
    else:
        x = torch.as_tensor(np.asarray(obs))
        x = x.to(torch.get_default_dtype()) if x.is_floating_point() else x
        param = next(fn.parameters(), None)
        with torch.no_grad():
            out = fn(x if param is None else x.to(param.device))
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out


def _env_action(action, space: gym.Space):
    if isinstance(space, gym.spaces.Discrete):
        return int(action)
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return np.asarray(action, dtype=space.dtype)
    return action


def step_environment(
    env: gym.Env, policy: Callable, num_steps: int | None = None, seed: int | None = None
) -> Iterator[Any]:
    """Resets `env`, steps it with `policy` forever (or `num_steps`), resets after episode ends.

    Yields Transition(s, a, s_p, r, d=terminated, trunc=truncated, info) for each step.
    """
    step_type = transition_type((*EPISODE_FIELDS, "info"))
    obs, _ = env.reset(seed=seed)
    ended = False
    for _ in itertools.count() if num_steps is None else range(num_steps):
        if ended:  # reset here, not after the last step: no extra reset (and row) at the end
            obs = env.reset()[0]
        action = _env_action(_call(policy, obs), env.action_space)
        next_obs, reward, terminated, truncated, info = env.step(action)
        yield step_type(obs, action, next_obs, reward, terminated, truncated, info)
        obs, ended = next_obs, terminated or truncated


def episode(env: gym.Env, policy: Callable, seed: int | None = None) -> list:
    """Runs one episode of `policy` in `env`; returns its transitions."""
    steps = []
    for step in step_environment(env, policy, seed=seed):
        steps.append(step)
        if step.d or step.trunc:
            break
    return steps


class ReplayBufferDataset(torch.utils.data.Dataset):
    """A live Dataset over a buffer, oldest first: Transitions of `fields` and `info_keys`.

    Fields: s, a, s_p (next observation), r, d (terminated), trunc (truncated). Enrichers run as
    episodes end, so with info keys the dataset holds finished episodes only.
    """

    def __init__(
        self,
        buffer: ReplayBuffer | gym.Env,
        fields: Iterable[str] = DEFAULT_FIELDS,
        info_keys: Iterable[str] = (),
    ):
        if isinstance(buffer, gym.Env):  # a wrapped env, perhaps wrapped again
            buffer = buffer.get_wrapper_attr("replay_buffer")
        assert isinstance(buffer, ReplayBuffer)
        self.buffer: ReplayBuffer = buffer
        fields = (fields,) if isinstance(fields, str) else tuple(fields)
        info_keys = (info_keys,) if isinstance(info_keys, str) else tuple(info_keys)
        if unknown := [f for f in fields if f not in FIELDS]:
            raise ValueError(f"unknown fields {unknown}; valid fields are {list(FIELDS)}")
        if missing := [k for k in info_keys if k not in self.buffer.info_keys]:
            raise ValueError(
                f"no attached enricher produces info keys {missing}; valid info keys "
                f"are {self.buffer.info_keys} (see replay_buffer.attach_enrichment)"
            )
        self.names = fields + info_keys
        self.item_type = transition_type(self.names)  # a repeated name is refused here
        self.finished_only = bool(info_keys)
        self._slots: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))

    def slots(self) -> np.ndarray:
        """Storage slots of the dataset's transitions, oldest first."""
        storage = self.buffer.storage
        if self._slots[0] != storage.version:
            slots = storage.valid_slots()
            if self.finished_only:  # steps after the last episode end are not enriched yet
                ends = np.flatnonzero(storage.ends(slots))
                slots = slots[: ends[-1] + 1 if len(ends) else 0]
            self._slots = (storage.version, slots)
        return self._slots[1]

    def __len__(self) -> int:
        return len(self.slots())

    def __getitem__(self, index: int) -> tuple:
        slots = self.slots()[[index]]  # IndexError past the end, as iteration expects
        return self.item_type(*(v[0] for v in self.buffer.gather(slots, self.names)))

    def __getitems__(self, indices: list[int]) -> list:
        """Many items, one gather per column (DataLoader fetches batches with it)."""
        columns = self.buffer.gather(self.slots()[np.asarray(indices, np.int64)], self.names)
        return [self.item_type(*values) for values in zip(*columns, strict=True)]


class LivePlot:
    """Episode return and length, averaged over blocks of episodes: in a window, or a PNG file."""

    def __init__(
        self,
        path: str = "buffer_stats.png",
        blocksize: int = 8,
        title: str = "",
        min_interval: float = 1.0,
    ):
        if blocksize < 1:
            raise ValueError(f"plot blocksize must be >= 1, got {blocksize}")
        self.path, self.blocksize, self.title = path, blocksize, title
        self.min_interval = min_interval  # seconds between redraws, so plotting stays cheap
        self.fig: Figure | None = None  # made at the first draw
        self.axes: Any = None  # its two Axes
        self.window, self.enabled, self._next = False, True, 0.0

    def update(
        self, returns: list[float], lengths: list[int], num_steps: int, force: bool = False
    ) -> None:
        """Redraws when a block of episodes is complete, at most every `min_interval` seconds."""
        block_done = len(returns) % self.blocksize == 0
        if self.enabled and returns and (force or block_done and time.monotonic() > self._next):
            try:  # a plot must never stop a training run
                self._draw(np.asarray(returns), np.asarray(lengths), num_steps)
            except Exception as error:
                warnings.warn(f"buffer plot disabled after an error: {error!r}", stacklevel=2)
                self.enabled = False
            self._next = time.monotonic() + self.min_interval

    def _draw(self, returns: np.ndarray, lengths: np.ndarray, num_steps: int) -> None:
        fig = self.fig if self.fig is not None else self._make_figure()
        num_blocks = len(returns) // self.blocksize
        block_ends = np.arange(1, num_blocks + 1) * self.blocksize
        for ax, ys, name in zip(self.axes, (returns, lengths), ("return", "length"), strict=True):
            ax.clear()
            ax.plot(np.arange(1, len(ys) + 1), ys, color="C0", alpha=0.3, label="episode")
            blocks = ys[: num_blocks * self.blocksize].reshape(num_blocks, self.blocksize)
            ax.plot(block_ends, blocks.mean(1), "C0.-", label=f"mean of {self.blocksize}")
            ax.set_ylabel(f"episode {name}")
            ax.grid(alpha=0.3)
        self.axes[0].legend(loc="upper left", fontsize="small")
        self.axes[1].set_xlabel("episode")
        fig.suptitle(f"{self.title}: {len(returns)} episodes, {num_steps} steps")
        if self.window:
            fig.canvas.draw_idle()
            fig.canvas.flush_events()  # lets the window repaint without blocking
        else:  # write, then rename: a viewer never reads a half-written file
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            fig.savefig(tmp, format="png", dpi=100)
            os.replace(tmp, self.path)

    def _make_figure(self) -> Figure:
        if _has_display():
            import matplotlib.pyplot as plt  # a GUI backend, or Agg if no GUI toolkit loads

            plt.ion()
            fig, self.axes = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
            self.window = plt.get_backend().lower() not in NON_GUI_BACKENDS
            if self.window:
                plt.show(block=False)
        else:  # no pyplot: no backend to choose, no window, no global state touched
            from matplotlib.figure import Figure

            fig = Figure(figsize=(7, 5), layout="constrained")
            self.axes = fig.subplots(2, 1, sharex=True)
        self.fig = fig
        return fig


NON_GUI_BACKENDS = {"agg", "pdf", "pgf", "ps", "svg", "cairo", "template"}


def _has_display() -> bool:
    """Whether pyplot may open a window: a GUI MPLBACKEND, or a display server."""
    backend = os.environ.get("MPLBACKEND", "").lower()
    if backend:
        return backend not in NON_GUI_BACKENDS and "inline" not in backend
    return sys.platform != "linux" or any(map(os.environ.get, ("DISPLAY", "WAYLAND_DISPLAY")))
