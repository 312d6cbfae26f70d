"""derl/buffer.py: README snippets, returns by hand, Dataset, eviction, plots, use without derl."""

import ast
import os
import pickle
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, SubsetRandomSampler

from derl import buffer as bf

ROOT = Path(__file__).resolve().parents[1]
BUFFER_PY = ROOT / "derl" / "buffer.py"


class Chain(gym.Env):
    """Registered nowhere: obs [t], reward t+1 for the step from t; ends after `length` steps."""

    observation_space = gym.spaces.Box(0, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 3, max_steps: int | None = None, reward: float | None = None):
        self.length, self.max_steps, self.reward = length, max_steps, reward

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.t >= self.length
        truncated = not terminated and self.max_steps is not None and self.t >= self.max_steps
        reward = float(self.t) if self.reward is None else self.reward
        return np.array([self.t], np.float32), reward, terminated, truncated, {}


def policy(obs):
    return 0


def collect(env, num_episodes):
    for _ in range(num_episodes):
        bf.episode(env, policy)


@pytest.fixture
def headless(monkeypatch, tmp_path):
    """No display (on any platform: MPLBACKEND=Agg), cwd in a temporary directory."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## The replay-buffer toolkit")
    end = text.find("\n## ", start)  # the next section, if any
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


@pytest.mark.parametrize("registered", [True, False], ids=["CartPole-v1", "unregistered-env"])
def test_readme_snippets_run_as_written(registered, headless, monkeypatch):
    if not registered:  # the same snippets on an env no registry knows
        monkeypatch.setattr(gym, "make", lambda *args, **kwargs: Chain(length=5, max_steps=4))
    snippets = readme_snippets()
    assert len(snippets) >= 6
    namespace = {}
    for snippet in snippets:
        exec(snippet, namespace)
    batch = next(iter(namespace["dl"]))
    assert batch._fields == ("s", "a", "g") and len(batch.s) > 0
    assert namespace["ds"][0]._fields == ("s", "a", "s_p", "r", "d", "g")
    namespace["env"].close()
    assert (headless / "buffer_stats.png").read_bytes()[:4] == b"\x89PNG"


def test_ds0_of_the_seed_readme_is_the_discounted_return():
    # The seed's ds[0] shows g=8.02526121523242: reward 1 for 10 steps at the default discount 0.95.
    env, replay_buffer = bf.wrap(Chain(length=10, reward=1.0))
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g"))
    bf.episode(env, policy)
    item = bf.ReplayBufferDataset(replay_buffer, info_keys=["g"])[0]
    assert item._fields == ("s", "a", "s_p", "r", "d", "g")
    assert item.g == pytest.approx(8.02526121523242) and item.r == 1.0 and not item.d
    assert item.s.tolist() == [0.0] and item.s_p.tolist() == [1.0] and item.a == 0
    pattern = r"Transition\(s=array\(\[0\.\].*\), a=0, .*r=1\.0, d=False, g=8\.02526\d*\)"
    assert re.fullmatch(pattern, repr(item))


def test_discounted_returns_by_hand_across_an_episode_boundary():
    env, replay_buffer = bf.wrap(Chain(length=3))
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g", discount=0.5))
    collect(env, 2)
    ds = bf.ReplayBufferDataset(replay_buffer, fields=("s", "r", "d", "trunc"), info_keys=["g"])
    # rewards 1, 2, 3: g = 1 + .5 * 2 + .25 * 3, 2 + .5 * 3, 3; nothing leaks into the next episode
    assert [ds[i].g for i in range(len(ds))] == pytest.approx([2.75, 3.5, 3.0] * 2)
    assert [ds[i].d for i in range(6)] == [False, False, True] * 2
    assert not any(ds[i].trunc for i in range(6))


def test_truncated_episode_keeps_its_real_last_observation():
    env, replay_buffer = bf.wrap(Chain(length=5, max_steps=2))
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g", discount=0.5))
    collect(env, 2)
    ds = bf.ReplayBufferDataset(replay_buffer, fields=("s_p", "d", "trunc"), info_keys=["g"])
    assert [ds[i].g for i in range(4)] == pytest.approx([1 + 0.5 * 2, 2.0] * 2)  # no bootstrap
    assert [(bool(ds[i].d), bool(ds[i].trunc)) for i in range(2)] == [(False, False), (False, True)]
    assert ds[1].s_p.tolist() == [2.0]  # the final observation, not the next episode's first


def test_reset_in_mid_episode_is_a_truncation_and_gets_enriched():
    env, replay_buffer = bf.wrap(Chain(length=10))
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g", discount=1.0))
    for _ in bf.step_environment(env, policy, num_steps=3):
        pass
    bf.episode(env, policy)  # resets: the first episode was cut after 3 steps
    ds = bf.ReplayBufferDataset(replay_buffer, fields=("trunc",), info_keys=["g"])
    assert len(ds) == 13 and replay_buffer.episode_lengths == [3, 10]
    assert [ds[i].g for i in range(3)] == pytest.approx([6.0, 5.0, 3.0]) and ds[2].trunc


def test_gae_by_hand_bootstraps_a_truncation_only():
    gamma, lam = 0.5, 0.5
    for max_steps, final_value in [(None, 0.0), (2, 10.0)]:
        length = 2 if max_steps is None else 5
        env, replay_buffer = bf.wrap(Chain(length, max_steps))
        replay_buffer.attach_enrichment(bf.GAE(lambda obs: 10 * np.asarray(obs)[:, 0], gamma, lam))
        bf.episode(env, policy)
        ds = bf.ReplayBufferDataset(replay_buffer, fields=(), info_keys=["adv", "v_target"])
        # V(s_t) = 10 t; rewards 1, 2; terminated: V(s_2) = 0, truncated: V(s_2) = 20
        d1 = 2 + gamma * 2 * final_value - 10
        d0 = 1 + gamma * 10 - 0
        assert [ds[0].adv, ds[1].adv] == pytest.approx([d0 + gamma * lam * d1, d1])
        assert [ds[0].v_target, ds[1].v_target] == pytest.approx([d0 + gamma * lam * d1, d1 + 10])


def test_dataloader_whole_buffer_and_subset_random_sampler():
    env, replay_buffer = bf.wrap(gym.make("CartPole-v1"))
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g"))
    bf.episode(env, lambda obs: env.action_space.sample(), seed=0)
    collect(env, 3)
    on_policy = bf.ReplayBufferDataset(replay_buffer, fields=("s", "a"), info_keys=["g"])
    batch = next(iter(DataLoader(on_policy, batch_size=10_000)))
    assert type(batch).__name__ == "Transition" and batch._fields == ("s", "a", "g")
    assert batch.s.shape == (len(replay_buffer), 4) and batch.s.dtype == torch.float32
    assert batch.a.dtype == torch.int64 and batch.g.dtype == torch.float32
    assert batch.g[0] > batch.g[1] > 0  # discounted returns shrink towards an episode's end
    off_policy = bf.ReplayBufferDataset(gym.wrappers.ClipReward(env, 0, 1))  # the env works too
    sampler = SubsetRandomSampler(random.sample(range(len(off_policy)), 8))
    batch = next(iter(DataLoader(off_policy, batch_size=8, sampler=sampler)))
    assert batch.s_p.shape == (8, 4) and batch.r.tolist() == [1.0] * 8
    assert batch.d.dtype == torch.bool
    item = off_policy[0]
    assert pickle.loads(pickle.dumps(item))._fields == item._fields  # DataLoader workers pickle


def test_the_dataset_is_live_and_info_keys_hold_finished_episodes_only():
    env, replay_buffer = bf.wrap(Chain(length=4))
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g"))
    everything = bf.ReplayBufferDataset(replay_buffer, fields=("s",))
    enriched = bf.ReplayBufferDataset(replay_buffer, fields=("s",), info_keys=["g"])
    steps = bf.step_environment(env, policy)
    for _ in range(6):
        next(steps)
    assert (len(everything), len(enriched)) == (6, 4)


def test_capacity_evicts_transitions_and_enrichments_together():
    env, replay_buffer = bf.wrap(Chain(length=3), capacity=10)
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g", discount=0.5))
    collect(env, 7)  # 7 episodes x 4 rows (3 steps + the final observation) > 10 rows
    storage = replay_buffer.storage
    assert storage.num_rows == 10 and storage.columns["obs"].shape == (10, 1)
    ds = bf.ReplayBufferDataset(replay_buffer, fields=("s", "s_p"), info_keys=["g"])
    assert len(ds) == len(replay_buffer) == 7  # the 7 newest transitions: 1 + 3 + 3
    expected = {0: 2.75, 1: 3.5, 2: 3.0}  # by the step's position in its episode
    for i in range(len(ds)):
        t = int(ds[i].s[0])
        assert ds[i].s_p[0] == t + 1 and ds[i].g == pytest.approx(expected[t])
    # A row reused by a new observation forgets the old enrichment until its episode ends.
    bf.step_environment(env, policy).__next__()
    assert np.isnan(storage.columns["g"][storage.slots(-2)])


def test_storage_grows_wraps_and_clear_keeps_recording():
    storage = bf.TransitionStorage(capacity=8, initial_rows=2)
    storage.start(np.zeros(2, np.uint8))
    for t in (1, 2):  # grows from 2 rows to 4
        storage.add(t, float(t), False, False, np.full(2, t, np.uint8))
    assert storage.columns["obs"].dtype == np.uint8 and len(storage) == 2 and storage.num_rows == 3
    storage.clear()
    assert len(storage) == 0 and storage.num_rows == 1
    for t in range(3, 14):  # wraps inside 4 rows, grows to 8 (moving rows), then evicts
        slot = storage.add(t, float(t), t == 13, False, np.full(2, t, np.uint8))
        assert storage.columns["action"][slot] == t
    slots = storage.valid_slots()
    assert len(storage) == len(slots) == 7 and storage.columns["obs"].shape == (8, 2)
    assert storage.columns["action"][slots].tolist() == list(range(7, 14))
    assert storage.columns["obs"][storage.shift(slots, 1), 0].tolist() == list(range(7, 14))
    assert storage.ends(slots).tolist() == [False] * 6 + [True]


def test_enricher_attached_late_enriches_stored_episodes():
    env, replay_buffer = bf.wrap(Chain(length=3))
    collect(env, 2)
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g", discount=0.5))
    ds = bf.ReplayBufferDataset(replay_buffer, fields=(), info_keys=["g"])
    assert [ds[i].g for i in range(6)] == pytest.approx([2.75, 3.5, 3.0] * 2)


def test_bad_fields_and_info_keys_are_refused_when_the_dataset_is_built():
    env, replay_buffer = bf.wrap(Chain())
    replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g"))
    with pytest.raises(ValueError, match=r"unknown fields \['state'\].*'s', 'a', 's_p', 'r', 'd'"):
        bf.ReplayBufferDataset(replay_buffer, fields=("state", "a"))
    with pytest.raises(ValueError, match=r"info keys \['adv'\].*\['g'\]"):
        bf.ReplayBufferDataset(replay_buffer, info_keys=["adv"])  # empty buffer: refused anyway
    with pytest.raises(ValueError, match="must be given and new"):
        replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g"))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_torch_module_policy_and_box_actions():
    env, replay_buffer = bf.wrap(gym.make("Pendulum-v1"))
    module = torch.nn.Linear(3, 1)
    steps = list(bf.step_environment(env, module, num_steps=5, seed=0))
    assert steps[0].a.dtype == np.float32 and steps[0].a.shape == (1,)
    ds = bf.ReplayBufferDataset(replay_buffer, fields=("a",))
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch.a.shape == (5, 1)
    with torch.no_grad():
        assert batch.a[0].tolist() == pytest.approx(module(torch.as_tensor(steps[0].s)).tolist())


def test_headless_plot_writes_a_png_and_nothing_else(headless):
    env, replay_buffer = bf.wrap(
        Chain(length=3),
        plot=True,
        plot_blocksize=4,
        plot_path=str(headless / "plots" / "stats.png"),
    )
    collect(env, 4)  # one block: drawn at once
    assert (headless / "plots" / "stats.png").read_bytes()[:4] == b"\x89PNG"
    assert os.listdir(headless / "plots") == ["stats.png"]  # the temporary file was renamed
    assert replay_buffer.plot.window is False


@pytest.mark.parametrize(
    "environ, window",
    [
        ({"MPLBACKEND": "Agg", "DISPLAY": ":0"}, False),
        ({"MPLBACKEND": "TkAgg"}, True),
        ({"MPLBACKEND": "module://matplotlib_inline.backend_inline"}, False),
        ({}, False),
        ({"DISPLAY": ":0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
    ],
)
def test_a_window_only_with_a_display_or_a_gui_backend(environ, window, monkeypatch):
    for name in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", "linux")
    assert bf._has_display() is window


def imported_packages(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


def test_buffer_py_imports_only_numpy_torch_gymnasium_and_lazily_matplotlib():
    tree = ast.parse(BUFFER_PY.read_text())
    top = imported_packages(tree.body)
    assert top - set(sys.stdlib_module_names) == {"numpy", "torch", "gymnasium"}
    inner = imported_packages(node for node in ast.walk(tree) if node not in tree.body)
    assert inner == {"matplotlib"}


def test_buffer_py_copied_alone_works_without_derl(tmp_path):
    (tmp_path / "buffer.py").write_text(BUFFER_PY.read_text())
    (tmp_path / "derl").mkdir()  # first on sys.path: importing derl now fails loudly
    (tmp_path / "derl" / "__init__.py").write_text("raise ImportError('derl was imported')\n")
    script = textwrap.dedent("""
        import sys
        import gymnasium as gym
        from torch.utils.data import DataLoader
        import buffer as bf
        env, replay_buffer = bf.wrap(gym.make("CartPole-v1"), plot=True, plot_path="p.png")
        replay_buffer.attach_enrichment(bf.DiscountedReturns(key="g"))
        for _ in range(3):
            bf.episode(env, lambda obs: env.action_space.sample())
        env.close()
        ds = bf.ReplayBufferDataset(replay_buffer, fields=("s", "a"), info_keys=["g"])
        batch = next(iter(DataLoader(ds, batch_size=10000)))
        assert batch.s.shape == (len(ds), 4), batch.s.shape
        assert not [m for m in sys.modules if m.split(".")[0] == "derl"]
        assert "matplotlib.pyplot" not in sys.modules  # headless: no pyplot
        try:
            import derl  # noqa: F401
        except ImportError as error:
            print("ok", error)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "Agg"
    # -I: no PYTHONPATH, no user site, no cwd on sys.path; the temp dir goes first by hand.
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{script}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok derl was imported"
    assert (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_reinforce_example_solves_cartpole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import reinforce_cartpole
    finally:
        sys.path.remove(str(ROOT / "examples"))
    result = reinforce_cartpole.main(["--seed", "0", "--plot"])
    assert result["solved"] and result["mean_return"] >= 475, result
    assert (tmp_path / "buffer_stats.png").exists()


def test_wrap_refuses_envs_that_reset_themselves():
    with pytest.raises(ValueError, match="does not autoreset"):
        bf.wrap(gym.wrappers.Autoreset(gym.make("CartPole-v1")))
    with pytest.raises(ValueError, match="not a vector env"):
        bf.wrap(gym.make_vec("CartPole-v1", 2))


@pytest.mark.parametrize("key", ["reward", "obs", "valid", "terminated"])
def test_an_enricher_key_may_not_be_a_storage_column(key):
    """An enricher writes its keys into the storage: `reward` would overwrite the rewards,
    `valid` would mark rows as transitions that are none."""
    env, replay_buffer = bf.wrap(Chain(length=3))
    with pytest.raises(ValueError, match="must be given and new"):
        replay_buffer.attach_enrichment(bf.DiscountedReturns(key=key))
    with pytest.raises(ValueError, match="identifiers without a leading '_'"):
        replay_buffer.attach_enrichment(bf.DiscountedReturns(key="my return"))


def test_step_environment_takes_num_steps_and_no_reset_after_the_last():
    env, replay_buffer = bf.wrap(Chain(length=3))
    steps = list(bf.step_environment(env, policy, num_steps=3))  # ends with the episode
    assert len(steps) == 3 and steps[-1].d
    assert replay_buffer.storage.num_rows == 4  # 3 steps and the final observation: no reset row
    steps = list(bf.step_environment(env, policy, num_steps=4, seed=1))
    assert [int(s.s[0]) for s in steps] == [0, 1, 2, 0]  # a reset after the episode's end


def test_an_enricher_that_raises_leaves_the_next_episode_counted_alone():
    class Broken(bf.Enricher):
        keys = ("x",)

        def __call__(self, episode):
            raise RuntimeError("a value function of the wrong shape")

    env, replay_buffer = bf.wrap(Chain(length=3))
    replay_buffer.attach_enrichment(Broken())
    with pytest.raises(RuntimeError, match="wrong shape"):
        bf.episode(env, policy)
    replay_buffer.enrichers.clear()
    bf.episode(env, policy)
    assert replay_buffer.episode_returns == [6.0, 6.0]
    assert replay_buffer.episode_lengths == [3, 3]


def test_a_plot_blocksize_below_one_is_refused():
    with pytest.raises(ValueError, match="blocksize must be >= 1, got 0"):
        bf.wrap(Chain(), plot=True, plot_blocksize=0)
