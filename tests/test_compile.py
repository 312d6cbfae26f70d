"""--compile: torch.compile for the update and acting (derl.compile)."""

import pytest
import torch

import derl
from derl.cli import main
from derl.evaluate import evaluate


def compiled_run(tmp_path, capsys, alg: str, env_id: str, steps: int):
    logdir = tmp_path / alg
    argv = [alg, "--env-id", env_id, "--compile", "--num-train-steps", str(steps)]
    assert main([*argv, "--threads", "1", "--logdir", str(logdir)]) == 0
    return logdir, capsys.readouterr().err


def test_ppo_compiles_trains_and_reports_the_compile_time(tmp_path, capsys, one_thread):
    from torch._dynamo.utils import counters

    counters.clear()
    logdir, err = compiled_run(tmp_path, capsys, "ppo", "CartPole-v1", 2048)
    assert "compiled the loss in" in err
    # The preset anneals the clip range: a graph input, not a constant compiled again for
    # each of the 8 rollouts' values.
    assert derl.make_config("ppo", "CartPole-v1").anneal_clip_range
    assert counters["stats"]["unique_graphs"] == 1
    assert "compiled acting in" not in err  # on the CPU acting stays eager (derl.compile)
    agent = derl.load(logdir)  # an eager agent: the state dict has the usual names
    assert agent.config.compile
    assert not any("_orig_mod" in key for key in agent.policy.state_dict())
    assert len(evaluate(agent, num_episodes=2)) == 2


def test_a_compiler_failure_runs_eagerly_with_one_line(tmp_path, capsys, monkeypatch, one_thread):
    """A bug of torch's compiler (seen on CUDA with torch 2.11) does not end the run: the part
    it failed on runs eagerly, and stderr says so once."""
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            raise BackendCompilerFailed(None, RuntimeError("inductor lost a storage"), None)

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    logdir, err = compiled_run(tmp_path, capsys, "ppo", "CartPole-v1", 1024)
    assert err.count("derl: --compile failed for the loss") == 1
    assert "(RuntimeError: inductor lost a storage); it runs eagerly" in err
    assert derl.load(logdir).config.compile


def test_compiled_loss_matches_the_eager_loss(one_thread):
    """Same parameters, same batch: the compiled loss and its gradients equal the eager ones
    up to float rounding (inductor fuses and reorders the arithmetic)."""
    from conftest import make_alg

    alg, env = make_alg("ppo", "CartPole-v1")
    batch = next(iter(alg.runner))
    eager = alg.loss(batch)
    eager.loss.backward()
    grads = [p.grad.clone() for p in alg.params]
    alg.optimizer.zero_grad()
    out = torch.compile(alg.loss)(batch)
    out.loss.backward()
    torch.testing.assert_close(out.loss, eager.loss, rtol=1e-5, atol=1e-6)
    for p, g in zip(alg.params, grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "alg, env_id",
    [
        ("a2c", "CartPole-v1"),
        ("dqn", "CartPole-v1"),
        ("sac", "Pendulum-v1"),
        ("td3", "Pendulum-v1"),
    ],
)
def test_every_algorithm_compiles(alg, env_id, tmp_path, capsys, one_thread):
    logdir, err = compiled_run(tmp_path, capsys, alg, env_id, 1500)
    assert "Traceback" not in err
    assert len(evaluate(derl.load(logdir), num_episodes=1)) == 1


def test_cuda_graph_outputs_are_copied_before_the_next_replay_reuses_them():
    """With mode="reduce-overhead" (CUDA), a replay writes its outputs where the last one's
    were; what the runner and the logger keep must be copies. Checked here on the copying
    itself: nothing of a loss output aliases the graph's, and the loss still backpropagates."""
    from derl.compile import owned
    from derl.types import LossOutput

    w = torch.ones(3, requires_grad=True)
    out = LossOutput((w * 2).sum(), {"q": w.detach()[0], "lr": 0.1}, td_errors=w.detach() + 1)
    mine = owned(out)
    assert mine.loss.data_ptr() != out.loss.data_ptr()
    assert mine.metrics["q"].data_ptr() != out.metrics["q"].data_ptr()
    assert mine.td_errors.data_ptr() != out.td_errors.data_ptr() and mine.metrics["lr"] == 0.1
    mine.loss.backward()
    assert torch.equal(w.grad, torch.full((3,), 2.0))
    acted = {"actions": torch.zeros(2), "values": torch.ones(2)}
    assert all(owned(acted)[k].data_ptr() != v.data_ptr() for k, v in acted.items())
