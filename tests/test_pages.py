"""The notebook pages read like a paper section (issue 15): the question, then the page's main
figure and verdict (glued as ``lead``), then the details, with the plumbing folded.

Static checks of the sources in notebooks/ (no execution): every visible code cell is at most
15 lines of at most 80 characters (what the text column shows at 1300 px), the papermill parameters cell stays a tagged code cell, every figure goes through
memlib.style (alt text) instead of ``plt.show()``, and no page sets a theme that would replace
the book's palette.
"""

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
FOLDED = {"hide-input", "remove-input", "remove-cell"}
MAX_VISIBLE_LINES = 15
MAX_VISIBLE_WIDTH = 80   # characters of code the text column shows at 1300 px without scrolling


def code_cells(path: Path):
    return [cell for cell in jupytext.read(path).cells if cell.cell_type == "code"]


def test_there_are_notebook_pages():
    assert len(NOTEBOOKS) >= 8, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_visible_code_cell_is_longer_than_15_lines(path):
    long = [(i, len(cell.source.splitlines())) for i, cell in enumerate(code_cells(path))
            if not FOLDED & set(cell.metadata.get("tags", [])) and len(cell.source.strip().splitlines()) > MAX_VISIBLE_LINES]
    assert not long, f"{path.name}: visible code cells (index, lines) longer than {MAX_VISIBLE_LINES}: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_visible_code_line_is_cut_at_the_columns_edge(path):
    wide = [line for cell in code_cells(path) if not FOLDED & set(cell.metadata.get("tags", []))
            for line in cell.source.splitlines() if len(line) > MAX_VISIBLE_WIDTH]
    assert not wide, f"{path.name}: visible code lines longer than {MAX_VISIBLE_WIDTH} characters:\n" + "\n".join(wide)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_a_tagged_code_cell(path):
    tagged = [cell for cell in jupytext.read(path).cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_question_is_followed_by_the_pages_lead_figure_and_verdict(path):
    first = jupytext.read(path).cells[0]
    assert first.cell_type == "markdown" and "**Question:" in first.source, path.name
    if path.stem == "reproduction":  # no figure: its lead is the table of verdicts, claim by claim
        assert "```{glue:any} verdict_table\n```" in first.source, "reproduction: paste the verdict table first"
        assert 'glue("verdict_table", HTML(' in path.read_text()
        return
    assert re.search(r"```\{glue:md\} lead\n:format: myst\n```", first.source), \
        f"{path.name}: the first cell must paste the glued lead (figure and verdict) right after the question"
    sources = "\n".join(cell.source for cell in code_cells(path))
    assert re.search(r'glue\("lead", Markdown\(', sources), f"{path.name} glues no lead"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_carry_alt_text_and_the_books_palette(path):
    source = path.read_text()
    assert "plt.show()" not in source, f"{path.name}: show figures with style.show(fig, alt) (alt text) or glue them"
    assert "sns.set_theme" not in source, f"{path.name}: sns.set_theme replaces style.apply()'s palette"
    for glued in re.findall(r"```\{glue:figure\} [^\n]+\n(?:# )?([^\n]*)", source):
        assert glued.startswith(":alt: "), f"{path.name}: a glue:figure without :alt: ({glued!r})"
    if "plt.subplots" in source or "sns." in source:
        assert "style.apply()" in source, f"{path.name} draws figures without style.apply()"
