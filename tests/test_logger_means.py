"""The logger's means of pending metrics: floats and tensors, read with one sync."""

import math
import random

import numpy as np
import torch

from derl.logger import _means
from derl.snapshot import rng_state, set_rng_state


def test_means_of_floats_and_tensors_keep_their_order_and_values():
    pending = {
        "loss": [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)],
        "lr": [0.1, 0.3],
        "q": [torch.tensor(0.1, dtype=torch.float32)] * 3,
    }
    means = _means(pending)
    assert list(means) == ["loss", "lr", "q"]
    assert means["loss"] == 7 / 3 and math.isclose(means["lr"], 0.2)
    # float64 as before: the mean of the float32 values, not of their float64 rounding
    assert means["q"] == torch.stack([v.double() for v in pending["q"]]).mean().item()
    assert all(isinstance(v, float) for v in means.values())


def test_an_older_checkpoints_rng_with_a_list_of_gpu_states_restores_anywhere():
    state = rng_state()
    expected = (random.random(), np.random.random(), torch.rand(1))
    set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 0})
    set_rng_state({**state, "cuda": []})
    set_rng_state(state)
    assert (random.random(), np.random.random()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_the_first_sps_point_counts_from_the_start_of_training(monkeypatch):
    """The Logger is built before the envs, the model and a checkpoint's restore; its first
    `time/sps` point must not count that setup (a fake clock: 100 s of setup, then 1,000 steps
    in 1 s)."""
    import derl.logger

    now = [0.0]
    monkeypatch.setattr(derl.logger.time, "perf_counter", lambda: now[0])
    logger = derl.logger.Logger(None, 10_000, progress=False, write_every=1)
    written = {}
    monkeypatch.setattr(logger, "scalar", lambda tag, value, step: written.setdefault(tag, value))
    now[0] = 100.0  # setup
    logger.start_clock()
    now[0] = 101.0
    logger.record({"loss": 1.0}, 1_000)
    logger.flush(write=True)
    assert written["time/sps"] == 1_000


def test_training_starts_the_clock_after_setup(tmp_path, monkeypatch, one_thread):
    import derl
    from derl.logger import Logger

    started = []
    monkeypatch.setattr(Logger, "start_clock", lambda self: started.append(self.step))
    config = derl.make_config("ppo", "CartPole-v1", num_train_steps=256, logdir=str(tmp_path))
    derl.train(config, progress=False)
    assert started == [0]
