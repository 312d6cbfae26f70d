"""`derl <alg> --env-id ID [--flag value ...]`: flags generated from the algorithm's config."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from derl.env.families import family
from derl.errors import UsageError
from derl.factory import ALGS, get_alg, make_config


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message}; see `{self.prog} -h`")


def integer(text: str) -> int:
    """Integers, also written as 1e6 or 1_000_000."""
    value = float(text.replace("_", ""))
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, type_, default) -> None:
    flag = "--" + field.name.replace("_", "-")
    help_text = field.metadata.get("help", "")
    if type_ is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                            help=help_text)
        return
    converter = {int: integer, float: float}.get(type_, str)
    parser.add_argument(flag, type=converter, default=default, metavar=field.name.upper(),
                        help=f"{help_text} (default: %(default)s)")


def find_env_id(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--env-id" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--env-id="):
            return arg.split("=", 1)[1]
    return None


def alg_parser(alg: str, env_id: str | None) -> Parser:
    spec = get_alg(alg)
    fam = family(env_id) if env_id else "classic"
    preset = spec.presets[fam]
    parser = Parser(prog=f"derl {alg}", description=f"{spec.summary}. Defaults shown are the "
                    f"{fam} preset" + ("" if env_id else " (pass --env-id to see its preset)") + ".")
    hints = typing.get_type_hints(spec.config_cls)
    for field in dataclasses.fields(spec.config_cls):
        type_ = hints[field.name]
        type_ = next((t for t in typing.get_args(type_) if t is not type(None)), type_)
        add_field(parser, field, type_, preset.get(field.name, field.default))
    return parser


def explain_unknown(alg: str, argv: list[str]) -> None:
    """A flag of another algorithm gets a line saying whose it is."""
    known = {f.name for f in dataclasses.fields(get_alg(alg).config_cls)}
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=")[0].replace("-", "_").removeprefix("no_")
        if name in known:
            continue
        owners = [a for a, s in ALGS.items()
                  if name in {f.name for f in dataclasses.fields(s.config_cls)}]
        if owners:
            raise UsageError(f"{arg.split('=')[0]} is a flag of {', '.join(owners)}, not of {alg}; "
                             f"see `derl {alg} -h`")
        raise UsageError(f"unknown flag {arg.split('=')[0]} for {alg}; see `derl {alg} -h`")


def top_parser() -> Parser:
    parser = Parser(prog="derl", description="Train deep RL agents. `derl <alg> -h` shows an "
                    "algorithm's flags.", usage="derl <alg> --env-id ID [--flag value ...]")
    parser.add_argument("alg", choices=list(ALGS), help=", ".join(
        f"{name}: {spec.summary}" for name, spec in ALGS.items()))
    return parser


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        top_parser().print_help()
        return 0 if argv else 2
    alg, rest = argv[0], argv[1:]
    get_alg(alg)
    env_id = find_env_id(rest)
    parser = alg_parser(alg, env_id)
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        return 0
    if env_id is None:
        raise UsageError(f"--env-id is required, e.g. `derl {alg} --env-id CartPole-v1`")
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        explain_unknown(alg, unknown)
    config = make_config(alg, **vars(args))

    from derl.train import train  # imported late: `derl -h` and bad input stay fast

    result = train(config)
    print(f"done: {result.env_steps} env steps, mean return of the last 100 episodes "
          f"{result.mean_return:.2f}, logs in {result.logdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        print(f"derl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("derl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
