"""derl: deep reinforcement learning in PyTorch.

Four layers, data flowing one way: `Policy` acts, `EnvRunner` (plus wrappers and transforms)
collects rollouts, `Alg` turns an `AlgLoss` into updates, and the factory builds them from a config.
"""

from derl import env
from derl.agent import Agent, load, save
from derl.alg import A2CLoss, Alg, AlgLoss, PPOLoss
from derl.errors import UsageError
from derl.factory import (
    A2CConfig,
    DQNConfig,
    PPOConfig,
    RainbowConfig,
    SACConfig,
    TD3Config,
    make_a2c,
    make_config,
    make_dqn,
    make_ppo,
    make_sac,
    make_td3,
)
from derl.logger import Logger
from derl.models import make_model
from derl.policies import ActorCriticPolicy
from derl.returns import gae
from derl.runners import (
    GAE,
    EnvRunner,
    MergeTimeBatch,
    Minibatches,
    NormalizeAdvantages,
    Transform,
)
from derl.train import TrainResult, resume, train

__version__ = "0.2.0"

__all__ = [
    "env",
    "Agent",
    "load",
    "save",
    "resume",
    "A2CLoss",
    "Alg",
    "AlgLoss",
    "PPOLoss",
    "UsageError",
    "A2CConfig",
    "DQNConfig",
    "PPOConfig",
    "RainbowConfig",
    "SACConfig",
    "TD3Config",
    "make_a2c",
    "make_config",
    "make_dqn",
    "make_ppo",
    "make_sac",
    "make_td3",
    "Logger",
    "make_model",
    "ActorCriticPolicy",
    "GAE",
    "EnvRunner",
    "MergeTimeBatch",
    "Minibatches",
    "NormalizeAdvantages",
    "Transform",
    "gae",
    "TrainResult",
    "train",
]
