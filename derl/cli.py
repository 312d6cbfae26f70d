"""`derl <alg> --env-id ID [--flag value ...]`: flags generated from the algorithm's config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from derl.env.families import family
from derl.errors import DerlError, UsageError
from derl.factory import ALGS, get_alg, make_config, preset_values
from derl.factory.config import metadata


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage, and takes
    flags only as spelled: an abbreviation (`--conf`) would slip past `find_flag`, which reads
    --env-id and --config before parsing, and lose the file's values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message}; see `{self.prog} -h`")


def integer(text: str) -> int:
    """Integers, also written as 1e6 or 1_000_000."""
    value = float(text.replace("_", ""))
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def json_object(text: str) -> dict:
    """--env-kwargs '{"map_name": "8x8"}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {text}")
    return value


def add_field(
    parser: argparse.ArgumentParser, field: dataclasses.Field, type_, default, help_text, source
) -> None:
    flag = "--" + field.name.replace("_", "-")
    origin = f"; from the {source}" if source else ""
    origin = origin.replace("%", "%%")  # a file name with %: argparse %-formats help texts
    if type_ is bool:
        parser.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=default,
            help=f"{help_text} (default: {'on' if default else 'off'}{origin})",
        )
        return
    converters: dict[object, Callable[[str], Any]] = {int: integer, float: float, dict: json_object}
    converter = converters.get(type_, str)
    parser.add_argument(
        flag,
        type=converter,
        default=default,
        metavar=field.name.upper(),
        help=f"{help_text} (default: %(default)s{origin})",
    )


def find_flag(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv, before any parsing: the last one,
    as argparse takes it."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def alg_parser(
    alg: str, env_id: str | None, config_file: str | None = None, env_kwargs: str | None = None
) -> Parser:
    """The flags of `alg`, with the defaults the presets give `env_id` (made with `env_kwargs`,
    the flag's JSON text), each saying its layer."""
    spec = get_alg(alg)
    fam = family(env_id) if env_id else "classic"
    if env_id:
        try:
            kwargs = json_object(env_kwargs) if env_kwargs is not None else None
        except argparse.ArgumentTypeError:  # argparse says what is wrong with it, in one line
            kwargs = None
        preset, sources = preset_values(alg, env_id, config_file, env_kwargs=kwargs)
        preset = {**preset, "env_id": env_id}
    else:
        preset = spec.presets.get(fam, {})
        sources = dict.fromkeys(preset, "classic preset")
    parser = Parser(
        prog=f"derl {alg}",
        description=f"{spec.summary}. Defaults: the {fam} family preset, then the env's own "
        "preset, then --config FILE; each default says which one set it"
        + ("" if env_id else " (pass --env-id to see an env's presets)")
        + ".",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML or TOML file of hyperparameter: value, over the presets, under the flags",
    )
    hints = typing.get_type_hints(spec.config_cls)
    for field in dataclasses.fields(spec.config_cls):
        type_ = hints[field.name]
        type_ = next((t for t in typing.get_args(type_) if t is not type(None)), type_)
        help_text = metadata(spec.config_cls, field.name).get("help", "")
        declared = (
            field.default_factory()  # a mutable default (env_kwargs' {})
            if field.default is dataclasses.MISSING
            and field.default_factory is not dataclasses.MISSING
            else field.default
        )
        default = preset.get(field.name, declared)
        add_field(parser, field, type_, default, help_text, sources.get(field.name, ""))
    return parser


def explain_unknown(alg: str, argv: list[str]) -> typing.NoReturn:
    """Refuses what `derl ALG` does not take; a flag of another algorithm gets a line saying
    whose it is. (Nothing is ignored: a typo such as `-lr 0.1` would train with the default.)"""
    known = {f.name for f in dataclasses.fields(get_alg(alg).config_cls)}
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=")[0].replace("-", "_").removeprefix("no_")
        if name in known:
            continue
        owners = [
            a for a, s in ALGS.items() if name in {f.name for f in dataclasses.fields(s.config_cls)}
        ]
        if owners:
            raise UsageError(
                f"{arg.split('=')[0]} is a flag of {', '.join(owners)}, not of {alg}; "
                f"see `derl {alg} -h`"
            )
        raise UsageError(f"unknown flag {arg.split('=')[0]} for {alg}; see `derl {alg} -h`")
    raise UsageError(f"unrecognized arguments: {' '.join(argv)}; see `derl {alg} -h`")


COMMANDS = {
    "resume": "continue a run from its newest good checkpoint: derl resume LOGDIR",
    "eval": "evaluate a trained agent: derl eval LOGDIR_OR_CHECKPOINT [--video out.mp4]",
    "plot": "learning curves: derl plot LOGDIR [LOGDIR ...] --out curves.png",
}


def top_parser() -> Parser:
    parser = Parser(
        prog="derl",
        description="Train deep RL agents. `derl <alg> -h` shows an algorithm's flags.",
        usage="derl <alg> --env-id ID [--flag value ...]\n       derl {resume,eval,plot} ...",
    )
    parser.add_argument(
        "command",
        choices=[*ALGS, *COMMANDS],
        help="; ".join(
            [f"{name}: {spec.summary}" for name, spec in ALGS.items()]
            + [f"{name}: {text}" for name, text in COMMANDS.items()]
        ),
    )
    parser.add_argument("-V", "--version", action="store_true", help="print derl's version")
    return parser


def check_output(flag: str, path: str, suffixes: tuple[str, ...]) -> None:
    """An output file named on the command line, checked before any work: the suffix picks its
    format, and its directory must exist (a typo should not create directories)."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        choices = f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
        raise UsageError(f"{flag} {path}: the file must end in {choices}")
    if out.is_dir():
        raise UsageError(f"{flag} {path} is a directory")
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: {out.parent} {what}")
    try:  # a file can be made there (permissions, a read-only or pseudo file system): try one
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".derl-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {out.parent} ({exc.strerror})") from None


def resume_command(argv: list[str]) -> int:
    parser = Parser(prog="derl resume", description=COMMANDS["resume"])
    parser.add_argument("logdir")
    parser.add_argument(
        "--device",
        help="continue on this device instead of the run's own: cpu, cuda[:N] or auto (a GPU "
        "run on a machine without one: --device cpu)",
    )
    parser.add_argument(
        "--buffer-device",
        help="move the replay buffer (DQN, Rainbow, SAC, TD3): cpu, cuda[:N] or auto",
    )
    parser.add_argument(
        "--checkpoint-minutes",
        type=float,
        help="also write a checkpoint every this many minutes of wall time (0: by steps only), "
        "in place of the run's own setting",
    )
    args = parser.parse_args(argv)
    from derl import distributed
    from derl.train import resume

    changed = (
        ("--device", args.device),
        ("--buffer-device", args.buffer_device),
        ("--checkpoint-minutes", args.checkpoint_minutes),
    )
    moved = [arg for flag, value in changed if value is not None for arg in (flag, str(value))]
    recorded = recorded_nproc(Path(args.logdir))
    if recorded > 1 and not distributed.launched():  # a data-parallel run: start its processes
        return distributed.launch(recorded, ["resume", args.logdir, *moved])
    return report(
        resume(
            args.logdir,
            device=args.device,
            buffer_device=args.buffer_device,
            checkpoint_minutes=args.checkpoint_minutes,
        )
    )


def recorded_nproc(logdir: Path) -> int:
    """How many processes trained the run in `logdir` (1 when config.json cannot tell)."""
    try:
        nproc = json.loads((logdir / "config.json").read_text()).get("nproc", 1)
    except (OSError, ValueError, AttributeError):
        return 1
    return nproc if isinstance(nproc, int) else 1


def eval_command(argv: list[str]) -> int:
    parser = Parser(prog="derl eval", description=COMMANDS["eval"])
    parser.add_argument("path", help="a logdir (its newest checkpoint) or a checkpoint file")
    parser.add_argument("--episodes", type=integer, default=10, help="episodes to run (default 10)")
    # Deterministic by default, as derl.load(...).act, derl.evaluate.evaluate and training's own
    # evaluations (and SB3's evaluate_policy): the numbers agree wherever they come from.
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument(
        "--stochastic",
        dest="deterministic",
        action="store_false",
        help="sample actions from the policy instead of taking the most likely one",
    )
    actions.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        help="take the most likely action (the default)",
    )
    parser.set_defaults(deterministic=True)
    parser.add_argument("--seed", type=integer, default=10_000, help="seed of the eval env")
    parser.add_argument("--video", help="film the first evaluated episode to this .mp4 or .gif")
    parser.add_argument(
        "--video-steps",
        type=integer,
        default=5000,
        help="film at most this many steps (default 5000)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        raise UsageError("--episodes must be >= 1")
    if not 0 <= args.seed < 2**31:
        raise UsageError(f"--seed must be in [0, {2**31 - 1}], got {args.seed}")
    if args.video_steps < 1:
        raise UsageError(f"--video-steps must be >= 1, got {args.video_steps}")
    if args.device.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    from derl.train import resolve_device  # refuses cuda without a CUDA device

    resolve_device(args.device)
    from derl.agent import load
    from derl.evaluate import VIDEO_SUFFIXES, evaluate, record_video

    if args.video:
        check_output("--video", args.video, VIDEO_SUFFIXES)
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
        # pygame's frames (classic control, box2d) need no display; without this SDL looks for
        # one and, on a headless machine, prints an XDG_RUNTIME_DIR error line on every video.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    agent = load(args.path, device=args.device)
    returns = evaluate(agent, args.episodes, args.seed, args.deterministic)
    # min and max: one bad episode (a cheetah on its back) hides in a wide std otherwise
    print(
        f"{agent.config.env_id}: mean return {returns.mean():.2f} +/- {returns.std():.2f} "
        f"over {len(returns)} episodes (min {returns.min():.2f}, max {returns.max():.2f})"
    )
    if args.video:
        episode_return = record_video(
            agent, args.video, args.seed, args.deterministic, args.video_steps
        )
        what = (
            f"one episode (return {episode_return:.2f})"
            if episode_return == episode_return
            else f"the first {args.video_steps} steps of an episode"
        )
        print(f"video of {what} written to {args.video}")
    return 0


def plot_command(argv: list[str]) -> int:
    parser = Parser(prog="derl plot", description=COMMANDS["plot"])
    parser.add_argument("logdirs", nargs="+", help="runs, or folders holding runs")
    parser.add_argument(
        "--out", default="curves.png", help="PNG, PDF or SVG to write (default curves.png)"
    )
    parser.add_argument("--tag", default="episode/return", help="scalar to plot")
    parser.add_argument(
        "--smoothing",
        type=integer,
        default=20,
        help="trailing mean over this many points (default 20)",
    )
    args = parser.parse_args(argv)
    from derl.plot import PLOT_SUFFIXES, plot

    check_output("--out", args.out, PLOT_SUFFIXES)
    print(f"wrote {plot(args.logdirs, args.out, args.tag, args.smoothing)}")
    return 0


def report(result) -> int:
    from derl import distributed

    if not distributed.is_main():  # rank 0 reports for the run
        return 130 if result.interrupted else 0
    verb = "stopped at" if result.interrupted else "done:"
    returns = (
        f"mean return of the last 100 episodes {result.mean_return:.2f}"
        if result.recent_returns
        else "no episode finished yet"
    )
    print(f"{verb} {result.env_steps} env steps, {returns}, logs in {result.logdir}")
    best = result.logdir / "best.pt"
    if best.exists():
        print(f"best evaluated agent: {best} (derl eval {best})")
    if result.interrupted:
        print(f"continue with: derl resume {result.logdir}")
    return 130 if result.interrupted else 0


def run(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        top_parser().print_help()
        return 0
    if not argv:
        raise UsageError(
            "name an algorithm or a command, e.g. `derl ppo --env-id CartPole-v1`; see `derl -h`"
        )
    if argv[0] in ("-V", "--version"):
        import derl

        print(f"derl {derl.__version__}")
        return 0
    alg, rest = argv[0], argv[1:]
    commands = {"resume": resume_command, "eval": eval_command, "plot": plot_command}
    if alg in commands:
        return commands[alg](rest)
    get_alg(alg)
    env_id, config_file = find_flag(rest, "--env-id"), find_flag(rest, "--config")
    parser = alg_parser(alg, env_id, config_file, find_flag(rest, "--env-kwargs"))
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        return 0
    if env_id is None:
        raise UsageError(f"--env-id is required, e.g. `derl {alg} --env-id CartPole-v1`")
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        explain_unknown(alg, unknown)
    values = vars(args)
    config = make_config(alg, config_file=values.pop("config"), **values)

    from derl import distributed  # imported late: `derl -h` and bad input stay fast
    from derl.train import restarted_logdir, resume, train

    if config.nproc > 1 and not distributed.launched():
        return launch(alg, config, rest)
    if distributed.launched() and distributed.restart_count() > 0:
        # torchrun restarted the group after a failure (--max-restarts): continue the run
        # the first start began, from its newest checkpoint.
        logdir = restarted_logdir(alg, config)
        if logdir is not None:
            return report(resume(logdir))
    return report(train(config))


def launch(alg: str, config, argv: list[str]) -> int:
    """`--nproc N`: what can be refused is, here, before N processes start; they share one
    logdir, named here."""
    from derl import distributed
    from derl.train import check_new_logdir, default_logdir, resolve_device

    distributed.backend_for(config.dist_backend, resolve_device(config.device), config.nproc)
    logdir = Path(config.logdir) if config.logdir else default_logdir(alg, config)
    check_new_logdir(logdir)
    return distributed.launch(config.nproc, [alg, *argv, "--logdir", str(logdir)], config.threads)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else list(argv))
    except DerlError as exc:  # bad input 2, non-finite values 3, a checkpoint not written 4
        if printed_here(exc):
            print(f"derl: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("derl: interrupted", file=sys.stderr)
        return 130


def printed_here(exc: DerlError) -> bool:
    """One line per error for a data-parallel run too: an error every process raises is
    printed by one of them (rank 0, or the rank that found it)."""
    if "RANK" not in os.environ:  # not started by torchrun: imports nothing distributed
        return True
    from derl import distributed

    if isinstance(exc, distributed.SharedError):
        return exc.printed_here
    if distributed.world_size() == 1:  # refused before joining: every process refused it
        return os.environ.get("RANK") == "0"
    return True


if __name__ == "__main__":
    sys.exit(main())
