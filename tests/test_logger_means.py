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
