"""Ratios of derl's speed to SB3's that a noisy VM moves less: round by round.

A benchmark with `--repeats N` runs derl and SB3 in rounds, back to back. The table's derl/SB3
takes the fastest run of each library; the paired ratio takes the median of each round's own
ratio, whose two runs follow each other, so that a slow spell of the VM (SB3's CartPole runs
swung from 15.7 to 19.1 s within an hour on 2026-12-08) hits both sides of a ratio.
"""

from __future__ import annotations

import statistics

PAIRED_NOTE = (
    "\nderl/SB3: the fastest run of each; paired: the median over rounds of one round's ratio "
    "(derl's and SB3's runs of a round follow each other, so a slow spell of the VM hits both)"
)


def paired_ratio(derl: list[float | None], sb3: list[float | None]) -> float | None:
    """The median of the rounds' derl/SB3 ratios (rounds where both ran)."""
    ratios = [d / b for d, b in zip(derl, sb3, strict=True) if d is not None and b is not None]
    return statistics.median(ratios) if ratios else None
