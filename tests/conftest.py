"""Helpers the test files share."""

import os

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import derl
from derl.factory import get_alg


def make_alg(alg_name: str, env_id: str, **overrides):
    """The algorithm `derl <alg_name> --env-id env_id` builds, on the CPU, seeded, without
    `derl.train` around it (no logdir, no checkpoints): (alg, env), close the env after."""
    config = derl.make_config(alg_name, env_id, **{"device": "cpu", **overrides})
    torch.manual_seed(config.seed)
    env = derl.env.make(config.env_id, config.num_envs, config.seed)
    return get_alg(alg_name).make(config, env, torch.device("cpu")), env


def assert_same(a, b, path="state"):
    """Nested dicts, lists, tensors, arrays and numbers are equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, (torch.Tensor, np.ndarray)):
        assert np.array_equal(np.asarray(a), np.asarray(b)), path
    else:
        assert a == b, path


def pytest_configure(config):
    """One torch thread per pytest-xdist worker (`make test` runs one worker per core).

    Two 2-thread processes on 2 cores ran 4 threads on 2 cores, which slows small-MLP updates
    several times over; OMP_NUM_THREADS carries it to the `derl` processes that tests start.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def scalars(logdir) -> dict:
    """TensorBoard scalars of a run: {tag: [events]}."""
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.fixture
def one_thread():
    """Small MLPs gain little from a second thread, and lose 4x when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
