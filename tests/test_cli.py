"""The `derl` command, run in-process on tiny budgets, and its answers to bad input."""

import json

import pytest
import torch
from conftest import scalars

from derl.cli import main

TINY = {
    "CartPole-v1": ["--num-train-steps", "2048"],
    "BreakoutNoFrameskip-v4": [
        "--num-train-steps",
        "256",
        "--num-envs",
        "2",
        "--num-runner-steps",
        "64",
    ],
    "HalfCheetah-v5": [
        "--num-train-steps",
        "512",
        "--num-runner-steps",
        "256",
        "--num-minibatches",
        "4",
        "--num-epochs",
        "2",
    ],
}


@pytest.mark.parametrize("env_id", list(TINY))
def test_ppo_runs_and_logs_on_the_env_step_axis(env_id, tmp_path):
    logdir = tmp_path / "run"
    assert (
        main(["ppo", "--env-id", env_id, "--logdir", str(logdir), "--seed", "1", *TINY[env_id]])
        == 0
    )
    config = json.loads((logdir / "config.json").read_text())
    assert config["alg"] == "ppo" and config["env_id"] == env_id and config["seed"] == 1
    tags = scalars(logdir)
    for tag in (
        "train/policy_loss",
        "train/value_loss",
        "train/entropy",
        "train/approx_kl",
        "train/clip_fraction",
        "train/explained_variance",
        "train/grad_norm",
        "train/lr",
        "time/sps",
    ):
        assert tag in tags, tag
    steps = [event.step for event in tags["train/policy_loss"]]
    num_train_steps = int(TINY[env_id][1])
    assert steps == sorted(steps) and steps[-1] >= num_train_steps  # env steps, not updates
    if env_id == "CartPole-v1":
        assert "episode/return" in tags and "episode/length" in tags


def test_a2c_runs(tmp_path, capsys):
    assert (
        main(
            [
                "a2c",
                "--env-id",
                "CartPole-v1",
                "--logdir",
                str(tmp_path / "a"),
                "--num-train-steps",
                "1000",
            ]
        )
        == 0
    )
    assert "train/explained_variance" in scalars(tmp_path / "a")
    out, err = capsys.readouterr()
    assert "mean return of the last 100 episodes" in out and "rollouts are" not in err
    # Pendulum's episodes last 200 steps: none ends in 128, and the summary says so (not nan).
    argv = ["a2c", "--env-id", "Pendulum-v1", "--logdir", str(tmp_path / "p")]
    assert main([*argv, "--num-train-steps", "80"]) == 0
    out, err = capsys.readouterr()
    assert "128 env steps, no episode finished yet" in out
    # Whole rollouts: a line says why 128 steps were taken, not the 80 asked for.
    assert "rollouts are 64 env steps (--num-envs 8 x --num-runner-steps 8), so" in err, err


def test_help_shows_the_presets_and_where_each_default_comes_from(capsys):
    assert main(["ppo", "--env-id", "HalfCheetah-v5", "-h"]) == 0
    text = "".join(capsys.readouterr().out.split())
    assert "mujocofamilypreset" in text and "(default:256;fromtheHalfCheetah-v5preset" in text
    assert main(["ppo", "--env-id", "BreakoutNoFrameskip-v4", "-h"]) == 0
    text = "".join(capsys.readouterr().out.split())
    assert "atarifamilypreset" in text and "(default:BreakoutNoFrameskip-v4)" in text
    assert "README)(default:0;fromtheataripreset)" in text  # --threads: one per core
    assert main(["ppo", "--env-id", "CartPole-v1", "-h"]) == 0
    assert "README)(default:1)" in "".join(capsys.readouterr().out.split())


BAD = [
    (["ppo", "--env-id", "CartPol-v1"], "CartPole-v1"),
    (["ppo", "--env-id", "CartPole-v1", "--target-update-period", "5"], "flag of dqn, rainbow"),
    (["ppo", "--env-id", "CartPole-v1", "--no-such-flag", "5"], "unknown flag"),
    (["a2c", "--env-id", "CartPole-v1", "--num-epochs", "5"], "flag of ppo"),
    (["ppo", "--env-id", "CartPole-v1", "--lr", "-1"], "--lr must be > 0"),
    (["ppo", "--env-id", "CartPole-v1", "--num-minibatches", "7"], "does not divide"),
    (["ppo", "--env-id", "CartPole-v1", "--num-envs", "abc"], "invalid integer value"),
    (["ppo", "--env-id", "CartPole-v1", "--device", "tpu"], "--device"),
    (["td4", "--env-id", "CartPole-v1"], "unknown algorithm"),
    (["ppo"], "--env-id is required"),
    (["ppo", "--env-id", "CartPole-v1", "--threads", "-1"], "--threads must be >= 0"),
    (["dqn", "--env-id", "CartPole-v1", "--buffer-device", "tpu"], "--buffer-device must be"),
    # nothing is ignored: a typo would otherwise train with the default
    (["ppo", "--env-id", "CartPole-v1", "-lr", "0.1"], "unrecognized arguments: -lr 0.1"),
    (["ppo", "--env-id", "CartPole-v1", "--num-envs", "4", "8"], "unrecognized arguments: 8"),
    (["ppo", "--env-id", "CartPole-v1", "--no-lr"], "unrecognized arguments: --no-lr"),
    (["ppo", "--env-id", "CartPole-v1", "--conf", "a.yaml"], "unknown flag --conf"),  # no abbrev
    (["ppo", "--env-id", "CartPole-v1", "--seed", "-1"], "--seed must be in [0, 2147483647]"),
    (
        ["ppo", "--env-id", "CartPole-v1", "--env-kwargs", '{"render_mode": "human"}'],
        "render_mode is derl's to set",
    ),
    (["ppo", "--env-id", "CartPole-v1", "--lr", "nan"], "--lr must be a finite number"),
    (  # the preprocessing would hand the agent the screen instead
        ["ppo", "--env-id", "ALE/Breakout-v5", "--env-kwargs", '{"obs_type": "ram"}'],
        "with obs_type='ram': derl's Atari preprocessing works on the screen",
    ),
]
BAD.append((["rainbow", "--env-id", "Pendulum-v1"], "rainbow needs a discrete action space"))
if not torch.cuda.is_available():
    BAD.append((["sac", "--env-id", "Pendulum-v1", "--buffer-device", "cuda"], "no CUDA device"))


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    logdir = tmp_path / "never"
    assert main([*argv, "--logdir", str(logdir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not logdir.exists()


def test_no_command_an_empty_logdir_and_a_config_for_another_env_are_one_line(tmp_path, capsys):
    other_env = tmp_path / "acrobot.yaml"
    other_env.write_text("env_id: Acrobot-v1\nlr: 0.001\n")
    cases = [
        ([], "name an algorithm or a command"),
        (["ppo", "--env-id", "CartPole-v1", "--logdir", ""], "--logdir is empty"),
        (
            ["ppo", "--env-id", "CartPole-v1", "--config", str(other_env)],
            "names env_id Acrobot-v1, but the run's is CartPole-v1",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured
        assert message in captured.err


def test_version_is_printed(capsys):
    import derl

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"derl {derl.__version__}\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seed", "-1"], "--seed must be in [0, 2147483647], got -1"),
        (["--video-steps", "0"], "--video-steps must be >= 1, got 0"),
        (["--video", "/proc/out.mp4"], "--video /proc/out.mp4: cannot write in /proc"),
    ],
)
def test_bad_eval_input_is_one_line_before_loading(flags, message, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nowhere"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_missing_extra_names_the_install_command(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ale(name, *args, **kwargs):
        if name == "ale_py":
            raise ImportError("no ale_py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ale)
    monkeypatch.setattr("importlib.import_module", lambda name: no_ale(name))
    assert main(["ppo", "--env-id", "PongNoFrameskip-v4", "--logdir", str(tmp_path / "x")]) == 2
    assert 'pip install "derl[atari]"' in capsys.readouterr().err


def test_existing_run_is_never_overwritten(tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--logdir", str(logdir), "--num-train-steps", "256"]
    assert main(argv) == 0
    before = (logdir / "config.json").read_text()
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (logdir / "config.json").read_text() == before


def test_a_runs_files_without_its_config_are_never_overwritten(tmp_path, capsys):
    """config.json deleted, the checkpoints and events left: a new run there is refused, and
    the files stay as they were."""
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--logdir", str(logdir), "--num-train-steps", "256"]
    assert main(argv) == 0
    (logdir / "config.json").unlink()
    files = {p: p.read_bytes() for p in logdir.rglob("*") if p.is_file()}
    assert any(p.suffix == ".pt" for p in files)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds files of an earlier run" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in logdir.rglob("*") if p.is_file()} == files


def test_eval_is_deterministic_by_default_as_the_python_api(tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "Pendulum-v1", "--num-train-steps", "256", "--num-envs", "1"]
    argv += ["--num-runner-steps", "64", "--num-epochs", "1", "--num-minibatches", "1"]
    assert main([*argv, "--logdir", str(logdir)]) == 0
    capsys.readouterr()

    def mean(*flags):
        assert main(["eval", str(logdir), "--episodes", "2", *flags]) == 0
        return capsys.readouterr().out

    from derl.agent import load
    from derl.evaluate import evaluate

    expected = evaluate(load(logdir), 2)  # the Python API: deterministic
    assert f"{expected.mean():.2f}" in mean()
    assert mean() == mean("--deterministic")
    assert mean("--stochastic") != mean()  # Gaussian samples change the returns


def test_resume_can_move_a_run_to_another_device(tmp_path, capsys):
    """`derl resume --device/--buffer-device`: a run trained on a GPU continues on a laptop.
    Here CPU to CPU (the move to CUDA is refused in one line where there is none)."""
    logdir = tmp_path / "run"
    argv = ["sac", "--env-id", "Pendulum-v1", "--device", "cpu", "--logdir", str(logdir)]
    flags = ["--num-train-steps", "400", "--checkpoint-every", "200", "--learning-starts", "100"]
    assert main([*argv, *flags]) == 0
    sorted((logdir / "checkpoints").glob("step-*.pt"))[-1].unlink()
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main(["resume", str(logdir), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--device cpu" in err and "Traceback" not in err
    assert main(["resume", str(logdir), "--device", "cpu", "--buffer-device", "cpu"]) == 0
    assert json.loads((logdir / "config.json").read_text())["device"] == "cpu"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--buffer-device", "cpu"], "--buffer-device is for the replay buffer"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    ],
)
def test_resume_refuses_a_device_it_cannot_use(extra, message, tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--logdir", str(logdir), "--num-train-steps", "256"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["resume", str(logdir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
