"""join_group on a CUDA device, checked without one: torch.cuda.set_device takes only an indexed
device ("cuda:1" or 1), so a bare "cuda" must not reach it (it failed every GPU run once)."""

import torch

import derl
from derl.train import join_group


def test_a_bare_cuda_device_is_not_made_current(monkeypatch):
    made_current = []

    def set_device(device):
        index = torch.device(device).index if not isinstance(device, int) else device
        if index is None:  # what torch.cuda.set_device raises for "cuda"
            raise ValueError(f"Expected a torch.device with a specified index, but got:{device}")
        made_current.append(index)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for name, expected in (("cuda", []), ("cuda:1", [1])):
        made_current.clear()
        config = derl.make_config("ppo", "CartPole-v1", device=name, deterministic=False)
        _, device = join_group(config)
        assert device == torch.device(name) and made_current == expected
