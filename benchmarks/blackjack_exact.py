"""Exact expected return of trained Blackjack-v1 agents, instead of a sample of episodes.

Blackjack-v1 (gymnasium's defaults: natural=False, sab=False) draws every card from an infinite
deck (1-9 with probability 1/13 each, 10 with 4/13), so the expected return of a deterministic
policy follows by recursion over the hands: the player's raw sum and whether it holds an ace,
against the distribution of the dealer's final score (the dealer draws to 17, a soft 17 stands).
The optimum is the same recursion with the better action at every hand. A hand's outcome has a
std near 0.95, so 10 sampled episodes say next to nothing, and 20,000 still leave +-0.007.

Usage: python benchmarks/blackjack_exact.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from functools import cache

import derl

CARDS = {card: (4 if card == 10 else 1) / 13 for card in range(1, 11)}
Policy = Callable[[tuple[int, int, int]], int]  # (player sum, dealer's card, usable ace) -> hit?


def total(raw: int, ace: bool) -> int:
    """A hand's score: an ace counts 11 where that does not bust it."""
    return raw + 10 if ace and raw + 10 <= 21 else raw


@cache
def dealer_scores(raw: int, ace: bool) -> dict[int, float]:
    """Distribution of the dealer's final score from this hand (0: bust), drawing to 17."""
    score = total(raw, ace)
    if score >= 17:
        return {score if score <= 21 else 0: 1.0}
    out: dict[int, float] = defaultdict(float)
    for card, p in CARDS.items():
        for final, q in dealer_scores(raw + card, ace or card == 1).items():
            out[final] += p * q
    return out


@cache
def dealer_from(showing: int) -> dict[int, float]:
    """The dealer's final score given its face-up card, over its hidden one."""
    out: dict[int, float] = defaultdict(float)
    for hidden, p in CARDS.items():
        for final, q in dealer_scores(showing + hidden, showing == 1 or hidden == 1).items():
            out[final] += p * q
    return out


def expected_return(policy: Policy | None) -> float:
    """The expected return of `policy` (None: the best policy) from a new deal."""

    @cache
    def value(raw: int, ace: bool, showing: int) -> float:
        score = total(raw, ace)
        if score > 21:
            return -1.0
        stick = sum(p * ((score > s) - (score < s)) for s, p in dealer_from(showing).items())
        if policy is not None and not policy((score, showing, int(score != raw))):
            return stick
        hit = sum(p * value(raw + c, ace or c == 1, showing) for c, p in CARDS.items())
        return hit if policy is not None else max(hit, stick)

    return sum(
        p1 * p2 * pd * value(c1 + c2, c1 == 1 or c2 == 1, showing)
        for c1, p1 in CARDS.items()
        for c2, p2 in CARDS.items()
        for showing, pd in CARDS.items()
    )


def main(runs: list[str]) -> None:
    print(f"Blackjack-v1 optimum: {expected_return(None):.4f}")
    for run in runs:
        act = derl.load(run).act
        print(f"{run}: {expected_return(lambda obs, act=act: int(act(obs))):.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
