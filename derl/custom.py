"""Users' own functions by name: a network (`--model module:function`) or an env factory
(`derl.train(config, env_fn=...)`) is recorded in config.json as `module:qualname`, so that
`derl resume` and `derl.load` can import it again in another process."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from derl.errors import DerlError, UsageError

# Recorded for a function that cannot be imported by name (a lambda, a local function, one
# defined in __main__): resuming or loading the run then needs it passed in again.
UNIMPORTABLE = "<not importable>"


def function_name(fn: Callable) -> str:
    """`module:qualname` of `fn` when importing that gives `fn` back, else UNIMPORTABLE."""
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    if module == "__main__" or "<" in qualname:
        return f"{UNIMPORTABLE} {module}:{qualname}"
    try:
        found = import_function(f"{module}:{qualname}", "it")
    except UsageError:
        return f"{UNIMPORTABLE} {module}:{qualname}"
    return f"{module}:{qualname}" if found is fn else f"{UNIMPORTABLE} {module}:{qualname}"


def import_function(name: str, flag: str) -> Callable:
    """The function named `module:qualname`, or a UsageError saying what is wrong with `flag`."""
    if name.startswith(UNIMPORTABLE):
        raise UsageError(
            f"{flag} was {name[len(UNIMPORTABLE) :].strip()}, a function that cannot be imported "
            "by name; pass it again from Python (derl.resume / derl.load take the same keyword)"
        )
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname:
        raise UsageError(f"{flag} must be module:function, got {name!r}")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"{flag} {name}: cannot import module {module_name!r} ({exc}); make it importable "
            "(PYTHONPATH, pip install) or pass the function from Python"
        ) from None
    found: Any = obj
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise UsageError(f"{flag} {name}: module {module_name!r} has no {qualname!r}")
    if not callable(found):
        raise UsageError(f"{flag} {name} is not a function")
    return found


def one_line(exc: BaseException) -> str:
    """`Type: message` of an exception, its lines joined: torch's messages often span several,
    and derl's errors are one line."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def takes(fn: Callable, *args, **kwargs) -> bool:
    """Whether `fn`'s signature takes these arguments (True where it has none to read)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C functions have none: calling will tell
        return True
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def call_user_function(
    fn: Callable, label: str, args: tuple, parameters: str, kwargs: dict | None = None
) -> Any:
    """`fn(*args, **kwargs)` for a function of the user's, named `label` in errors: a signature
    that cannot take them (checked before the call, so that a TypeError raised inside `fn` is not
    taken for one), or an exception raised inside `fn`, is one UsageError saying so.
    `parameters`: the signature derl calls it with, e.g. "(observation_space, action_space,
    config)"."""
    kwargs = kwargs or {}
    if not takes(fn, *args, **kwargs):
        raise UsageError(
            f"{label} must take {parameters}, but its signature is {inspect.signature(fn)}; "
            f"define it as def {getattr(fn, '__name__', 'fn')}{parameters}"
        )
    try:
        return fn(*args, **kwargs)
    except DerlError:  # already says what is wrong, in one line
        raise
    except Exception as exc:
        # The cause stays chained: from Python, the traceback shows where in `fn` it failed.
        raise UsageError(
            f"{label} raised {one_line(exc)} when derl called it with {parameters}; fix it "
            "(calling it yourself with those arguments shows the traceback)"
        ) from exc
