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
    logdir, err = compiled_run(tmp_path, capsys, "ppo", "CartPole-v1", 2048)
    assert "compiled the loss in" in err
    assert "compiled acting in" not in err  # on the CPU acting stays eager (derl.compile)
    agent = derl.load(logdir)  # an eager agent: the state dict has the usual names
    assert agent.config.compile
    assert not any("_orig_mod" in key for key in agent.policy.state_dict())
    assert len(evaluate(agent, num_episodes=2)) == 2


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
