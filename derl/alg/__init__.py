"""Algorithms: an `Alg` performs updates with an `AlgLoss`."""

from derl.alg.a2c import A2CLoss
from derl.alg.base import Alg, AlgLoss, explained_variance, linear_schedule
from derl.alg.ppo import PPOLoss

__all__ = ["A2CLoss", "Alg", "AlgLoss", "PPOLoss", "explained_variance", "linear_schedule"]
