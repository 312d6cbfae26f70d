"""Run a timed benchmark function in a fresh Python process ("spawn").

Neither library then inherits the other's torch state: its worker threads, the flush-denormal
flag that derl sets, warm caches. `fn` must be a module-level function; it runs after
`torch.set_num_threads(threads)` and its return value comes back.
"""

from __future__ import annotations

import multiprocessing


def _child(fn, args: tuple, threads: int, queue) -> None:
    import torch

    torch.set_num_threads(threads)
    queue.put(fn(*args))


def isolated(fn, *args, threads: int):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(fn, args, threads, queue))
    process.start()
    while True:  # a child that dies (an exception, a crash) puts nothing: do not wait forever
        try:
            result = queue.get(timeout=1)
            break
        except Exception:  # queue.Empty
            if not process.is_alive():
                msg = f"{fn.__name__}{args} died: exit code {process.exitcode}"
                raise RuntimeError(msg) from None
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{fn.__name__}{args} failed with exit code {process.exitcode}")
    return result
