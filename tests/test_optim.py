"""RMSpropTF follows TensorFlow's update rule, and it is why baselines' A2C steps are small."""

import copy

import torch

import derl
from derl.optim import RMSpropTF


def test_rmsprop_tf_matches_tensorflows_rule():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropTF([p], lr=0.1, alpha=0.9, eps=1e-5)
    v, expected = torch.ones(2), p.detach().clone()
    for g in ([0.5, -1.0], [2.0, 0.0], [-0.3, 4.0]):
        grad = torch.tensor(g)
        p.grad = grad.clone()
        opt.step()
        v = 0.9 * v + 0.1 * grad**2  # the accumulator starts at 1, eps inside the root
        expected -= 0.1 * grad / torch.sqrt(v + 1e-5)
        torch.testing.assert_close(p.detach(), expected)


def first_updates_change(optimizer_cls, updates: int = 5) -> float:
    """How far 5 A2C updates on CartPole move the parameters (L2 norm of the change)."""
    config = derl.make_config("a2c", "CartPole-v1", seed=0, device="cpu", num_envs=8)
    env = derl.env.make("CartPole-v1", 8, seed=0)
    alg = derl.make_a2c(config, env, torch.device("cpu"))
    alg.optimizer = optimizer_cls(alg.params, lr=7e-4, alpha=0.99, eps=1e-5)
    before = copy.deepcopy([p.detach() for p in alg.params])
    for i, batch in enumerate(alg.runner):
        alg.step(batch)
        if i + 1 == updates:
            break
    env.close()
    change = [(p.detach() - b).flatten() for p, b in zip(alg.params, before, strict=True)]
    return float(torch.cat(change).norm())


def test_torch_rmsprop_moves_far_more_early_on():
    torch.manual_seed(0)
    tf_change = first_updates_change(RMSpropTF)
    torch.manual_seed(0)
    torch_change = first_updates_change(torch.optim.RMSprop)
    assert torch_change > 100 * tf_change, (torch_change, tf_change)


def test_atari_preset_uses_tensorflow_rmsprop():
    assert derl.make_config("a2c", "BreakoutNoFrameskip-v4").rmsprop_tf
    assert not derl.make_config("a2c", "CartPole-v1").rmsprop_tf
