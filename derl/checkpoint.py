"""Checkpoints: written atomically, loaded without executing anything from the file.

A checkpoint is one `torch.save` of plain data: tensors, numbers, strings, bytes and containers.
numpy arrays are stored as tensors and tagged, so `torch.load(weights_only=True)` can read the
whole file; it refuses any pickled object that is not plain data, so a crafted file cannot run code.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from derl.errors import UsageError

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)\.pt$")


def to_plain(obj: Any) -> Any:
    """numpy arrays -> tagged tensors, numpy scalars -> Python numbers, recursively."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


def save(state: dict, path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically: temporary file, fsync, rename, fsync of the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(to_plain(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint; a missing, truncated, corrupt or unsafe file is a one-line UsageError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"refusing to load {path}: not plain data ({first[:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UsageError(
            f"checkpoint {path} is truncated or corrupt "
            f"({type(exc).__name__}); delete it or use an earlier one"
        ) from None
    if not isinstance(state, dict) or "format" not in state:
        raise UsageError(f"{path} is not a derl checkpoint")
    return from_plain(state)


def checkpoint_path(logdir: str | os.PathLike, step: int) -> Path:
    return Path(logdir) / CHECKPOINT_DIR / f"step-{step:012d}.pt"


def list_checkpoints(logdir: str | os.PathLike) -> list[Path]:
    """Checkpoints in `logdir`, oldest first."""
    folder = Path(logdir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def prune(logdir: str | os.PathLike, keep: int) -> None:
    """Keep the newest `keep` checkpoints."""
    for old in list_checkpoints(logdir)[:-keep]:
        old.unlink(missing_ok=True)


def newest_loadable(logdir: str | os.PathLike) -> Iterator[tuple[Path, dict | UsageError]]:
    """(path, state or the error it gave), newest first: resume falls back past bad files."""
    for path in reversed(list_checkpoints(logdir)):
        try:
            yield path, load(path)
        except UsageError as exc:
            yield path, exc
