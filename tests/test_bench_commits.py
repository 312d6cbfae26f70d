"""benchmarks/bench_commits.py: derl against derl at two checkouts."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_commits  # noqa: E402


def test_times_one_run_at_both_checkouts(capsys):
    bench_commits.main(
        [str(REPO), str(REPO), "--run", "ppo", "CartPole-v1", "256", "--rounds", "1"]
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ppo")]
    assert len(rows) == 1
    old, new, ratio = (float(cell) for cell in rows[0].strip("| ").split(" | ")[2:])
    assert (
        old > 0 and new > 0 and ratio == pytest.approx(old / new, abs=0.03)
    )  # times printed to 0.01 s


def test_refuses_a_directory_that_is_not_a_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_commits.main([str(tmp_path), str(REPO)])
    assert exit_info.value.code == 2
    assert "is not a derl checkout" in capsys.readouterr().err
