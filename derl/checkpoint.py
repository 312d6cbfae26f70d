"""Checkpoints: written atomically, loaded without executing anything from the file.

A checkpoint is one `torch.save` of plain data: tensors, numbers, strings, bytes and containers.
numpy arrays are stored as tensors and tagged, so `torch.load(weights_only=True)` can read the
whole file; it refuses any pickled object that is not plain data, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from derl.errors import UsageError, WriteError

# Of the checkpoints this derl writes; it reads this one and older ones. 2 (2026-12-06): numpy
# scalars are kept as numpy scalars (tagged 0-d tensors); format 1 stored them as Python numbers.
FORMAT = 2
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)\.pt$")
_ZIP = b"PK\x03\x04"  # torch.save writes a zip archive


class NewerFormat(UsageError):
    """A checkpoint written by a newer derl: never replaced by one from an older checkpoint."""


def to_plain(obj: Any) -> Any:
    """numpy arrays and numeric scalars -> tagged tensors, recursively. A scalar stays a numpy
    scalar when loaded: an env's np.float32 counter read back as a Python float would compute in
    float64 after a resume."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        try:
            return {"__npscalar__": torch.from_numpy(np.array(obj))}
        except TypeError:  # strings, and dtypes torch lacks (longdouble): as Python values
            return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


SCALARS = (bool, int, float, complex, str, bytes, type(None))


def not_plain(obj: Any, where: str) -> str | None:
    """Where in `obj` (a path such as `where["best"][0]`) lies something a checkpoint cannot
    hold, with its type; None: all of it is plain data. torch.load(weights_only=True) would
    refuse the file only when it is read back, long after the run that wrote it. Exact builtin
    types only (a namedtuple or an IntEnum is pickled as its class, which weights_only
    refuses); numeric numpy values (torch cannot hold object or string arrays); dict keys as
    they are (to_plain converts values, not keys)."""
    if type(obj) in SCALARS or isinstance(obj, torch.Tensor):
        return None
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc":
        return None
    if isinstance(obj, np.generic) and obj.dtype.kind in "biufcSU":  # saved as .item()
        return None
    if type(obj) is dict:
        for key, value in obj.items():
            if type(key) not in SCALARS:
                return f"{where}: a key of type {type(key).__qualname__}"
            if found := not_plain(value, f"{where}[{key!r}]"):
                return found
        return None
    if type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            if found := not_plain(value, f"{where}[{i}]"):
                return found
        return None
    return f"{where}: a {type(obj).__qualname__}"


def from_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        if set(obj) == {"__npscalar__"}:
            return obj["__npscalar__"].numpy()[()]
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


class _Remembering:
    """The file torch.save writes to, remembering why a write failed: torch reports a disk that
    filled up mid-checkpoint as a RuntimeError about zip offsets, without the OSError."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def save(state: dict, path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically: temporary file, fsync, rename, fsync of the directory.

    A write that fails (disk full, permission denied) is a WriteError; it leaves no temporary
    file, and the file at `path`, if there was one, as it was.
    """
    path = Path(path)
    plain = to_plain(state)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        # mkstemp makes it 0600: give it the mode any new file gets, so that others who may
        # read the logdir (a shared cluster) can `derl eval` it too
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            out = _Remembering(f)
            try:
                # torch.save writes to any object with write and flush; its stub wants IO[bytes].
                torch.save(plain, out)  # type: ignore[arg-type]
            except RuntimeError:
                if out.error is None:
                    raise
                raise out.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:  # any failure, Ctrl-C included
            Path(tmp).unlink(missing_ok=True)
    return path


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, with its suffix, that replaces `path` when the block ends
    well: a write that fails (disk full, no permission) leaves no temporary file and the file
    that was at `path` as it was. Failures are one-line UsageErrors (for videos and plots)."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()  # a directory that takes no file fails here, before a writer opens it
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint; a missing, truncated, corrupt, unsafe or newer file is a one-line
    UsageError."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_ZIP))
    except FileNotFoundError:
        raise UsageError(f"no checkpoint at {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic != _ZIP:  # a text file, an image, an empty file: torch's error would be misleading
        raise UsageError(f"{path} is not a derl checkpoint (not a file torch.save wrote)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"refusing to load {path}: not plain data ({first[:200]})") from None
    except Exception as exc:  # noqa: BLE001 (a damaged pickle: RuntimeError, KeyError, assert...)
        raise corrupt(path, exc) from None
    if not (isinstance(state, dict) and type(state.get("format")) is int):
        raise UsageError(f"{path} is not a derl checkpoint")
    if state["format"] > FORMAT:
        raise NewerFormat(
            f"{path} was written by a newer derl (checkpoint format {state['format']}; this one "
            f"reads up to {FORMAT}); upgrade derl to load it"
        )
    try:
        return from_plain(state)
    except Exception as exc:  # noqa: BLE001 (plain data of the wrong shape)
        raise corrupt(path, exc) from None


def corrupt(path: str | os.PathLike, exc: BaseException) -> UsageError:
    """A file that torch reads only in part: a flipped byte can raise nearly anything there, and
    resume must fall back past it to an earlier checkpoint."""
    return UsageError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__})")


def checkpoint_path(logdir: str | os.PathLike, step: int) -> Path:
    return Path(logdir) / CHECKPOINT_DIR / f"step-{step:012d}.pt"


def rank_path(path: str | os.PathLike, rank: int) -> Path:
    """The part of checkpoint `path` that rank `rank` > 0 of a data-parallel run writes: its
    envs, replay and RNG (derl.distributed)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}.pt")


def list_checkpoints(logdir: str | os.PathLike) -> list[Path]:
    """Checkpoints in `logdir`, oldest first."""
    folder = Path(logdir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def remove_temporary(logdir: str | os.PathLike) -> None:
    """Delete the temporary files of writes that a kill cut short (a SIGKILL leaves no chance to
    clean up): called under the logdir's lock, when a run resumes, so no write is under way."""
    for folder in (Path(logdir), Path(logdir) / CHECKPOINT_DIR):
        for tmp in folder.glob(".tmp-*.pt"):
            tmp.unlink(missing_ok=True)


def prune(logdir: str | os.PathLike, keep: int) -> None:
    """Keep the newest `keep` checkpoints, with their ranks' parts (and drop parts that a
    killed data-parallel run wrote for a checkpoint it never completed)."""
    found = list_checkpoints(logdir)
    for old in found[:-keep]:
        old.unlink(missing_ok=True)
    if not found:
        return
    kept = {p.stem for p in found[-keep:]}
    for part in (Path(logdir) / CHECKPOINT_DIR).glob("step-*.rank*.pt"):
        stem = part.name.split(".")[0]
        if stem not in kept and stem < found[-1].stem:
            part.unlink(missing_ok=True)


def newest_good(logdir: str | os.PathLike) -> tuple[Path | None, dict | None, list[UsageError]]:
    """(path, state) of the newest checkpoint that loads, (None, None) when none does, and the
    errors of the newer ones skipped. A checkpoint of a newer derl is raised: an older one would
    be used, and then overwritten."""
    skipped: list[UsageError] = []
    for path, state in newest_loadable(logdir):
        if isinstance(state, NewerFormat):
            raise state
        if isinstance(state, UsageError):
            skipped.append(state)
            continue
        return path, state, skipped
    return None, None, skipped


def newest_loadable(logdir: str | os.PathLike) -> Iterator[tuple[Path, dict | UsageError]]:
    """(path, state or the error it gave), newest first: resume falls back past bad files."""
    for path in reversed(list_checkpoints(logdir)):
        try:
            yield path, load(path)
        except UsageError as exc:
            yield path, exc


def read_json(path: Path) -> Any:
    """A JSON file a run wrote (config.json); unreadable or damaged is a one-line UsageError."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not JSON, not UTF-8
        raise UsageError(f"{path} is damaged: {exc}") from None
