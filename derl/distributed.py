"""Synchronous data-parallel training on torch.distributed (DD-PPO's scheme, for every algorithm).

Launched by `torchrun` (or `derl <alg> --nproc N`, which starts torch's own launcher), every
process (rank) steps its own `--num-envs` envs with its own seeds, keeps its own rollout or
replay buffer, and averages its gradients with the other ranks' before every optimizer step
(`average_gradients`), so the parameters stay identical on every rank. Wijmans et al. 2020,
https://arxiv.org/abs/1911.00357.

What the ranks agree on, and when (the rest is per rank):
- the parameters: identical from the first update on (same initialisation, averaged gradients,
  checked at the start of every run);
- the env step count: every rank counts the steps of all ranks (`world_size()` x its own), so
  `--num-train-steps`, `--learning-starts`, schedules and checkpoints are global and coincide;
- between rollouts, every `SYNC_EVERY` env steps and before every checkpoint and evaluation
  (`Exchange`): the episodes that ended (rank 0 logs all of them), Ctrl-C and callbacks' stops,
  the observation and reward normalisation statistics (merged as if one process had seen every
  rank's data), and prioritized replay's running maximum priority.

Nothing here runs when a single process trains: `world_size()` is 1 and every call returns
at once.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import signal
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from gymnasium.wrappers.utils import RunningMeanStd

from derl.errors import DerlError, UsageError

SYNC_EVERY = 2048  # env steps (over all ranks) between exchanges, at most one per rollout
TIMEOUT = datetime.timedelta(minutes=30)  # a collective waiting longer than this fails
T = TypeVar("T")


class PeerLost(DerlError):
    """Another rank stopped (crashed, killed): this one cannot go on alone."""


class SharedError(DerlError):
    """An error every rank raises because rank `origin` found it; only that rank prints it."""

    def __init__(self, message: str, exit_status: int, origin: int):
        super().__init__(message)
        self.exit_status, self.origin = exit_status, origin

    @property
    def printed_here(self) -> bool:
        return rank() == self.origin


def launched() -> bool:
    """Started by torchrun (or `--nproc`): it sets these for every process it starts."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0, which alone writes the logdir, logs and evaluates (or the only process)."""
    return rank() == 0


def restart_count() -> int:
    """How often torchrun has restarted this group after a failure (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def backend_for(requested: str, device: torch.device, nproc: int) -> str:
    """gloo on the CPU; nccl on CUDA with one GPU per process; gloo for processes that share
    GPUs (nccl refuses two ranks on one GPU). `device` is the one asked for: a bare "cuda"
    gives each process its own GPU (`local_device`), "cuda:K" puts them all on GPU K."""
    gpus = gpu_count()
    shared = nproc > gpus or (device.index is not None and nproc > 1)
    if requested == "nccl":
        if device.type != "cuda" or gpus == 0:
            raise UsageError(
                "--dist-backend nccl needs CUDA, and torch sees no CUDA device here; "
                "use --dist-backend gloo (or auto)"
            )
        if shared:
            where = f"on {device}" if device.index is not None else f"on {gpus} GPU(s)"
            raise UsageError(
                f"--dist-backend nccl needs one GPU per process: {nproc} processes {where}; "
                f"use --device cuda (a GPU each), fewer processes, or --dist-backend gloo"
            )
        return "nccl"
    if requested == "auto" and device.type == "cuda" and nproc > 0 and not shared:
        return "nccl"
    return "gloo"


def checked_device(name: str, flag: str) -> torch.device:
    """The device `name` (cpu, cuda, cuda:N) when torch has it here, else a UsageError naming
    `flag` (--device, --buffer-device): not CUDA's own "invalid device ordinal" mid-build."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"{flag} {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type != "cuda":
        return device
    gpus = gpu_count()
    if gpus == 0:
        raise UsageError(f"{flag} {name} asked for, but torch sees no CUDA device; use {flag} cpu")
    if device.index is not None and device.index >= gpus:
        raise UsageError(f"{flag} {name}: torch sees {gpus} GPU(s) here, cuda:0 to cuda:{gpus - 1}")
    return device


def local_device(device: torch.device) -> torch.device:
    """Each process on a machine gets its own GPU (LOCAL_RANK), or shares them in turn; an
    indexed one ("cuda:K") is every process's."""
    if device.type != "cuda" or device.index is not None:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init(requested_backend: str, device: torch.device) -> None:
    """Join the group torchrun started (once per process). `device`: the one asked for (the
    caller has made this process's own current)."""
    if not launched() or dist.is_initialized():
        return
    size = int(os.environ["WORLD_SIZE"])
    backend = backend_for(requested_backend, device, int(os.environ.get("LOCAL_WORLD_SIZE", size)))
    try:
        dist.init_process_group(backend, timeout=TIMEOUT, **attempt_store())
    except (RuntimeError, ValueError) as exc:  # a rendezvous that timed out, a port in use
        raise UsageError(f"cannot join the other processes ({first_line(exc)})") from None


def attempt_store() -> dict:
    """The store of this attempt, when torchrun's agent hosts it: after a restart
    (--max-restarts) it still holds the addresses the dead processes published, and gloo
    would try to connect to them. A prefix per attempt keeps each attempt's keys apart."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}  # init_process_group's own env:// rendezvous
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        int(os.environ["WORLD_SIZE"]),
        is_master=False,
        timeout=TIMEOUT,
    )
    return {
        "store": dist.PrefixStore(f"derl/attempt_{restart_count()}", store),
        "rank": int(os.environ["RANK"]),
        "world_size": int(os.environ["WORLD_SIZE"]),
    }


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def collective(fn: Callable[..., T], *args: Any) -> T:
    """A torch.distributed call; a rank that died on the way is one line, not a traceback."""
    try:
        return fn(*args)
    except (RuntimeError, dist.DistError) as exc:
        raise PeerLost(
            f"another process of this run stopped ({first_line(exc)}); see its error above"
        ) from None


def all_gather(value: T) -> list[T]:
    """`value` of every rank, in rank order (picklable objects)."""
    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    collective(dist.all_gather_object, out, value)
    return out


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    collective(dist.broadcast_object_list, box, 0)
    return box[0]


def all_true(flag: bool) -> bool:
    """Whether `flag` holds on every rank: one decision that every rank takes alike."""
    return all(all_gather(bool(flag)))


def barrier() -> None:
    if world_size() > 1:
        collective(dist.barrier)


def agree(fn: Callable[[], T]) -> T:
    """Run `fn` on every rank; if it raised a DerlError on any rank, raise it on all of them
    (printed by the lowest rank that raised it), so that no rank waits for one that gave up."""
    if world_size() == 1:
        return fn()
    result, error = None, None
    try:
        result = fn()
    except DerlError as exc:
        error = (str(exc), exc.exit_status)
    errors = all_gather(error)
    for origin, found in enumerate(errors):
        if found is not None:
            raise SharedError(*found, origin)
    return result  # type: ignore[return-value]


@torch.no_grad()
def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace every gradient by its mean over the ranks: one all-reduce per dtype and device.

    Called between backward and gradient clipping, as DistributedDataParallel averages them, so
    that clipping sees the gradient of the whole batch. Every rank then takes the same step.

    A parameter without a gradient on some rank (a branch of a user's network that its batch
    did not take) counts as a zero gradient there, as in DistributedDataParallel; one without a
    gradient on every rank keeps none, so that the optimizer skips it everywhere. Every rank
    sends the same layout: a flag per parameter says which ranks had a gradient.
    """
    if world_size() == 1:
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.requires_grad:
            groups.setdefault((p.dtype, p.device), []).append(p)
    for ps in groups.values():
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
        has_grad = [p.grad is not None for p in ps]
        # All present (every update of derl's own networks): a fill on the device, not a copy
        # from the host, which on a GPU would wait for the backward pass queued before it.
        dtype, device = ps[0].dtype, ps[0].device
        if all(has_grad):
            flags = torch.ones(len(ps), dtype=dtype, device=device)
        else:
            flags = torch.tensor(has_grad, dtype=dtype, device=device)
        flat = torch.cat([*(g.reshape(-1) for g in grads), flags])
        collective(dist.all_reduce, flat)
        flat.div_(world_size())
        sizes = [g.numel() for g in grads]
        averaged = flat.split([*sizes, len(ps)])
        torch._foreach_copy_(
            grads, [v.view_as(g) for v, g in zip(averaged[:-1], grads, strict=True)]
        )
        if all(has_grad):
            continue  # every rank had them too, or it sent zeros in their place: nothing to add
        # Reading the flags waits for the all-reduce: only a rank that lacked a gradient does.
        anyone = averaged[-1].tolist()
        for p, g, mine, theirs in zip(ps, grads, has_grad, anyone, strict=True):
            if not mine and theirs > 0:
                p.grad = g


def check_same_parameters(alg: Any) -> None:
    """Refuse to train when the ranks' trained parameters or optimizer states differ (a user
    network initialised from something other than torch's seeded RNG, a damaged checkpoint):
    averaged gradients keep them equal only if they start equal. Noise buffers (noisy nets)
    may differ: each rank explores with its own noise."""
    if world_size() == 1:
        return
    optimizers = [v for v in vars(alg).values() if isinstance(v, torch.optim.Optimizer)]
    trained = [[p for g in o.param_groups for p in g["params"]] for o in optimizers]
    digests = all_gather(_digest([trained, [o.state_dict()["state"] for o in optimizers]]))
    if any(d != digests[0] for d in digests):
        raise UsageError(
            "the model differs between the processes; initialise your network from torch's "
            "RNG only (derl seeds it the same on every process)"
        )


def _digest(obj: Any) -> bytes:
    h = hashlib.sha1()

    def visit(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            h.update(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            for key in sorted(x, key=str):
                visit(x[key])
        elif isinstance(x, (list, tuple)):
            for item in x:
                visit(item)

    visit(obj)
    return h.digest()


# -- running statistics merged across ranks ------------------------------------------------------


def moments(rms) -> tuple[float, np.ndarray, np.ndarray]:
    """(count, sum, sum of squares) of a RunningMeanStd: they add up across ranks."""
    mean, var = np.asarray(rms.mean, np.float64), np.asarray(rms.var, np.float64)
    return float(rms.count), rms.count * mean, rms.count * (var + mean**2)


def set_moments(rms, count: float, total: np.ndarray, squares: np.ndarray) -> None:
    mean = total / count
    rms.mean, rms.var, rms.count = mean, np.maximum(squares / count - mean**2, 0.0), count


class Exchange:
    """What the ranks tell each other between rollouts (see the module's docstring)."""

    def __init__(self, runner: Any):
        self.runner = runner
        self.last = runner.step_count
        # The merged statistics at the last exchange: at step 0 the prior every rank starts
        # from (before the observations of its first reset), else the checkpoint's.
        self.base = self.stats()
        if runner.step_count == 0 and self.base:
            self.base = [
                moments(RunningMeanStd(shape=np.shape(total))) for _, total, _ in self.base
            ]

    def due(self, step: int) -> bool:
        return step - self.last >= SYNC_EVERY

    def stats(self) -> list:
        normalizer = self.normalizer()
        if normalizer is None:
            return []
        return [moments(normalizer.obs_rms), moments(normalizer.return_rms)]

    def normalizer(self):
        """The runner's env if it normalises (derl.env.VecNormalize, recognised by its
        statistics: this module sits below the envs) and its statistics are still learning."""
        env = self.runner.env
        if hasattr(env, "obs_rms") and hasattr(env, "return_rms") and env.training:
            return env
        return None

    def __call__(
        self, step: int, episodes: list, stop: bool, stopped_by: str, checkpoint: bool = False
    ) -> dict:
        """Every rank's episodes (rank 0 logs them), whether any rank stops or asks for a
        checkpoint (its clock: `checkpoint_minutes`), the merged statistics; returns
        {"episodes", "stop", "stopped_by", "checkpoint"}."""
        self.last = step
        storage = getattr(self.runner, "storage", None)
        mine: dict[str, Any] = {
            "episodes": episodes,
            "stop": stop,
            "stopped_by": stopped_by,
            "checkpoint": checkpoint,
            "stats": self.stats(),
            "max_priority": None if storage is None else storage.max_priority,
        }
        everyone = all_gather(mine)
        self.merge_stats([r["stats"] for r in everyone])
        if storage is not None:
            storage.max_priority = max(r["max_priority"] for r in everyone)
        return {
            "episodes": sorted((e for r in everyone for e in r["episodes"]), key=lambda e: e[2]),
            "stop": any(r["stop"] for r in everyone),
            "stopped_by": next((r["stopped_by"] for r in everyone if r["stopped_by"]), ""),
            "checkpoint": any(r["checkpoint"] for r in everyone),
        }

    def merge_stats(self, ranks: list[list]) -> None:
        """base + what every rank added since: the statistics one process would have of all the
        observations and returns of every rank."""
        normalizer = self.normalizer()
        if normalizer is None or not self.base:
            return
        for i, rms in enumerate((normalizer.obs_rms, normalizer.return_rms)):
            count0, total0, squares0 = self.base[i]
            count = count0 + sum(r[i][0] - count0 for r in ranks)
            total = total0 + sum(r[i][1] - total0 for r in ranks)
            squares = squares0 + sum(r[i][2] - squares0 for r in ranks)
            set_moments(rms, count, total, squares)
        self.base = self.stats()


# -- `--nproc N`: torchrun on this machine --------------------------------------------------------


def launch(nproc: int, args: list[str], threads: int = 0) -> int:
    """Start `python -m derl ARGS` as `nproc` processes on this machine through torch's own
    launcher (what `torchrun --standalone --nproc-per-node N -m derl ARGS` does); returns the
    exit status: 0, or the one that says why its processes failed (`failed_status`)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # One torch thread per process unless --threads says otherwise (torchrun's own default,
    # set here so that it does not warn about it).
    os.environ.setdefault("OMP_NUM_THREADS", str(threads or 1))
    parsed = get_args_parser().parse_args(
        [
            "--standalone",
            f"--nproc-per-node={nproc}",
            # Ctrl-C reaches this launcher (the workers run in sessions of their own), which
            # passes SIGINT on: the ranks then stop at the same step with a checkpoint
            # (derl.lifecycle). This is how long it waits for them before killing them.
            "--shutdown-timeout=600",
            "--module",
            "derl",
        ]
    )
    parsed.training_script_args = list(args)  # not parsed again: --nproc would be ambiguous
    try:
        run(parsed)
    except ChildFailedError as exc:
        return failed_status({rank: f.exitcode for rank, f in exc.failures.items()})
    except SignalException as exc:  # Ctrl-C or kill: the ranks have stopped
        return 128 + int(exc.sigval)
    return 0


def failed_status(exitcodes: dict[int, int]) -> int:
    """The exit status of a data-parallel run whose processes failed ({rank: exit code, negative
    for a signal}). torchrun lists every rank that ended, also those that only followed the
    first: it sends the survivors SIGTERM, and a survivor that saw its peer go exits with
    PeerLost's 1. So the status of a rank that did neither says why (4 for a checkpoint that
    could not be written, 137 for the kernel's OOM killer), else rank 0's."""
    followed = {-signal.SIGTERM, PeerLost.exit_status}
    rank = min(exitcodes, key=lambda r: (exitcodes[r] in followed, r))
    code = exitcodes[rank]
    return code if code > 0 else 128 + abs(code)  # killed by a signal: as a shell says it
