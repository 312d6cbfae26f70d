"""derl's Categorical gives torch's numbers exactly: runs stay bit for bit what they were."""

import pytest
import torch

from derl.distributions import Categorical, MultiCategorical


@pytest.mark.parametrize("shape", [(5,), (8, 2), (256, 6), (4, 3, 7)])
def test_categorical_samples_as_torch_does(shape):
    logits = torch.randn(shape) * 3
    ours, theirs = Categorical(logits=logits), torch.distributions.Categorical(logits=logits)
    for _ in range(20):
        torch.manual_seed(7)
        expected, after = theirs.sample(), torch.rand(3)
        torch.manual_seed(7)
        got = ours.sample()
        assert torch.equal(got, expected)
        assert torch.equal(torch.rand(3), after)  # the same random numbers drawn, no more
        logits = logits.roll(1)
        ours, theirs = Categorical(logits=logits), torch.distributions.Categorical(logits=logits)


def test_categorical_log_prob_entropy_and_sample_shape_as_torch():
    logits = torch.randn(64, 4, requires_grad=True)
    ours, theirs = Categorical(logits=logits), torch.distributions.Categorical(logits=logits)
    actions = torch.randint(0, 4, (64,))
    assert torch.equal(ours.log_prob(actions), theirs.log_prob(actions))
    assert torch.equal(ours.entropy(), theirs.entropy())
    grad = torch.autograd.grad(ours.log_prob(actions).sum(), logits)[0]
    assert torch.equal(grad, torch.autograd.grad(theirs.log_prob(actions).sum(), logits)[0])
    every = torch.arange(4)[:, None]  # broadcast against the batch: torch's own path
    assert torch.equal(ours.log_prob(every), theirs.log_prob(every))
    torch.manual_seed(3)
    expected = theirs.sample((5,))
    torch.manual_seed(3)
    assert torch.equal(ours.sample((5,)), expected)


def test_multicategorical_uses_the_same_draws():
    logits = torch.randn(16, 5)
    ours = MultiCategorical(logits.split([2, 3], dim=-1))
    torch.manual_seed(1)
    got = ours.sample()
    torch.manual_seed(1)
    parts = [torch.distributions.Categorical(logits=lg).sample() for lg in logits.split([2, 3], -1)]
    assert torch.equal(got, torch.stack(parts, -1))
    assert got.shape == (16, 2)
