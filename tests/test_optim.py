"""RMSpropTF follows TensorFlow's update rule, and it is why baselines' A2C steps are small."""

import copy

import torch

import derl
from derl import optim
from derl.alg.base import clip_grad_norm
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


def twin_adams(**kwargs):
    """Two torch Adams over equal copies of a small MLP's parameter shapes."""
    torch.manual_seed(0)
    shapes = [(64, 4), (64,), (64, 64), (64,), (2, 64), (2,)]
    a = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    return a, torch.optim.Adam(a, **kwargs), b, torch.optim.Adam(b, **kwargs)


def test_optim_step_is_torchs_fused_adam_bit_for_bit():
    a, torch_adam, b, adam = twin_adams(lr=1e-3, eps=1e-5, weight_decay=0.01, fused=True)
    for i in range(30):
        grads = [torch.randn_like(p) for p in a]
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        for opt in (torch_adam, adam):
            opt.param_groups[0]["lr"] = 1e-3 * (1 - i / 30)  # an annealed lr
        torch_adam.step()
        optim.step(adam)
        assert i == 0 or optim.fused_adam_ready(adam)  # the first step makes torch's state
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    for s, t in zip(torch_adam.state.values(), adam.state.values(), strict=True):
        assert all(torch.equal(s[k], t[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_optim_step_leaves_what_it_does_not_cover_to_torch():
    a, _, b, adam = twin_adams(lr=1e-3, fused=True)
    for p in b:
        p.grad = torch.ones_like(p)
    assert not optim.fused_adam_ready(adam)  # no state before the first step
    optim.step(adam)
    assert optim.fused_adam_ready(adam)
    b[0].grad = None  # a parameter without a gradient: torch skips it
    assert not optim.fused_adam_ready(adam)
    b[0].grad = torch.ones_like(b[0])
    calls = []
    handle = adam.register_step_pre_hook(lambda *args: calls.append(1))
    assert not optim.fused_adam_ready(adam)
    optim.step(adam)
    assert calls == [1]  # the hook ran: torch's step took it
    handle.remove()
    for kwargs in (dict(fused=False), dict(fused=True, amsgrad=True)):
        _, _, c, other = twin_adams(lr=1e-3, **kwargs)
        for p in c:
            p.grad = torch.ones_like(p)
        optim.step(other)
        assert not optim.fused_adam_ready(other)


def test_clip_grad_norm_is_torchs():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(4))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for max_norm in (0.5, 1e3, float("inf")):
        grads = [torch.randn_like(p) * 3 for p in a]
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        expected = torch.nn.utils.clip_grad_norm_(a, max_norm, foreach=True)
        assert torch.equal(clip_grad_norm(b, max_norm), expected)
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(a, b, strict=True))
    assert float(expected) > 0.5  # the first case clipped
