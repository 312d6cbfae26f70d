"""`derl plot` on runs with too little data, bad flags and failed writes: one line, exit 2 (or
one warning line per run left out), and the curves drawn only where every seed has data."""

import errno
import json
import os
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from derl.cli import main
from derl.errors import UsageError
from derl.plot import plot

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run(path, points, seed=0, tag="episode/return", **config):
    """A run as `export_scalars` leaves it: config.json and the tag's step,value CSV (a header
    alone when `points` is empty: a run exported before it logged anything)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(
        json.dumps({"alg": "ppo", "env_id": "CartPole-v1", "seed": seed, **config})
    )
    lines = ["step,value", *(f"{s},{v}" for s, v in points)]
    (path / f"{tag.replace('/', '-')}.csv").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def drawn(monkeypatch):
    """The (x, y) of every curve plot() draws, in the order drawn, taken as it saves."""
    curves = []

    def savefig(fig, fname, **kwargs):
        curves.extend(line.get_data() for ax in fig.axes for line in ax.lines)
        open(fname, "wb").close()

    monkeypatch.setattr(Figure, "savefig", savefig)
    return curves


def one_line(text):
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text


def test_a_run_with_a_header_alone_is_left_out_with_one_warning(tmp_path, capsys):
    run(tmp_path / "ok", [(100, 1.0), (200, 2.0)])
    empty = run(tmp_path / "killed", [], seed=1)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 0
    err = one_line(capsys.readouterr().err)
    assert err.startswith("derl: warning: ") and str(empty) in err and "left out" in err


def test_a_run_with_a_damaged_config_is_left_out_with_one_warning(tmp_path, capsys):
    run(tmp_path / "ok", [(100, 1.0), (200, 2.0)])
    damaged = run(tmp_path / "damaged", [(100, 1.0)], seed=1)
    (damaged / "config.json").write_text("{}")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 0
    err = one_line(capsys.readouterr().err)
    assert err.startswith("derl: warning: ") and str(damaged) in err and "left out" in err
    assert (tmp_path / "c.png").exists()
    assert main(["plot", str(damaged), "--out", str(tmp_path / "d.png")]) == 2  # it alone
    assert "is damaged" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("what", ["header alone", "no csv, no events"])
def test_runs_without_any_data_are_one_line_and_exit_2(tmp_path, capsys, what):
    for seed in (0, 1):
        path = run(tmp_path / f"s{seed}", [], seed=seed)
        if what == "no csv, no events":
            (path / "episode-return.csv").unlink()
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "has logged 'episode/return'" in err and not (tmp_path / "c.png").exists()


def test_a_damaged_csv_is_one_line_and_exit_2(tmp_path, capsys):
    path = run(tmp_path / "r", [(100, 1.0)])
    (path / "episode-return.csv").write_text("step,value\n100,oops\n")
    assert main(["plot", str(path), "--out", str(tmp_path / "c.png")]) == 2
    assert "episode-return.csv is damaged" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("smoothing", ["-5", "0"])
def test_smoothing_below_one_point_is_refused(tmp_path, capsys, smoothing):
    path = run(tmp_path / "r", [(100, 1.0), (200, 2.0)])
    argv = ["plot", str(path), "--out", str(tmp_path / "c.png"), "--smoothing", smoothing]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert f"--smoothing {smoothing}" in err and "1 or more" in err
    assert not (tmp_path / "c.png").exists()


def test_seeds_are_averaged_only_over_the_steps_all_of_them_reached(tmp_path, drawn):
    run(tmp_path / "s0", [(s, 0.0) for s in range(0, 1001, 100)], seed=0)
    run(tmp_path / "s1", [(s, 1.0) for s in range(500, 1501, 100)], seed=1)
    plot([tmp_path], tmp_path / "c.png", smoothing=1)
    ((x, y),) = drawn
    # From the later start to the earlier end: no seed's edge value held over steps it lacks.
    assert x[0] == 500 and x[-1] == 1000 and np.allclose(y, 0.5)


def test_seeds_that_share_no_steps_are_one_line_and_exit_2(tmp_path, capsys):
    run(tmp_path / "s0", [(100, 0.0), (200, 0.0)], seed=0)
    run(tmp_path / "s1", [(300, 1.0), (400, 1.0)], seed=1)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("derl: warning: ") == 1 and "share no steps" in err, err
    assert err.count("derl: error: ") == 1 and "Traceback" not in err, err


def test_a_failed_write_closes_the_figure(tmp_path, monkeypatch):
    run(tmp_path / "r", [(100, 1.0), (200, 2.0)])

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", disk_full)
    plt.close("all")
    with pytest.raises(UsageError, match="No space left"):
        plot([tmp_path], tmp_path / "c.png")
    assert plt.get_fignums() == []  # pyplot would keep it (and its memory) until closed


def test_filming_closes_the_env_when_the_policy_fails(monkeypatch):
    """A renderer (MuJoCo's EGL context) must not outlive a film that failed midway."""
    import gymnasium as gym

    from derl import evaluate

    closed = []

    class Tracked(gym.Wrapper):
        def close(self):
            closed.append(True)
            super().close()

    made = lambda *args: Tracked(gym.make("CartPole-v1", render_mode="rgb_array"))  # noqa: E731
    monkeypatch.setattr(evaluate, "make_single", made)

    class Broken:
        config, env_fn = SimpleNamespace(env_id="CartPole-v1", env_kwargs={}), None
        policy = torch.nn.Linear(1, 1)

        def act(self, obs, deterministic):
            raise RuntimeError("the policy failed")

    with pytest.raises(RuntimeError, match="the policy failed"):
        evaluate.film_episode(Broken())
    assert closed == [True]


def test_a_run_with_one_point_is_drawn_as_a_dot(tmp_path, monkeypatch):
    """A line through one point has no length and would not show in the PNG."""
    markers = []

    def savefig(fig, fname, **kwargs):
        markers.extend(line.get_marker() for ax in fig.axes for line in ax.lines)
        open(fname, "wb").close()

    monkeypatch.setattr(Figure, "savefig", savefig)
    run(tmp_path / "r", [(1000, 5.0)])
    plot([tmp_path], tmp_path / "c.png", smoothing=1)
    assert markers == ["o"]


def test_an_export_averages_a_long_curve_down_to_max_points(tmp_path):
    from derl.plot import export_scalars, read_scalars

    long = run(tmp_path / "long", [(s, s % 2) for s in range(1, 1001)])  # 0/1 alternating
    out = export_scalars(long, tmp_path / "kept", max_points=100)
    steps, values = read_scalars(out, "episode/return")
    assert len(steps) == 100 and steps[-1] == 1000 and steps[0] == 10
    assert np.allclose(values, 0.5)  # each run of 10 consecutive points averaged
    steps, _ = read_scalars(export_scalars(long, tmp_path / "all"), "episode/return")
    assert len(steps) == 1000
