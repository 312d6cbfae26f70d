"""Schedules are read at the step count where a rollout starts (as CleanRL), not after it."""

import pytest
from conftest import make_alg

import derl


def run_and_record(alg_name, **kw):
    alg, env = make_alg(alg_name, "CartPole-v1", **kw)
    records = [alg.step(batch) for batch in alg.runner]
    env.close()
    return derl.make_config(alg_name, "CartPole-v1", **kw), records


@pytest.mark.parametrize("alg_name", ["ppo", "a2c"])
def test_first_update_uses_the_initial_lr_and_the_last_one_is_above_zero(alg_name):
    config, records = run_and_record(alg_name, num_train_steps=2048, anneal_lr=True)
    assert records[0]["lr"] == config.lr
    assert 0 < records[-1]["lr"] < config.lr


def test_ppo_classic_preset_anneals_the_clip_range_like_rl_zoo():
    config, records = run_and_record("ppo", num_train_steps=1024)
    assert config.anneal_clip_range and not config.clip_value_loss
    rollouts = config.num_epochs  # one minibatch per epoch: num_epochs updates per rollout
    firsts = [r["clip_range"] for r in records[::rollouts]]
    assert firsts == pytest.approx([0.2, 0.15, 0.1, 0.05])
    assert {r["clip_range"] for r in records[:rollouts]} == {0.2}  # constant within a rollout
