"""Runners: collect rollouts; wrappers and transforms compose on them."""

from derl.runners.env_runner import EnvRunner
from derl.runners.transforms import GAE, MergeTimeBatch, NormalizeAdvantages
from derl.runners.wrappers import Minibatches, RunnerWrapper, Transform

__all__ = [
    "EnvRunner",
    "GAE",
    "MergeTimeBatch",
    "NormalizeAdvantages",
    "Minibatches",
    "RunnerWrapper",
    "Transform",
]
