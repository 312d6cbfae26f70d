"""The docs site (docs/, built by `make docs`): every Python example on its pages runs as written,
every `derl` flag its shell examples use exists, and the generated flags tables cover every
config field.

Markers in a page, HTML comments that the site does not show:

    <!-- docs-test: page requires FEATURE -->   skip the whole page until FEATURE exists
    <!-- docs-test: requires FEATURE -->        (right before a block) skip that block until then
    <!-- docs-test: skip -->                    (right before a block) never run it

A ```python block with a `title="name.py"` is a file: it is written to the working directory (of
every page) instead of being run. The blocks of a page run in order, in one namespace, in a
temporary working directory.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

import derl
from derl.factory import ALGS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
import gen_flags  # noqa: E402

BLOCK = re.compile(
    r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?^```(?P<lang>\w+)(?P<attrs>[^\n]*)\n"
    r"(?P<code>.*?)^```",
    flags=re.S | re.M,
)


def feature(name: str) -> bool:
    """Whether the API a page is written against exists yet: `derl.train` takes `model=`,
    `env_fn=`, `callbacks=` (and `derl.callbacks` can be imported). Once it does, the blocks
    run, and whatever else of the API they use must be there too."""
    train = inspect.signature(derl.train).parameters
    if name == "callbacks":
        return "callbacks" in train and importlib.util.find_spec("derl.callbacks") is not None
    if name in ("model", "env_fn"):
        return name in train
    raise ValueError(f"unknown docs-test feature {name!r}")


@dataclasses.dataclass
class Block:
    lang: str
    code: str
    line: int
    title: str | None
    marker: str | None


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, after the generated parts are rendered."""
    text = gen_flags.render(page.read_text())
    found = []
    for m in BLOCK.finditer(text):
        title = re.search(r'title="([^"]+)"', m.group("attrs"))
        line = text.count("\n", 0, m.start("code"))
        found.append(Block(m["lang"], m["code"], line, title and title.group(1), m.group("marker")))
    return found


def missing(page: Path, block: Block | None = None) -> str | None:
    """Why a page (or one of its blocks) cannot run yet, or None."""
    page_marker = re.search(r"<!-- docs-test: page requires (\w+) -->", page.read_text())
    for marker in [page_marker and f"requires {page_marker[1]}", block and block.marker]:
        if marker == "skip":
            return "marked skip"
        if marker and marker.startswith("requires "):
            name = marker.split()[1]
            if not feature(name):
                return f"needs the {name} API, which derl does not have yet"
    return None


def files() -> dict[str, str]:
    """The files the pages define (```python title="name.py"), by name."""
    return {b.title: b.code for page in pages() for b in blocks(page) if b.title}


PYTHON_PAGES = [p for p in pages() if any(b.lang == "python" and not b.title for b in blocks(p))]


@pytest.fixture
def workdir(tmp_path, monkeypatch, one_thread):
    """A temporary cwd holding the pages' files, importable; no display; modules forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name, code in files().items():
        (tmp_path / name).write_text(code)
    modules = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - modules:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_examples_run(page, workdir):
    reason = missing(page)
    if reason:
        pytest.skip(reason)
    namespace = {"__name__": "__docs__"}
    ran, skipped = 0, []
    for block in blocks(page):
        if block.lang != "python" or block.title:
            continue
        reason = missing(page, block)
        if reason:
            skipped.append(f"line {block.line}: {reason}")
            continue
        exec(compile(block.code, f"{page.relative_to(ROOT)}:{block.line}", "exec"), namespace)
        ran += 1
    if not ran:
        pytest.skip("; ".join(skipped))


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_python_examples_compile(page):
    """Also the blocks that are skipped until their API exists, and the files."""
    for block in blocks(page):
        if block.lang == "python":
            compile(block.code, f"{page.relative_to(ROOT)}:{block.line}", "exec")


def allowed_flags(command: str) -> set[str]:
    """The flags `derl COMMAND` takes."""
    if command in ALGS:
        names = set()
        for f in dataclasses.fields(ALGS[command].config_cls):
            names.add("--" + f.name.replace("_", "-"))
            names.add("--no-" + f.name.replace("_", "-"))
        return names | {"--config", "--help", "-h"}
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", gen_flags.help_text([command, "-h"])))


def derl_commands(page: Path) -> list[tuple[int, list[str]]]:
    """(line, argv) of every `derl ...` command in the page's shell blocks that can run now."""
    found = []
    for block in blocks(page):
        if block.lang != "bash" or missing(page, block):
            continue
        for i, line in enumerate(block.code.splitlines()):
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"\w+=\S*", words[0]):  # PYTHONPATH=. derl ...
                words = words[1:]
            if len(words) >= 2 and words[0] == "derl":
                found.append((block.line + i + 1, words[1:]))
    return found


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_shell_examples_use_real_flags(page):
    for line, argv in derl_commands(page):
        command = argv[0]
        assert command in [*ALGS, *gen_flags.COMMANDS], f"{page.name}:{line}: derl {command}?"
        flags = {word.split("=")[0] for word in argv[1:] if word.startswith("-")}
        unknown = flags - allowed_flags(command)
        assert not unknown, f"{page.name}:{line}: derl {command} has no {', '.join(unknown)}"


def test_flags_tables_cover_every_config_field():
    sections = re.split(r"^### derl ", gen_flags.flags_markdown(), flags=re.M)[1:]
    tables = {section.split("\n", 1)[0].strip(): section for section in sections}
    assert list(tables) == list(ALGS)
    for alg, spec in ALGS.items():
        rows = re.findall(r"^\| `(--[a-z0-9-]+)", tables[alg], flags=re.M)
        fields = ["--" + f.name.replace("_", "-") for f in dataclasses.fields(spec.config_cls)]
        assert rows == fields, alg


def test_generated_parts_are_on_the_pages():
    cli = gen_flags.render((DOCS / "cli.md").read_text())
    for command in gen_flags.COMMANDS:
        assert f"usage: derl {command}" in cli
    for alg in ALGS:
        assert f"### derl {alg}" in cli
    for page in pages():
        assert "<!-- derl:" not in gen_flags.render(page.read_text()), page.name


def test_preset_coverage_grid_marks_every_env_preset():
    """The algorithms page's env-by-algorithm grid, generated from presets.toml: a row per env
    id, a mark exactly where that algorithm has a table for it."""
    from derl.factory.presets import env_presets

    tables = env_presets()
    header, _, *rows = gen_flags.preset_coverage_markdown().strip().splitlines()
    algs = [cell.strip() for cell in header.strip("|").split("|")][1:]
    assert algs == list(tables)
    seen = set()
    for row in rows:
        env_cell, *marks = [cell.strip() for cell in row.strip("|").split("|")]
        env_id = env_cell.strip("`")
        seen.add(env_id)
        assert marks == ["yes" if env_id in tables[alg] else "" for alg in algs], env_id
    assert seen == {env_id for alg in algs for env_id in tables[alg]}
    assert "<!-- derl:preset-coverage -->" in (DOCS / "algorithms.md").read_text()


def test_every_recipe_the_docs_name_is_exported():
    """docs/extending.md builds algorithms with `derl.make_<alg>`: each algorithm's recipe and
    config class must be importable from `derl` itself, as the page says."""
    import derl
    from derl.factory import ALGS

    for spec in ALGS.values():
        assert getattr(derl, spec.make.__name__) is spec.make
        assert getattr(derl, spec.config_cls.__name__) is spec.config_cls
        assert spec.make.__name__ in derl.__all__ and spec.config_cls.__name__ in derl.__all__


def test_readme_hand_built_ppo_is_make_ppo(one_thread):
    """The README's PPO "recombined by hand" says it is `derl.make_ppo` with the CartPole preset:
    run both for two rollouts from the same seed and they must learn the same weights (a
    forgotten option, e.g. value clipping, an Adam eps or a schedule, changes them)."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"recombined by hand.*?```python\n(.*?)```", readme, flags=re.S)[1]
    steps = 512  # two rollouts of 8 envs x 32 steps: 40 updates
    assert code.count("50_000") == 3  # the budget, in the runner and in both schedules
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(code.replace("50_000", str(steps)), "README.md", "exec"), namespace)
    by_hand = namespace["policy"].state_dict()

    config = derl.make_config("ppo", "CartPole-v1", seed=0, num_train_steps=steps)
    env = derl.env.make(config.env_id, config.num_envs, config.seed)
    torch.manual_seed(0)
    alg = derl.make_ppo(config, env, torch.device("cpu"))
    alg.learn()
    env.close()
    recipe = alg.runner.policy.state_dict()
    assert by_hand.keys() == recipe.keys()
    for name, value in recipe.items():  # fused and unfused Adam differ in the last bits
        torch.testing.assert_close(by_hand[name], value, rtol=1e-4, atol=1e-5, msg=name)
