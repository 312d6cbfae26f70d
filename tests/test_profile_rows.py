"""benchmarks/profile_rows.py splits a run's time into parts that exist and do not overlap."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import profile_rows  # noqa: E402

import derl  # noqa: E402


@pytest.mark.parametrize(
    ("alg", "env_id", "overrides", "present", "absent"),
    [
        ("dqn", "CartPole-v1", dict(learning_starts=200), "replay", "GAE"),
        ("ppo", "CartPole-v1", dict(num_envs=2, num_runner_steps=64), "GAE", "replay"),
    ],
)
def test_profile_parts_are_found_and_sum_within_the_run(
    monkeypatch, one_thread, alg, env_id, overrides, present, absent
):
    def small_config(row, logdir, device="cpu"):
        return derl.make_config(
            alg, env_id, seed=0, num_train_steps=1_024, logdir=logdir, eval_every=0, **overrides
        )

    monkeypatch.setattr(profile_rows, "config_of", small_config)
    parts = profile_rows.profile("any")
    for part in ("env step", "acting", "update", present):
        assert parts[part] > 0, (part, parts)
    assert parts[absent] == 0, parts
    assert 0 <= parts["rest"] < parts["total s"], parts
