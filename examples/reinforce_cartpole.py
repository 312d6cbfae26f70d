"""REINFORCE on CartPole-v1 with nothing but derl's stand-alone buffer.py, torch and a DataLoader.

    python examples/reinforce_cartpole.py --seed 0 --plot   # --plot: a window, or buffer_stats.png

Collect a few episodes with the buffer-wrapped env, read (s, a, g) for every step through a
DataLoader, take one policy-gradient step on the return-weighted log-likelihood, clear the buffer
(REINFORCE is on-policy) and repeat until the mean return of the last 100 episodes reaches 475.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from derl import buffer as bf  # or `import buffer as bf` with derl/buffer.py copied next to you


class Policy(nn.Module):
    """A categorical policy; calling it on an observation samples an action."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, num_actions),
        )

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.net(obs))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).sample()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes-per-update", type=int, default=8)
    parser.add_argument("--discount", type=float, default=0.99)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--target", type=float, default=475.0, help="mean return of 100 episodes")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--plot", action="store_true", help="live plot of returns and lengths")
    parser.add_argument("--plot-path", default="buffer_stats.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Trains until the target (or `--max-steps`); returns steps, seconds and the mean return."""
    args = parse_args(argv)
    torch.set_num_threads(1)  # a 64-unit MLP run one step at a time: threads only add overhead
    torch.manual_seed(args.seed)
    env, replay_buffer = bf.wrap(
        gym.make("CartPole-v1"),
        plot=args.plot,
        plot_blocksize=args.episodes_per_update,
        plot_path=args.plot_path,
    )
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g", discount=args.discount))
    dataset = bf.ReplayBufferDataset(replay_buffer, fields=("s", "a"), info_keys=["g"])
    policy = Policy(env.observation_space.shape[0], env.action_space.n)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)

    returns, start, solved = replay_buffer.episode_returns, time.perf_counter(), False
    while not solved and replay_buffer.num_steps < args.max_steps:
        for _ in range(args.episodes_per_update):
            bf.episode(env, policy)
        for batch in DataLoader(dataset, batch_size=10_000):  # the whole buffer, usually one batch
            # Returns normalised within the batch: a baseline that also keeps step sizes steady.
            weights = (batch.g - batch.g.mean()) / (batch.g.std() + 1e-8)
            loss = -(policy.distribution(batch.s).log_prob(batch.a) * weights).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        replay_buffer.clear()  # on-policy: the next update needs fresh episodes
        mean_return = float(np.mean(returns[-100:]))
        solved = len(returns) >= 100 and mean_return >= args.target
        if len(returns) % 80 == 0:
            print(
                f"episodes {len(returns):5d}  steps {replay_buffer.num_steps:7d}  "
                f"mean return (last 100) {mean_return:6.1f}"
            )
    env.close()
    result = {
        "solved": solved,
        "steps": replay_buffer.num_steps,
        "episodes": len(returns),
        "seconds": time.perf_counter() - start,
        "mean_return": mean_return,
    }
    print(
        f"{'solved' if solved else 'not solved'}: mean return "
        f"{mean_return:.1f} over the last 100 episodes after {result['episodes']} episodes, "
        f"{result['steps']} steps, {result['seconds']:.1f} s"
    )
    return result


if __name__ == "__main__":
    raise SystemExit(0 if main()["solved"] else 1)
