"""Return maths, in one place: GAE, n-step returns and C51's projected return distribution.

Runners and algorithms import these; nothing here knows about either. (`derl/buffer.py` keeps its
own Monte-Carlo `discounted_returns`: it is a single file users copy into their projects.)
"""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    last_value: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    final_values: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalized advantage estimates (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    Shapes [T, N] (`last_value` [N]). A terminated step has no future. A truncated step (time limit)
    bootstraps from `final_values`, the value of its real last observation, and then the
    recursion stops, because the next observation belongs to a new episode.
    """
    next_values = torch.cat([values[1:], last_value[None]])
    next_values = torch.where(truncated.bool(), final_values, next_values) * (1 - terminated)
    deltas = rewards + gamma * next_values - values
    continues = 1 - torch.maximum(terminated, truncated)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages


def nstep_returns(
    rewards: Tensor, terminated: Tensor, truncated: Tensor, gamma: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Discounted sums of [B, n] reward windows, cut after the first step that ends an episode.

    Returns (returns, bootstrap_discount, steps), each [B]. The target of a window starting at t
    is returns + bootstrap_discount * V(obs[t + steps]). A window that runs out of steps or ends
    in a truncation bootstraps with gamma^steps (after a truncation obs[t + steps] is the real
    final observation); one that ends in a termination has discount 0. Entries after the first
    end may hold anything (the next episode, NaN): they are ignored.
    """
    n = rewards.shape[1]
    if n == 1:  # the same values, in fewer ops (1-step DQN and SAC sample this every update)
        steps = torch.ones(len(rewards), dtype=torch.long, device=rewards.device)
        return rewards[:, 0], gamma * (~terminated[:, 0].bool()).to(rewards.dtype), steps
    ends = terminated.bool() | truncated.bool()
    ended_before = (ends.int().cumsum(dim=1) - ends.int()) > 0  # an earlier step ended it
    inside = ~ended_before
    steps = inside.sum(dim=1)
    powers = gamma ** torch.arange(n + 1, dtype=rewards.dtype, device=rewards.device)
    returns = (torch.where(inside, rewards, 0.0) * powers[:n]).sum(dim=1)
    ends_terminal = terminated.bool().gather(1, (steps - 1)[:, None]).squeeze(1)
    bootstrap_discount = torch.where(ends_terminal, 0.0, powers[steps])
    return returns, bootstrap_discount, steps


def categorical_projection(
    next_probs: Tensor, returns: Tensor, discounts: Tensor, support: Tensor
) -> Tensor:
    """C51's target: the distribution of returns + discounts * Z' projected onto `support`.

    Algorithm 1 of Bellemare et al. 2017 (https://arxiv.org/abs/1707.06887): atom z_j of the next
    distribution moves to Tz_j = r + discount * z_j, clamped to [v_min, v_max], and its probability
    is split between the two nearest atoms in proportion to closeness. Shapes: next_probs
    [B, atoms], returns and discounts [B] (discount 0: all mass at r), `support` [atoms] evenly
    spaced. Each row keeps its total mass.
    """
    atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (atoms - 1)
    tz = (returns[:, None] + discounts[:, None] * support).clamp(v_min, v_max)
    b = ((tz - v_min) / delta).clamp(0, atoms - 1)  # rounding can push b past the last atom
    # Neighbours lower and lower + 1, with lower <= atoms - 2. The paper's floor/ceil gives
    # l == u when b hits an atom exactly, and both weights (u - b, b - l) are 0, losing the mass;
    # here an exact hit gets weight 1 on `lower` (or on lower + 1 for b = atoms - 1).
    lower = b.floor().clamp(max=atoms - 2)
    upper_weight = b - lower
    lower = lower.long()
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(1, lower, next_probs * (1 - upper_weight))
    projected.scatter_add_(1, lower + 1, next_probs * upper_weight)
    return projected
