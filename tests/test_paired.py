"""benchmarks/paired.py: the round-by-round ratio of the speed benchmarks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from paired import paired_ratio  # noqa: E402


def test_the_paired_ratio_is_the_median_of_each_rounds_ratio():
    # The fastest run of each library came from rounds on different VM speeds: their ratio
    # (100 / 80 = 1.25) is not what two of the three rounds measured (1.5 each).
    derl, sb3 = [90.0, 60.0, 100.0], [60.0, 40.0, 80.0]
    assert paired_ratio(derl, sb3) == 1.5


def test_rounds_where_either_failed_are_left_out():
    assert paired_ratio([90.0, None, 100.0], [60.0, 40.0, None]) == 1.5
    assert paired_ratio([None], [40.0]) is None
