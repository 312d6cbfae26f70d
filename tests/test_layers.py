"""The import graph runs one way: foundations -> env, models -> policies, returns -> runners,
algorithms -> factory -> train (and what it uses) -> cli. No import runs back up, not even one
inside a function."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "derl"

LAYERS = [
    # 0: no derl imports above these (buffer.py is a single file users copy: no derl imports)
    {"errors", "types", "checkpoint", "lock", "guard", "optim", "distributions", "noisy", "noise"}
    | {"custom"}
    | {"logger", "plot", "buffer", "tracking", "video", "distributed"},
    {"env", "models"},
    {"policies", "returns"},
    {"runners", "alg"},
    {"factory"},
    {"snapshot", "callbacks", "lifecycle", "agent", "evaluate", "compile", "train"},
    {"cli", "__init__", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def layer(module: str) -> int:
    """The rank of a derl module by its top-level name (derl.env.make -> env)."""
    return RANK[module.split(".")[1] if "." in module else "__init__"]


def derl_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("derl"):
            found += (
                [node.module] if node.module != "derl" else [f"derl.{a.name}" for a in node.names]
            )
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("derl")]
    return [name for name in found if name != "derl"]


MODULES = sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        rel = path.relative_to(ROOT)
        assert (rel.parts[0].removesuffix(".py")) in RANK, rel


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_back_up(path):
    rel = path.relative_to(ROOT)
    own = RANK[rel.parts[0].removesuffix(".py")]
    upward = [name for name in derl_imports(path) if layer(name) > own]
    assert not upward, f"{rel} (layer {own}) imports {upward}"
