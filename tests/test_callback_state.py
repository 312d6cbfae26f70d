"""A callback's own state (`state_dict` / `load_state_dict`) is saved with each checkpoint and
handed back when `derl.resume` continues the run, so that a patience count or a best return
survives a stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import derl
from derl.callbacks import Callback
from derl.errors import UsageError


class CountRollouts(Callback):
    """Counts rollouts, keeps the steps it saw and a numpy record: state of three kinds."""

    def __init__(self):
        self.rollouts, self.steps, self.record = 0, [], np.zeros(2)

    def on_rollout(self, event):
        self.rollouts += 1
        self.steps.append(event.step)
        self.record += 1

    def state_dict(self):
        return {"rollouts": self.rollouts, "steps": list(self.steps), "record": self.record}

    def load_state_dict(self, state):
        self.rollouts, self.steps, self.record = state["rollouts"], state["steps"], state["record"]


class Stateless(Callback):
    pass


def config(tmp_path, steps=1_024):
    # 8 envs x 32 steps: a rollout every 256 env steps, a checkpoint every 512
    return derl.make_config(
        "ppo", "CartPole-v1", num_train_steps=steps, checkpoint_every=512, logdir=str(tmp_path)
    )


def test_a_resumed_callback_continues_from_its_checkpoint(tmp_path, one_thread):
    straight = CountRollouts()
    derl.train(config(tmp_path / "straight"), progress=False, callbacks=[straight])

    first = CountRollouts()
    derl.train(config(tmp_path / "run"), progress=False, stop_after=512, callbacks=[first])
    assert first.steps == [256, 512]
    resumed = CountRollouts()
    derl.resume(tmp_path / "run", progress=False, callbacks=[resumed])
    # between rollouts: the last one ends training (on_training_end) instead
    assert resumed.rollouts == straight.rollouts == 3
    assert resumed.steps == straight.steps == [256, 512, 768]
    np.testing.assert_array_equal(resumed.record, straight.record)
    assert isinstance(resumed.record, np.ndarray)  # stored as a tagged tensor, read back as numpy


def test_callbacks_in_another_order_drop_the_state_with_a_warning(tmp_path, one_thread, capsys):
    derl.train(config(tmp_path), progress=False, stop_after=512, callbacks=[CountRollouts()])
    moved = CountRollouts()
    derl.resume(tmp_path, progress=False, callbacks=[Stateless(), moved])
    err = capsys.readouterr().err
    assert "callback 0, a CountRollouts, but callback 0 is a Stateless" in err
    assert moved.steps == [768]  # started afresh, as the line says


def test_a_state_a_checkpoint_cannot_hold_is_one_clear_error(tmp_path, one_thread):
    class HoldsAnObject(Callback):
        def state_dict(self):
            return {"best": [1.0, object()]}

    with pytest.raises(UsageError, match=r"HoldsAnObject.state_dict\(\)\['best'\]\[1\]: a object"):
        derl.train(config(tmp_path), progress=False, callbacks=[HoldsAnObject()])


def test_checkpoints_without_callback_states_still_resume(tmp_path, one_thread):
    """Checkpoints written before callbacks had state hold no "callbacks" key."""
    derl.train(config(tmp_path), progress=False, stop_after=512)
    newest = sorted((tmp_path / "checkpoints").glob("step-*.pt"))[-1]
    state = torch.load(newest, weights_only=True)
    del state["callbacks"]
    torch.save(state, newest)
    counter = CountRollouts()
    derl.resume(tmp_path, progress=False, callbacks=[counter])
    assert counter.steps == [768]
