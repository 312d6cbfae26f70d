"""The README's results tables say what the committed CSVs hold.

The tables in README "Results" are written by hand around the suite's numbers. This reads each
table under a heading that links `results/NAME/README.md`, finds the CSV rows of each table row
(alg, env and, where the table has a steps column, the budget) in `results/NAME/results.csv`,
and checks the figures the row gives: the final eval's mean and std over seeds (population std,
as the suite's report), to the decimals shown; best.pt's mean where the row gives it; how many
seeds ran and how many solved. A rerun that changes a row's numbers fails here until the README
says the new ones.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^###\s+(?P<title>.*?)\s*\(\[results/(?P<name>[\w-]+)/README\.md\]")
NUMBER = r"-?\d+(?:\.\d+)?"
FIGURE = re.compile(rf"(?P<mean>{NUMBER})(?:\s*±\s*(?P<std>{NUMBER}))?")


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def budget(text: str) -> int:
    """'100k' -> 100_000, '1M' -> 1_000_000."""
    scale = {"k": 1_000, "M": 1_000_000}
    return round(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def readme_rows() -> list[tuple[str, dict[str, str], str, str]]:
    """(results name, {column: cell}, env, alg) of every data row of every results table."""
    rows, name, title, header = [], None, "", None
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("#"):  # a new section: a results table's, or not
            match = HEADING.match(line)
            name, title = (match["name"], match["title"]) if match else (None, "")
            header = None
            continue
        if not line.startswith("|"):
            header = None  # the table, if any, has ended
            continue
        if name is None:
            continue
        if header is None:
            header, env = [c.lower() for c in cells(line)], title.split()[0]
            continue
        if set(line) <= set("|-: "):
            continue
        row = dict(zip(header, cells(line), strict=True))
        env_cell = next((v for k, v in row.items() if k.startswith("env")), "")
        env = env_cell.split(" ")[0] or env  # a blank env cell: the row above's
        rows.append((name, row, env, row["alg"].split(" ")[0].lower()))
    return rows


ROWS = readme_rows()


def test_the_readme_has_results_tables():
    names = {name for name, *_ in ROWS}
    assert {"classic", "mujoco", "toytext", "box2d"} <= names, names
    assert len(ROWS) >= 50


def check_figure(cell: str, values: list[float], what: str) -> None:
    match = FIGURE.search(cell)
    assert match, f"{what}: no figure in {cell!r}"
    decimals = len(match["mean"].partition(".")[2])
    assert match["mean"] == f"{np.mean(values):.{decimals}f}", f"{what}: {cell!r} vs {values}"
    if match["std"] is not None:
        spread = f"{np.std(values):.{len(match['std'].partition('.')[2])}f}"
        assert match["std"] == spread, f"{what}: std {match['std']} vs {spread} of {values}"


@pytest.mark.parametrize(
    "name, row, env, alg", ROWS, ids=[f"{n}-{env}-{alg}" for n, _, env, alg in ROWS]
)
def test_a_readme_results_row_matches_its_csv(name, row, env, alg):
    with open(ROOT / "results" / name / "results.csv", newline="") as f:
        found = [r for r in csv.DictReader(f) if r["alg"] == alg and r["env"] == env]
    if "steps" in row:
        found = [r for r in found if int(r["num_train_steps"]) == budget(row["steps"])]
    budgets = {r["num_train_steps"] for r in found}
    assert len(budgets) == 1, f"{alg} {env}: CSV rows at budgets {budgets or 'none'}"
    what = f"README {name} {alg} {env}"
    final = row["final eval"].replace("**", "").replace(",", "")
    if not final.startswith("exact"):  # Blackjack's exact values come from another script
        check_figure(final, [float(r["final_mean"]) for r in found], what)
    if "best.pt" in final:
        check_figure(final.split("best.pt")[1], [float(r["best_mean"]) for r in found], what)
    if "(1 seed)" in final:
        assert len(found) == 1, f"{what}: says 1 seed, the CSV has {len(found)}"
    if "seeds" in row:
        assert int(row["seeds"]) == len(found), f"{what}: {row['seeds']} seeds, CSV {len(found)}"
    solved = next((row[k] for k in row if k.startswith("solved") or k == "seeds solved"), None)
    if solved is not None and "/" in solved:
        count = sum(r["solved"] == "yes" for r in found)
        assert solved == f"{count}/{len(found)}", f"{what}: solved {solved}, CSV {count}"


MUJOCO = [(row, env, alg) for name, row, env, alg in ROWS if name == "mujoco"]


@pytest.mark.parametrize("row, env, alg", MUJOCO, ids=[f"{env}-{alg}" for _, env, alg in MUJOCO])
def test_mujoco_rows_are_bold_exactly_where_they_reach_the_best_published_figure(row, env, alg):
    """The MuJoCo table's rule: bold at or above the best published figure in its row."""
    mine = float(FIGURE.search(row["final eval"].replace(",", ""))["mean"])
    published = [
        float(match["mean"])
        for column, cell in row.items()
        if column.startswith(("cleanrl", "sb3 zoo"))
        and (match := FIGURE.search(cell.replace(",", ""))) is not None
    ]
    assert published, f"{env} {alg}: no published figure in {row}"
    assert ("**" in row["final eval"]) == (mine >= max(published)), (env, alg, mine, published)
