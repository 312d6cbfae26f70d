"""Rainbow's Q-network heads: NoisyNet linear layers and the (distributional) dueling head."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def scaled_noise(
    size: int, generator: torch.Generator | None = None, device: torch.device | None = None
) -> Tensor:
    """f(x) = sgn(x) sqrt(|x|) of standard normal draws, NoisyNet's factorised noise."""
    x = torch.randn(size, generator=generator, device=device)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """Linear layer with learned factorised Gaussian noise (Fortunato et al. 2018).

    https://arxiv.org/abs/1706.10295, Section 3.2: w = mu_w + sigma_w * f(eps_out) f(eps_in)^T
    and b = mu_b + sigma_b * f(eps_out). The noise stays fixed until `reset_noise()`; in eval
    mode the layer uses the mean weights mu.
    """

    epsilon_in: Tensor  # buffers: the noise
    epsilon_out: Tensor

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)  # the paper's mu ~ U(-1/sqrt(p), 1/sqrt(p))
        self.weight_mu = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound)
        )
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        # Buffers, so a checkpoint holds the noise and a resumed run acts the same.
        self.register_buffer("epsilon_in", torch.zeros(in_features))
        self.register_buffer("epsilon_out", torch.zeros(out_features))
        self.reset_noise()

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draws new noise: f(eps_in) first, then f(eps_out)."""
        device = self.epsilon_in.device
        self.epsilon_in.copy_(scaled_noise(self.in_features, generator, device))
        self.epsilon_out.copy_(scaled_noise(self.out_features, generator, device))

    @property
    def weight_epsilon(self) -> Tensor:
        """The [out, in] weight noise, an outer product: p + q draws instead of p * q."""
        return torch.outer(self.epsilon_out, self.epsilon_in)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * self.weight_epsilon
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.epsilon_out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def reset_noise(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """New noise for every NoisyLinear in `module` (e.g. once per update in Rainbow)."""
    for layer in module.modules():
        if isinstance(layer, NoisyLinear):
            layer.reset_noise(generator)


class DuelingHead(nn.Module):
    """Q = V + A - mean_a A (Wang et al. 2016, https://arxiv.org/abs/1511.06581), per atom.

    features [..., in] -> Q values [..., actions] for atoms == 1, else logits [..., actions,
    atoms] (Rainbow: softmax over the last dim gives each action's return distribution).
    `hidden` adds a layer of that width (ReLU by default) to each stream, as in both papers;
    `noisy` makes every layer a NoisyLinear. Plain layers keep torch's default init,
    U(-1/sqrt(p), 1/sqrt(p)) weights like NoisyLinear's mu.
    """

    def __init__(
        self,
        in_features: int,
        num_actions: int,
        atoms: int = 1,
        noisy: bool = False,
        hidden: int | None = None,
        sigma0: float = 0.5,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.num_actions, self.atoms = num_actions, atoms
        linear = partial(NoisyLinear, sigma0=sigma0) if noisy else nn.Linear

        def stream(out_features: int) -> nn.Module:
            if hidden is None:
                return linear(in_features, out_features)
            return nn.Sequential(
                linear(in_features, hidden), activation(), linear(hidden, out_features)
            )

        self.value = stream(atoms)
        self.advantage = stream(num_actions * atoms)

    def forward(self, features: Tensor) -> Tensor:
        value = self.value(features).unflatten(-1, (1, self.atoms))
        advantage = self.advantage(features).unflatten(-1, (self.num_actions, self.atoms))
        # Subtracting the mean advantage makes V and A identifiable (Wang et al. 2016, eq. 9).
        q = value + advantage - advantage.mean(dim=-2, keepdim=True)
        return q.squeeze(-1) if self.atoms == 1 else q
