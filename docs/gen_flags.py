"""The generated parts of the docs, rendered from derl's code so that they cannot go stale.

An mkdocs hook (`hooks:` in mkdocs.yml): each marker below, an HTML comment on a line of its
own in a page, is replaced by what its function renders when the site is built.

    <!-- derl:algorithms -->      the algorithms: command, config class, summary
    <!-- derl:flags -->           every algorithm's flags: one table per algorithm
    <!-- derl:commands -->        `derl -h` and the subcommands' help (resume, eval, plot, ...)
    <!-- derl:family-presets -->  the atari / mujoco / classic presets of every algorithm
    <!-- derl:env-presets -->     the per-env presets of derl/factory/presets.toml
    <!-- derl:preset-coverage --> which env ids have an env preset for which algorithm
    <!-- derl:readme TITLE -->    the README's section `## TITLE...`, headings one level up
    <!-- derl:results NAME -->    the table of results/NAME/README.md (the benchmark suite's)
    <!-- derl:api-if-exists derl.module -->
                                  `::: derl.module` (an API reference) once that module exists

`python docs/gen_flags.py` prints the flags page's tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import os
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's derl, also where another one is installed
    sys.path.insert(0, str(ROOT))

from derl.cli import COMMANDS, main  # noqa: E402
from derl.factory import ALGS, FAMILIES  # noqa: E402
from derl.factory.config import metadata  # noqa: E402


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def cell(text: object) -> str:
    """Text that stays inside one cell of a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def prose(text: str) -> str:
    """Help text as Markdown shows it: `<env>` is text, not an HTML tag."""
    return html.escape(text, quote=False)


def field_type(config_cls: type, name: str) -> type:
    hint = typing.get_type_hints(config_cls)[name]
    return next((t for t in typing.get_args(hint) if t is not type(None)), hint)


def show(value: object) -> str:
    """A value as the command line spells it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"`{value:_}`"
    return f"`{value}`"


def as_flag(name: str, value: object) -> str:
    """`--name value` as a command line takes it (`--name` / `--no-name` for on/off)."""
    if isinstance(value, bool):
        return f"`{flag(name) if value else '--no-' + name.replace('_', '-')}`"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"`{flag(name)} {value:_}`"
    return f"`{flag(name)} {value}`"


def values_text(type_: type, meta: dict) -> str:
    """What a flag takes: its type and the bounds `Config.validate` checks."""
    if type_ is bool:
        return "on / off"
    if "choices" in meta:
        return " or ".join(f"`{c}`" for c in meta["choices"])
    if meta.get("device"):
        return "`auto`, `cpu` or `cuda[:N]`"
    if meta.get("sizes"):
        return "layer sizes, e.g. `64,64`"
    text = {int: "int", float: "float"}.get(type_, "text")
    low, high = meta.get("at_least"), meta.get("at_most")
    if "above" in meta:
        text += f" > {meta['above']}" + (f", <= {high}" if high is not None else "")
    elif "below" in meta:
        text += f" < {meta['below']}" + (f", >= {low}" if low is not None else "")
    elif low is not None and high is not None:
        text += f" in [{low}, {high}]"
    elif low is not None:
        text += f" >= {low}"
    elif high is not None:
        text += f" <= {high}"
    return text


def flags_table(alg: str) -> str:
    """One row per config field of `alg`: flag, values, default, family presets, help."""
    spec = ALGS[alg]
    families = [f for f in FAMILIES if f in spec.presets]
    head = ["flag", "values", "default", *families, "meaning"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for field in dataclasses.fields(spec.config_cls):
        meta = metadata(spec.config_cls, field.name)
        type_ = field_type(spec.config_cls, field.name)
        name = flag(field.name)
        if type_ is bool:
            name += f" / --no-{field.name.replace('_', '-')}"
        presets = [
            show(spec.presets[f][field.name]) if field.name in spec.presets[f] else ""
            for f in families
        ]
        row = [
            f"`{name}`",
            values_text(type_, meta),
            show(field.default),
            *presets,
            prose(meta.get("help", "")),
        ]
        rows.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(rows)


def flags_markdown() -> str:
    """A section per algorithm, each with the table of its flags."""
    parts = []
    for alg, spec in ALGS.items():
        families = ", ".join(f for f in FAMILIES if f in spec.presets)
        parts.append(
            f"### derl {alg}\n\n{spec.summary} (`{spec.config_cls.__name__}`; family presets: "
            f"{families}).\n\n{flags_table(alg)}\n"
        )
    return "\n".join(parts)


def algorithms_markdown() -> str:
    rows = ["| command | config | family presets | what it is |", "|---|---|---|---|"]
    for alg, spec in ALGS.items():
        families = ", ".join(f for f in FAMILIES if f in spec.presets)
        rows.append(
            f"| `derl {alg}` | `{spec.config_cls.__name__}` | {families} | {spec.summary} |"
        )
    return "\n".join(rows)


def help_text(argv: list[str]) -> str:
    """What `derl ARGV` prints, at a fixed width."""
    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(argv)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue().rstrip()


def commands_markdown() -> str:
    """`derl -h`, then each subcommand's `-h`."""
    parts = [f"### derl -h\n\n```text\n{help_text(['-h'])}\n```\n"]
    for command in COMMANDS:
        text = help_text([command, "-h"])
        parts.append(f"### derl {command}\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def family_presets_markdown() -> str:
    """Per algorithm: the values each family preset sets (the rest keep the config default)."""
    parts = []
    for alg, spec in ALGS.items():
        families = [f for f in FAMILIES if f in spec.presets]
        names = [
            f.name
            for f in dataclasses.fields(spec.config_cls)
            if any(f.name in spec.presets[fam] for fam in families)
        ]
        rows = [
            "| flag | default | " + " | ".join(families) + " |",
            "|" + "---|" * (2 + len(families)),
        ]
        for name in names:
            default = next(f.default for f in dataclasses.fields(spec.config_cls) if f.name == name)
            values = [
                show(spec.presets[fam][name]) if name in spec.presets[fam] else ""
                for fam in families
            ]
            rows.append("| " + " | ".join([f"`{flag(name)}`", show(default), *values]) + " |")
        parts.append(f"### {alg}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def env_presets_markdown() -> str:
    """Per algorithm, each env preset: its source and what it changes from the family preset."""
    from derl.env.families import family
    from derl.factory.presets import env_presets

    parts = []
    for alg, tables in env_presets().items():
        spec = ALGS[alg]
        rows = ["| env id | source | changes from the family preset |", "|---|---|---|"]
        for env_id, table in tables.items():
            fam = family(env_id)
            base = {f.name: f.default for f in dataclasses.fields(spec.config_cls)}
            base.update(spec.presets.get(fam, {}))
            changes = [
                as_flag(k, v) for k, v in table.items() if k != "source" and base.get(k) != v
            ]
            source = table.get("source", "")
            rows.append(
                f"| `{env_id}` ({fam}) | {cell(source)} | {cell(', '.join(changes) or 'none')} |"
            )
        parts.append(f"### {alg}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def preset_coverage_markdown() -> str:
    """One row per env id that has an env preset, one column per algorithm: which have one."""
    from derl.factory.presets import env_presets

    tables = env_presets()
    algs = list(tables)
    env_ids = list(dict.fromkeys(env_id for alg in algs for env_id in tables[alg]))
    rows = ["| env id | " + " | ".join(algs) + " |", "|---|" + "---|" * len(algs)]
    for env_id in env_ids:
        marks = ["yes" if env_id in tables[alg] else "" for alg in algs]
        rows.append(f"| `{env_id}` | " + " | ".join(marks) + " |")
    return "\n".join(rows) + "\n"


def readme_section(match: re.Match) -> str:
    """The body of the README's section whose heading starts with the title, without the
    heading; its subsections become sections of the page."""
    title = match.group(1).strip()
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"^## {re.escape(title)}.*$", text, flags=re.M)
    if found is None:
        raise ValueError(f"README.md has no section '## {title}'")
    end = text.find("\n## ", found.end())
    body = text[found.end() : end if end >= 0 else None].strip("\n")
    return re.sub(r"^### ", "## ", body, flags=re.M)


def results_table(match: re.Match) -> str:
    """The first table of a results README that the benchmark suite's `report` wrote, with the
    paragraph that explains its columns."""
    path = ROOT / "results" / match.group(1) / "README.md"
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    intro = next((line for line in lines[:start] if line.strip() and not line.startswith("#")), "")
    return "\n".join([intro, "", *lines[start:end]])


def module_exists(name: str) -> bool:
    """Whether `derl.x.y` is a module or package of this checkout (read without importing)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def api_if_exists(match: re.Match) -> str:
    name = match.group(1)
    return f"::: {name}" if module_exists(name) else ""


MARKERS = {
    "<!-- derl:algorithms -->": algorithms_markdown,
    "<!-- derl:flags -->": flags_markdown,
    "<!-- derl:commands -->": commands_markdown,
    "<!-- derl:family-presets -->": family_presets_markdown,
    "<!-- derl:env-presets -->": env_presets_markdown,
    "<!-- derl:preset-coverage -->": preset_coverage_markdown,
}


def render(markdown: str) -> str:
    """`markdown` with every marker replaced."""
    for marker, render_marker in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render_marker())
    markdown = re.sub(r"<!-- derl:readme (.+?) -->", readme_section, markdown)
    markdown = re.sub(r"<!-- derl:results ([\w.-]+) -->", results_table, markdown)
    return re.sub(r"<!-- derl:api-if-exists ([\w.]+) -->", api_if_exists, markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    """mkdocs hook: the generated parts of a page."""
    return render(markdown)


if __name__ == "__main__":
    print(flags_markdown())
