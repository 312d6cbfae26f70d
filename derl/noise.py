"""Pink (1/f) Gaussian acting noise, correlated in time: SAC's `--noise-type pink`.

Eberhard et al. 2023, "Pink Noise Is All You Need: Colored Noise Exploration in Deep
Reinforcement Learning" (ICLR, https://openreview.net/forum?id=hQ9V5QN27eS): i.i.d. Gaussian
noise averages out within a few steps, so a policy that must push one way for a hundred steps
(MountainCarContinuous) never finds out that it pays; pink noise drifts for long stretches and
still varies from step to step. It replaces only the N(0, 1) draw of acting; the loss is SAC's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def pink_noise(shape: tuple[int, ...], steps: int, device: torch.device | str = "cpu") -> Tensor:
    """[*shape, steps] sequences of Gaussian noise with power spectrum 1/f, unit variance.

    The spectral method of Timmer & Koenig 1995 (https://adsabs.harvard.edu/full/1995A%26A...300..707T):
    random Fourier coefficients with amplitude f^(-1/2) (power 1/f), transformed back. The lowest
    frequency is 1/steps: the zero frequency gets the scale of the first.
    """
    freqs = torch.fft.rfftfreq(steps, device=device)
    freqs[0] = freqs[1] if steps > 1 else 1.0
    scale = freqs**-0.5
    real = torch.randn(*shape, len(freqs), device=device) * scale
    imag = torch.randn(*shape, len(freqs), device=device) * scale
    # x_t = (X_0 + 2 sum_k Re(X_k e^(2 pi i k t / steps)) + X_nyquist (-1)^t) / steps: the mean
    # and (for even lengths) the Nyquist term of a real signal are real, and each weighs in once.
    imag[..., 0] = 0
    weight = torch.full_like(scale, 4.0)  # Var(2 Re(X_k e^(i theta))) = 4 scale_k^2
    weight[0] = 1.0
    if steps % 2 == 0:
        imag[..., -1] = 0
        real[..., -1] *= math.sqrt(2)  # all of that term's variance goes to its real part
        weight[-1] = 2.0
    std = (weight * scale**2).sum().sqrt() / steps  # of each x_t: made 1 below
    return torch.fft.irfft(torch.complex(real, imag), n=steps) / std


class PinkNoise(nn.Module):
    """One pink noise sequence per env and action dimension, taken a step at a time.

    Blocks of `steps` values are drawn at once (from torch's generator, which checkpoints save);
    the block and the position in it are buffers, so a resumed run continues the same noise. The
    position is also kept as a Python int, so that acting on a GPU never reads it back. Unlike
    the paper's code, a new episode does not start a new block (the policy does not see episode
    ends): it only changes where an episode's noise begins.
    """

    block: Tensor  # buffers
    position: Tensor

    def __init__(self, num_envs: int, action_dim: int, steps: int = 1000):
        super().__init__()
        self.steps = steps
        self.register_buffer("block", torch.zeros(num_envs, action_dim, steps))
        self.register_buffer("position", torch.tensor(steps))  # used up: draw a block first
        self.next_position = steps
        self.register_load_state_dict_post_hook(_read_position)
        # Sequences for batches of another size (a stochastic `derl eval` of one env, say):
        # kept apart, outside the state dict, so that they never disturb training's noise.
        self.others: dict[int, PinkNoise] = {}

    def other_batch(self, batch: int) -> Tensor:
        if batch not in self.others:
            # A plain attribute, not a submodule: `others` holds it, __setattr__ never sees it.
            self.others[batch] = PinkNoise(batch, self.block.shape[1], self.steps).to(
                self.block.device
            )
        return self.others[batch](batch)

    def forward(self, batch: int) -> Tensor:
        """The next [num_envs, action_dim] noise values."""
        if batch != self.block.shape[0]:
            return self.other_batch(batch)
        if self.next_position >= self.steps:
            self.block.copy_(pink_noise(self.block.shape[:2], self.steps, self.block.device))
            self.next_position = 0
        noise = self.block[:, :, self.next_position]
        self.next_position += 1
        self.position.fill_(self.next_position)
        return noise


def _read_position(noise: PinkNoise, incompatible_keys) -> None:
    noise.next_position = int(noise.position)
