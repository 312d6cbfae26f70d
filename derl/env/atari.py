"""DeepMind Atari preprocessing on top of gymnasium's AtariPreprocessing.

gymnasium covers noop reset, frame skip with max-pool and 84x84 gray. Its `terminal_on_life_loss`
ends the *game* (the vector env then resets it), so life-loss terminals are written here the way
baselines does: the episode ends for learning, the game goes on. Episode statistics sit below that
wrapper and below reward clipping, so the reported return is the true game score.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing,
    FrameStackObservation,
    RecordEpisodeStatistics,
    StickyAction,
    TimeLimit,
    TransformReward,
)

from derl.errors import UsageError

# 108k frames = 30 minutes of play, the usual cap (Machado et al. 2018).
MAX_AGENT_STEPS = 108_000 // 4


class HoldsGameEnd(gym.Wrapper):
    """A wrapper whose reset takes steps of its own (a no-op, FIRE). A game that one of them
    ends (game over, or the step cap) must still be reported, and gymnasium's vector envs read
    an episode's end, with RecordEpisodeStatistics' true score in its info, only from step():
    so reset holds that end and returns the step's observation, and the next step() returns
    the end without acting (reward 0, the action unused)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.held: tuple | None = None  # (obs, terminated, truncated, info) of that step

    def hold(self, obs, terminated: bool, truncated: bool, info: dict) -> tuple:
        """reset's return: the observation, and the info without the score the end reports."""
        self.held = (obs, terminated, truncated, info)
        return obs, {k: v for k, v in info.items() if k != "episode"}

    def release(self) -> tuple:
        assert self.held is not None
        (obs, terminated, truncated, info), self.held = self.held, None
        return obs, 0.0, terminated, truncated, info


class EpisodicLife(HoldsGameEnd):
    """Terminate on life loss for learning; reset the game only when it is really over."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        if self.held is not None:  # the game ended in reset's no-op
            return self.release()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        self.held = None
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # a life was lost: continue the same game with a no-op
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.hold(obs, terminated, truncated, info)
        self.lives = self.env.unwrapped.ale.lives()
        self.game_over = self.held is not None  # the next reset starts a new game
        return obs, info


class FireReset(HoldsGameEnd):
    """Press FIRE after every reset, for games that wait for it (Breakout would idle otherwise)."""

    def step(self, action):
        if self.held is not None:  # the game ended while FIRE was pressed
            return self.release()
        return self.env.step(action)

    def reset(self, **kwargs):
        self.held = None
        obs, info = self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if "episode" in info:  # the game ended: RecordEpisodeStatistics' score to report
                return self.hold(obs, terminated, truncated, info)
            if terminated or truncated:  # a life lost (EpisodicLife's end): the game goes on
                obs, info = self.env.reset(**kwargs)
        return obs, info


def make_atari(env_id: str, render_mode: str | None = None, **env_kwargs) -> gym.Env:
    """One Atari env with the DeepMind preprocessing; observations are [4, 84, 84] uint8.
    `env_kwargs` go to gymnasium.make (e.g. repeat_action_probability, mode, difficulty), but for
    `max_episode_steps`, which counts agent steps here (default 27,000: 108k frames)."""
    kwargs = {"render_mode": render_mode, **env_kwargs}
    spec_kwargs = gym.spec(env_id.split(":")[-1]).kwargs
    obs_type = kwargs.get("obs_type", spec_kwargs.get("obs_type", "rgb"))
    if obs_type != "rgb":  # AtariPreprocessing reads the screen whatever the env returns
        raise UsageError(
            f"{env_id} with obs_type={obs_type!r}: derl's Atari preprocessing works on the "
            "screen; for RAM observations pass your own env (env_fn=, see the README)"
        )
    if "frameskip" in kwargs:
        raise UsageError(
            f"{env_id} with frameskip={kwargs['frameskip']!r}: derl's Atari preprocessing skips "
            "4 frames itself (max-pooling the last two); for other frame skips pass your own "
            "env (env_fn=, see the README)"
        )
    max_steps = kwargs.pop("max_episode_steps", MAX_AGENT_STEPS)
    # AtariPreprocessing skips frames itself, so ALE steps one frame at a time.
    kwargs["frameskip"] = 1
    # Sticky actions (ALE/*-v5: 0.25; NoFrameskip-v4: 0) per frame as ALE does them, but in
    # gymnasium's wrapper: ALE keeps the action it repeats out of cloneState, so a checkpoint
    # could not restore it, and a resumed run would repeat another action.
    sticky = float(
        kwargs.pop("repeat_action_probability", spec_kwargs.get("repeat_action_probability", 0.0))
    )
    kwargs["repeat_action_probability"] = 0.0
    env = gym.make(env_id, **kwargs)
    if sticky > 0:
        env = StickyAction(env, sticky)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    env = TimeLimit(env, max_steps)
    env = RecordEpisodeStatistics(env)  # true score: below life loss and reward clipping
    env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]  # AtariEnv's
        env = FireReset(env)
    env = FrameStackObservation(env, 4)
    env = TransformReward(env, lambda r: float(np.sign(float(r))))
    return env
