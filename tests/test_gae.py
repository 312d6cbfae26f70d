"""GAE against values worked out by hand."""

import pytest
import torch

from derl.returns import gae


def col(*xs):
    """A [T, 1] column: one env."""
    return torch.tensor(xs, dtype=torch.float32)[:, None]


def run(rewards, values, last, terminated, truncated, final, gamma, lam):
    return gae(
        col(*rewards),
        col(*values),
        torch.tensor([last]),
        col(*terminated),
        col(*truncated),
        col(*final),
        gamma,
        lam,
    )[:, 0]


def test_no_episode_end_lambda_one_is_discounted_return_minus_value():
    # gamma 0.5, lambda 1: A_t = sum_k 0.5^k r_{t+k} + 0.5^(T-t) V_T - V_t
    adv = run([1, 2, 3], [0.5, 1, 1.5], 4.0, [0, 0, 0], [0, 0, 0], [0, 0, 0], 0.5, 1.0)
    g2 = 3 + 0.5 * 4  # 5
    g1 = 2 + 0.5 * g2  # 4.5
    g0 = 1 + 0.5 * g1  # 3.25
    assert adv.tolist() == pytest.approx([g0 - 0.5, g1 - 1, g2 - 1.5])


def test_lambda_zero_is_one_step_td_error():
    adv = run([1, 2, 3], [0.5, 1, 1.5], 4.0, [0, 0, 0], [0, 0, 0], [0, 0, 0], 0.9, 0.0)
    assert adv.tolist() == pytest.approx([1 + 0.9 * 1 - 0.5, 2 + 0.9 * 1.5 - 1, 3 + 0.9 * 4 - 1.5])


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_terminated_step_does_not_bootstrap_and_cuts_the_recursion(lam):
    # Step 1 terminates: its delta is r1 - V1 and step 0 sees V1 but not beyond.
    gamma = 0.9
    adv = run([1, 2, 3], [0.5, 1, 1.5], 4.0, [0, 1, 0], [0, 0, 0], [0, 0, 0], gamma, lam)
    d2 = 3 + gamma * 4 - 1.5
    d1 = 2 - 1
    d0 = 1 + gamma * 1 - 0.5
    assert adv.tolist() == pytest.approx([d0 + gamma * lam * d1, d1, d2])


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_truncated_step_bootstraps_from_the_final_observation(lam):
    # Step 1 hits a time limit; the real last observation has value 10. V(s_2)=1.5 belongs to
    # the next episode and must not leak into step 1.
    gamma = 0.9
    adv = run([1, 2, 3], [0.5, 1, 1.5], 4.0, [0, 0, 0], [0, 1, 0], [0, 10, 0], gamma, lam)
    d2 = 3 + gamma * 4 - 1.5
    d1 = 2 + gamma * 10 - 1
    d0 = 1 + gamma * 1 - 0.5
    assert adv.tolist() == pytest.approx([d0 + gamma * lam * d1, d1, d2])


def test_envs_are_independent():
    rewards = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    zeros = torch.zeros(2, 2)
    adv = gae(rewards, zeros, torch.zeros(2), zeros, zeros, zeros, 1.0, 1.0)
    assert adv.tolist() == [[2.0, 0.0], [1.0, 0.0]]
