"""Environments: `make(env_id, num_envs, seed)` returns a vector env ready to train on."""

from derl.env.families import family
from derl.env.make import make, make_single, observation_space, user_env_fn
from derl.env.normalize import VecNormalize

__all__ = ["make", "make_single", "observation_space", "user_env_fn", "family", "VecNormalize"]
