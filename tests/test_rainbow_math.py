"""Rainbow and SAC maths: sum tree, IS weights, n-step returns, C51, tanh Gaussian, NoisyNet."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

from derl.distributions import SquashedNormal, squashed_gaussian_log_prob, tanh_log_abs_det
from derl.noisy import DuelingHead, NoisyLinear, reset_noise
from derl.returns import categorical_projection, nstep_returns
from derl.runners.sum_tree import SumTree, importance_weights

# --- sum tree ------------------------------------------------------------------------------


def test_sampling_frequencies_match_priorities():
    priorities = np.array([0.5, 3.0, 0.0, 1.0, 0.1, 2.0, 0.0, 4.0, 0.4, 1.5])  # not a power of 2
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(1000, rng) for _ in range(200)])
    freq = np.bincount(draws, minlength=len(priorities)) / len(draws)
    expected = priorities / priorities.sum()
    # 5 binomial standard errors per bin (stratified draws vary less than independent ones).
    tolerance = 5 * np.sqrt(expected * (1 - expected) / len(draws))
    assert np.all(np.abs(freq - expected) <= tolerance), (freq, expected)
    assert freq[priorities == 0].sum() == 0


def test_batched_updates_with_duplicates_are_exact():
    capacity = 37  # padded to 64 leaves
    tree, reference = SumTree(capacity), np.zeros(capacity)
    rng = np.random.default_rng(1)
    for _ in range(300):
        indices = rng.integers(0, capacity, size=rng.integers(1, 50))  # many duplicates
        values = rng.exponential(size=len(indices)) * (rng.random(len(indices)) > 0.1)
        tree.update(indices, values)
        for i, v in zip(indices, values, strict=True):  # one at a time: the last write wins
            reference[i] = v
    assert np.array_equal(tree.priorities(np.arange(capacity)), reference)
    assert tree.total == pytest.approx(reference.sum(), rel=1e-12)
    nodes = tree.nodes
    # Every inner node is exactly the sum of its children, and the tree is bit-for-bit the one
    # built from scratch: no float drift from incremental updates.
    assert np.array_equal(nodes[1 : tree.size], nodes[2::2] + nodes[3::2])
    fresh = SumTree(capacity)
    fresh.update(np.arange(capacity), reference)
    assert np.array_equal(nodes, fresh.nodes)
    leaves = np.zeros(tree.size)
    leaves[:capacity] = reference
    width = tree.size
    while width >= 1:  # level with `width` nodes: each is the sum of its block of leaves
        assert np.allclose(nodes[width : 2 * width], leaves.reshape(width, -1).sum(1), rtol=1e-12)
        width //= 2


def test_last_value_of_a_repeated_index_wins():
    tree = SumTree(8)
    tree.update([3, 5, 3, 3], [1.0, 2.0, 7.0, 4.0])
    assert tree[[3, 5]].tolist() == [4.0, 2.0]
    assert tree.total == 6.0


def test_find_matches_prefix_sums():
    rng = np.random.default_rng(2)
    priorities = rng.exponential(size=100) * (rng.random(100) > 0.3)
    tree = SumTree(100)
    tree.update(np.arange(100), priorities)
    values = rng.random(10_000) * tree.total
    expected = np.searchsorted(np.cumsum(priorities), values, side="right")
    assert np.array_equal(tree.find(values), expected)
    # The very end of the range (v == total, after rounding) still lands on a sampled leaf.
    assert priorities[tree.find([tree.total, np.nextafter(tree.total, 0)])].min() > 0


def test_stratified_sampling_takes_one_index_per_segment():
    tree = SumTree(16)
    tree.update(np.arange(16), 1.0)
    assert tree.sample(16, np.random.default_rng(0)).tolist() == list(range(16))  # equal p

    rng = np.random.default_rng(3)
    priorities = rng.exponential(size=50)
    tree = SumTree(50)
    tree.update(np.arange(50), priorities)
    batch = 32
    indices = tree.sample(batch, rng)
    starts = np.concatenate([[0], np.cumsum(priorities)])  # leaf j covers [starts[j], starts[j+1])
    segment = tree.total / batch
    i = np.arange(batch)
    assert np.all(starts[indices] < (i + 1) * segment) and np.all(starts[indices + 1] > i * segment)
    assert np.all(np.diff(indices) >= 0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_priorities_are_refused(bad):
    tree = SumTree(4)
    with pytest.raises(ValueError):
        tree.update([0, 1], [1.0, bad])
    assert tree.total == 0.0  # nothing was written


def test_bad_indices_and_empty_tree_are_refused():
    tree = SumTree(5)
    with pytest.raises(IndexError):
        tree.update([5], [1.0])  # inside the padding, outside the capacity
    with pytest.raises(IndexError):
        tree.priorities([-1])
    with pytest.raises(ValueError):
        tree.sample(4, np.random.default_rng(0))


def test_capacity_one():
    tree = SumTree(1)
    tree.update([0], [2.5])
    assert tree.total == 2.5 and tree.sample(3, np.random.default_rng(0)).tolist() == [0, 0, 0]


def test_importance_weights_by_hand():
    # N P = [1, 2, 4]: w = (N P)^-beta, over the max.
    probs, size = np.array([0.1, 0.2, 0.4]), 10
    assert importance_weights(probs, size, 1.0) == pytest.approx([1.0, 0.5, 0.25])
    assert importance_weights(probs, size, 0.5) == pytest.approx([1.0, 2**-0.5, 0.5])
    assert importance_weights(probs, size, 0.0) == pytest.approx([1.0, 1.0, 1.0])
    # N P = [0.5, 1, 1]: the rarest item gets the largest weight, 1.
    assert importance_weights([0.125, 0.25, 0.25], 4, 1.0) == pytest.approx([1.0, 0.5, 0.5])
    # (N P)^-1 = 1e300 * 1e300 overflows unless normalised in log space.
    assert importance_weights([1e-300, 2e-300], 1e-300, 2.0) == pytest.approx([1.0, 0.25])


# --- n-step returns ------------------------------------------------------------------------


def test_nstep_returns_by_hand():
    nan = float("nan")
    rows = [  # (rewards, terminated, truncated) -> (return, bootstrap discount, steps), gamma 0.5
        (([1, 2, 3], [0, 0, 0], [0, 0, 0]), (1 + 1 + 0.75, 0.125, 3)),  # full window
        (([1, 2, nan], [0, 1, 0], [0, 0, 0]), (1 + 1, 0.0, 2)),  # terminates at its 2nd step
        (([1, 2, nan], [0, 0, 0], [0, 1, 0]), (1 + 1, 0.25, 2)),  # truncated at its 2nd step
        (([4, nan, nan], [1, 0, 1], [0, 1, 0]), (4, 0.0, 1)),  # terminates at once
        (([1, 2, 3], [0, 0, 0], [0, 0, 1]), (2.75, 0.125, 3)),  # truncated at the last step
        (([1, 2, 3], [0, 0, 1], [0, 0, 0]), (2.75, 0.0, 3)),  # terminates at the last step
        (([1, 2, 3], [0, 1, 0], [0, 1, 0]), (2.0, 0.0, 2)),  # both flags: termination wins
    ]
    rewards, terminated, truncated = (torch.tensor([r[0][k] for r in rows]) for k in range(3))
    returns, discount, steps = nstep_returns(
        rewards.float(), terminated.bool(), truncated.float(), 0.5
    )
    assert returns.tolist() == pytest.approx([r[1][0] for r in rows])
    assert discount.tolist() == pytest.approx([r[1][1] for r in rows])
    assert steps.tolist() == [r[1][2] for r in rows]


def test_one_step_returns_are_the_td_target_parts():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    terminated, truncated = torch.tensor([[0], [1], [0]]), torch.tensor([[0], [0], [1]])
    returns, discount, steps = nstep_returns(rewards, terminated, truncated, 0.9)
    assert returns.tolist() == [1.0, 2.0, 3.0]
    assert discount.tolist() == pytest.approx([0.9, 0.0, 0.9])
    assert steps.tolist() == [1, 1, 1]


# --- C51 projection ------------------------------------------------------------------------

SUPPORT = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
P = [0.1, 0.2, 0.3, 0.2, 0.2]


@pytest.mark.parametrize(
    "ret, discount, expected",
    [
        # Tz = [-0.5, 0, 0.5, 1, 1.5]: halves, and exact hits on z = 0 and z = 1
        (0.5, 0.5, [0.0, 0.05, 0.05 + 0.2 + 0.15, 0.15 + 0.2 + 0.1, 0.1]),
        # Tz = [-0.5, 0.5, 1.5, 2.5, 3.5]: the last two clamp to v_max = 2
        (1.5, 1.0, [0.0, 0.05, 0.05 + 0.1, 0.15 + 0.1, 0.15 + 0.2 + 0.2]),
        (-3.0, 0.5, [1.0, 0.0, 0.0, 0.0, 0.0]),  # everything below v_min
        (0.3, 0.0, [0.0, 0.0, 0.7, 0.3, 0.0]),  # terminal: all mass at r
        (2.0, 0.0, [0.0, 0.0, 0.0, 0.0, 1.0]),  # exactly on the last atom
        (-2.0, 0.0, [1.0, 0.0, 0.0, 0.0, 0.0]),  # exactly on the first atom
    ],
)
def test_categorical_projection_by_hand(ret, discount, expected):
    probs = torch.tensor([P], dtype=torch.float64)
    projected = categorical_projection(
        probs, torch.tensor([ret], dtype=torch.float64), torch.tensor([discount]).double(), SUPPORT
    )
    assert projected[0].tolist() == pytest.approx(expected, abs=1e-12)


def test_categorical_projection_keeps_mass_and_the_mean_inside_the_support():
    gen = torch.Generator().manual_seed(0)
    support = torch.linspace(-10, 10, 51)
    probs = torch.randn(256, 51, generator=gen).softmax(-1)
    returns = torch.rand(256, generator=gen) * 10 - 5
    discounts = 0.99 ** torch.randint(1, 4, (256,), generator=gen).float()
    discounts[::4] = 0.0
    projected = categorical_projection(probs, returns, discounts, support)
    assert torch.all(projected >= 0)
    assert torch.allclose(projected.sum(-1), torch.ones(256), atol=1e-5)
    # Where nothing is clamped, splitting mass between neighbours keeps the mean exactly.
    inside = ((returns[:, None] + discounts[:, None] * support).abs() <= 10).all(-1)
    mean = (projected * support).sum(-1)
    target_mean = returns + discounts * (probs * support).sum(-1)
    assert inside.sum() > 50
    assert torch.allclose(mean[inside], target_mean[inside], atol=1e-4)


# --- squashed Gaussian ---------------------------------------------------------------------


def test_squashed_log_prob_matches_torch_transformed_distribution():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    log_std = torch.randn(64, 3, generator=gen, dtype=torch.float64) * 0.5
    pre_tanh = torch.randn(64, 3, generator=gen, dtype=torch.float64) * 2
    low = torch.tensor([-1.0, 0.0, -3.0], dtype=torch.float64)
    high = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)
    center, half = (high + low) / 2, (high - low) / 2
    reference = Independent(
        TransformedDistribution(
            Normal(mean, log_std.exp()), [TanhTransform(), AffineTransform(center, half)]
        ),
        1,
    )
    action = center + half * torch.tanh(pre_tanh)
    ours = squashed_gaussian_log_prob(mean, log_std, pre_tanh, low, high)
    assert torch.allclose(ours, reference.log_prob(action), rtol=1e-9, atol=1e-9)
    unit = Independent(TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()]), 1)
    ours_unit = squashed_gaussian_log_prob(mean, log_std, pre_tanh)
    assert torch.allclose(ours_unit, unit.log_prob(torch.tanh(pre_tanh)), rtol=1e-9, atol=1e-9)


def test_tanh_jacobian_matches_finite_differences():
    u = torch.linspace(-6, 6, 101, dtype=torch.float64)
    h = 1e-6
    slope = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    assert torch.allclose(tanh_log_abs_det(u), slope.log(), atol=1e-6)


def test_squashed_density_integrates_to_one_over_the_box():
    low, high = -2.0, 3.0
    action = torch.linspace(low, high, 400_001, dtype=torch.float64)[1:-1]
    unit = (action - (high + low) / 2) / ((high - low) / 2)
    mean, log_std = torch.tensor([[0.3]]).double(), torch.tensor([[math.log(0.8)]]).double()
    log_prob = squashed_gaussian_log_prob(mean, log_std, torch.atanh(unit)[:, None], low, high)
    assert torch.trapezoid(log_prob.exp(), action).item() == pytest.approx(1.0, abs=1e-4)


def test_squashed_log_prob_is_finite_where_tanh_saturates():
    pre_tanh = torch.tensor([[-20.0], [20.0], [-50.0], [50.0]])
    assert torch.all(torch.log(1 - torch.tanh(pre_tanh) ** 2).isinf())  # the naive form fails
    # log(1 - tanh(u)^2) -> log 4 - 2|u|
    assert torch.allclose(tanh_log_abs_det(pre_tanh), math.log(4) - 2 * pre_tanh.abs())
    log_prob = squashed_gaussian_log_prob(pre_tanh, torch.zeros_like(pre_tanh), pre_tanh)
    assert torch.all(torch.isfinite(log_prob))


def test_squashed_normal_distribution():
    torch.manual_seed(0)
    mean = torch.zeros(5, 2, requires_grad=True)
    log_std = torch.full((5, 2), -0.5)
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0])
    dist = SquashedNormal(mean, log_std, low, high)
    action, log_prob = dist.rsample_with_log_prob((7,))
    assert action.shape == (7, 5, 2) and log_prob.shape == (7, 5)
    assert torch.all((action > low) & (action < high))
    # Away from the bounds, log_prob(action) through atanh agrees with the pre-tanh log-prob.
    assert torch.allclose(dist.log_prob(action), log_prob, atol=1e-3)
    log_prob.sum().backward()  # reparameterised: gradients reach the mean
    assert mean.grad is not None and torch.all(torch.isfinite(mean.grad))
    assert torch.allclose(dist.mode, torch.tensor([0.0, 2.0]).expand(5, 2))
    assert dist.sample().shape == (5, 2) and not dist.sample().requires_grad
    unit = SquashedNormal(torch.zeros(3, 1), torch.zeros(3, 1))
    assert torch.all(unit.rsample().abs() < 1)


# --- NoisyNet and the dueling head ---------------------------------------------------------


def test_noisy_init_values():
    layer = NoisyLinear(25, 7, sigma0=0.5)
    bound = 1 / math.sqrt(25)
    assert torch.all(layer.weight_sigma == 0.5 * bound) and torch.all(
        layer.bias_sigma == 0.5 * bound
    )
    assert layer.weight_mu.abs().max() <= bound and layer.bias_mu.abs().max() <= bound
    assert layer.weight_mu.abs().max() > 0.8 * bound  # spread over the whole range


def test_noise_is_factorised_and_scaled_by_sgn_sqrt():
    layer = NoisyLinear(3, 2)
    layer.reset_noise(torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    z_in, z_out = torch.randn(3, generator=gen), torch.randn(2, generator=gen)
    assert torch.equal(layer.epsilon_in, z_in.sign() * z_in.abs().sqrt())
    assert torch.equal(layer.epsilon_out, z_out.sign() * z_out.abs().sqrt())
    # The weights the forward pass uses: w = mu + sigma * eps_out eps_in^T, a rank-1 noise [2, 3].
    with torch.no_grad():
        bias = layer(torch.zeros(1, 3))[0]
        weight = (layer(torch.eye(3)) - bias).T
    noise = (weight - layer.weight_mu) / layer.weight_sigma
    assert noise.shape == (2, 3) and torch.linalg.matrix_rank(noise) == 1
    assert torch.allclose(noise, torch.outer(layer.epsilon_out, layer.epsilon_in), atol=1e-5)
    assert torch.allclose((bias - layer.bias_mu) / layer.bias_sigma, layer.epsilon_out, atol=1e-5)


def test_noise_statistics():
    torch.manual_seed(0)
    eps = NoisyLinear(200_000, 1).epsilon_in
    # f(x) = sgn(x) sqrt|x| of x ~ N(0, 1): mean 0, E[f^2] = E|x| = sqrt(2 / pi), symmetric.
    assert eps.mean().item() == pytest.approx(0.0, abs=0.01)
    assert (eps**2).mean().item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.01)
    assert (eps > 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_noise_changes_only_on_reset_and_eval_uses_the_mean():
    torch.manual_seed(0)
    layer, x = NoisyLinear(4, 3), torch.randn(8, 4)
    first = layer(x)
    assert torch.equal(layer(x), first)  # no new noise per forward
    layer.reset_noise()
    second = layer(x)
    assert not torch.allclose(second, first)
    layer.eval()
    mean_output = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    assert torch.equal(layer(x), mean_output)
    layer.reset_noise()
    assert torch.equal(layer(x), mean_output)


@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("atoms", [1, 51])
def test_dueling_head(atoms, noisy):
    torch.manual_seed(0)
    head = DuelingHead(16, 6, atoms=atoms, noisy=noisy, hidden=32)
    features = torch.randn(5, 16)
    out = head(features)
    assert out.shape == ((5, 6) if atoms == 1 else (5, 6, atoms))
    # The mean over actions is V exactly (per atom): A only says how actions differ.
    value = head.value(features)
    assert torch.allclose(out.mean(dim=1), value.squeeze(-1) if atoms == 1 else value, atol=1e-5)
    assert head(features[None]).shape == (1, *out.shape)  # any leading dims
    if noisy:
        assert sum(isinstance(m, NoisyLinear) for m in head.modules()) == 4
        reset_noise(head)
        assert not torch.allclose(head(features), out)
