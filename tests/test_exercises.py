"""The exercises of the study pages and their variants (notebooks/exercises.yaml).

No variant is executed here: the file is checked as scripts/run_notebooks.py checks it (every
page a notebook of the book, every override a real setting whose value the run accepts on top of
the shipped parameter files), every variant has its exercise and a collapsed solution on its page,
and every number a solution pastes is one that the pasted notebook's source glues. The runner's
`--exercises` mode is run on a tiny book; the smoke build (tests/conftest.py) runs the variants of
the real book, and tests/test_book.py and tests/test_browser.py read them.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_notebooks.py"
PARAMS = ROOT / "notebooks" / "params"
STUDY_PAGES = ("testbed", "unitmem-var", "unitmem-rar", "extraction", "mitigation", "tradeoff")

sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks as runner  # noqa: E402

# {glue:text}`exercise-ID.ipynb::KEY:FMT` (a notebook page) or `../executed/exercise-ID.ipynb::KEY:FMT` (prose)
PASTED = re.compile(r"\{glue:text\}`(?:(?:\.\./executed/)?([\w-]+)\.ipynb::)?(\w+):[^`]*`")
GLUED = re.compile(r"""glue\(\s*(f?)(["'])(.+?)\2""")


def exercises() -> list:
    return runner.load_exercises(runner.EXERCISES, runner.notebook_names())


def source(page: str) -> str:
    return (ROOT / "notebooks" / f"{page}.py").read_text()


def glue_patterns(page: str) -> list[re.Pattern]:
    """The keys the page's source glues, an f-string's fields as wildcards (``f"{family}_x"``)."""
    patterns = []
    for is_f, _, key in GLUED.findall(source(page)):
        parts = re.split(r"\{[^}]*\}", key) if is_f else [key]
        patterns.append(re.compile(r"\w+".join(map(re.escape, parts))))
    return patterns


def exercise_cells(page: str) -> str:
    """The markdown of the page's cells tagged `exercise` (what the exercise runs leave out)."""
    nb = jupytext.read(ROOT / "notebooks" / f"{page}.py")
    return "\n".join(c.source for c in nb.cells if "exercise" in c.metadata.get("tags", []))


def test_the_exercises_file_is_valid_on_every_shipped_parameter_file():
    found = exercises()
    assert len(found) >= 12
    for page in STUDY_PAGES:
        assert sum(e.page == page for e in found) >= 2, f"{page} has fewer than two exercise variants"
    assert not {e.page for e in found} - set(STUDY_PAGES), "an exercise varies a page that is not a study page"
    sources = {name: runner.source_notebook(name) for name in runner.notebook_names()}
    declared = {name: runner.declared_parameters(name, nb) for name, nb in sources.items()}
    for params_file in ("testbed.yaml", "smoke.yaml"):
        params = runner.read_params(PARAMS / params_file)
        runner.check_exercises(found, params, sources, declared, runner.EXERCISES)  # raises SystemExit on a problem


def test_a_variant_gets_its_own_results_folder_and_the_main_runs_cache():
    exercise = runner.Exercise("demo", "unitmem-rar", {"selection": "last"})
    params = runner.exercise_params({"results_dir": "results/testbed", "selection": "default"}, exercise)
    assert params == {"results_dir": "results/testbed/exercises/demo", "cache_dir": "results/testbed", "selection": "last"}
    # a file that already names its cache keeps it
    assert runner.exercise_params({"results_dir": "r", "cache_dir": "c"}, exercise)["cache_dir"] == "c"


def test_the_toc_and_the_exercise_runs_page_list_every_variant_in_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = re.findall(r"executed/(exercise-[\w-]+)", yaml.safe_dump(toc, sort_keys=False))
    assert listed == [e.name for e in exercises()]
    page = (ROOT / "book" / "exercise-runs.md").read_text()
    for e in exercises():
        assert f"{{doc}}`../executed/{e.name}`" in page, f"book/exercise-runs.md does not list {e.name}"


@pytest.mark.parametrize("page", STUDY_PAGES)
def test_every_variant_has_its_exercise_and_a_collapsed_solution(page):
    text = exercise_cells(page)
    assert text.count("{exercise}") == text.count("{solution}") == sum(e.page == page for e in exercises())
    for e in (e for e in exercises() if e.page == page):
        block = re.search(rf"````{{exercise}}[^\n]*\n:label: ex-{e.id}\n(.*?)\n````", text, re.S)
        assert block, f"{page}: no exercise labelled ex-{e.id}"
        assert f"--exercise {e.id}\n" in block.group(1), f"ex-{e.id} does not give the command of its variant"
        for key in e.overrides:
            assert f"`{key}: " in block.group(1), f"ex-{e.id} does not say that it sets {key}"
        assert re.search(rf"```{{solution}} ex-{e.id}\n:class: dropdown\n", text), f"ex-{e.id}: no collapsed solution"


@pytest.mark.parametrize("page", STUDY_PAGES)
def test_solutions_paste_only_keys_the_pasted_notebook_glues(page):
    by_name = {e.name: e for e in exercises()}
    own = glue_patterns(page)
    pasted = PASTED.findall(exercise_cells(page))
    assert pasted, f"{page}: the exercises paste nothing; the pattern no longer matches their syntax"
    for name, key in pasted:
        if name:
            assert name in by_name, f"{page} pastes from {name}, which is no variant of exercises.yaml"
            assert by_name[name].page == page, f"{page} pastes from {name}, a variant of {by_name[name].page}"
        assert any(p.fullmatch(key) for p in own), f"{page} pastes '{key}', which notebooks/{page}.py never glues"
    for e in (e for e in exercises() if e.page == page):
        assert (e.name, "page_seconds") in pasted, f"the solution of ex-{e.id} does not say how long its run took"


def test_the_prose_pastes_only_keys_the_variants_glue():
    by_name = {e.name: e for e in exercises()}
    for prose in ("exercise-runs.md", "teaching.md"):
        for name, key in PASTED.findall((ROOT / "book" / prose).read_text()):
            if name.startswith(runner.EXERCISE_PREFIX):
                assert name in by_name, f"book/{prose} pastes from {name}, which is no variant"
                assert any(p.fullmatch(key) for p in glue_patterns(by_name[name].page)), (prose, name, key)


def test_the_exercise_run_leaves_out_the_exercises_and_names_itself():
    exercise = next(e for e in exercises() if e.page == "unitmem-rar")
    page = runner.source_notebook("unitmem-rar")
    nb = runner.exercise_notebook(page, exercise, "notebooks/params/testbed.yaml")
    assert not any("exercise" in c.metadata.get("tags", []) for c in nb.cells)
    assert len(nb.cells) == len(page.cells) - sum("exercise" in c.metadata.get("tags", []) for c in page.cells)
    assert nb.cells[0].source.startswith(f"# Exercise run: {exercise.id}\n")
    assert "{doc}`unitmem-rar`" in nb.cells[0].source and f"{{ref}}`ex-{exercise.id}`" in nb.cells[0].source
    assert all(c.source == p.source for c, p in zip(nb.cells[1:], [p for p in page.cells if "exercise" not in p.metadata.get("tags", [])][1:]))


# ---- the runner's --exercises mode on a tiny book ----------------------------------------------------

TINY = '''\
# %% [markdown]
# # Tiny

# %% tags=["parameters"]
seed = 0

# %%
print("done with seed", seed)

# %% [markdown] tags=["exercise"]
# ## Exercises (left out of the runs)
'''


@pytest.fixture
def tiny_book(tmp_path) -> Path:
    book = tmp_path / "book"
    (book / "scripts").mkdir(parents=True)
    (book / "notebooks").mkdir()
    (book / "scripts" / "run_notebooks.py").write_bytes(SCRIPT.read_bytes())
    shutil.copytree(ROOT / "memlib", book / "memlib", ignore=shutil.ignore_patterns("__pycache__"))  # its root: the copy
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: executed/tiny\n"
                                   "  - file: runs\n    sections:\n      - file: executed/exercise-seven\n")
    (book / "notebooks" / "tiny.py").write_text(TINY)
    (book / "params.yaml").write_text("seed: 1\nresults_dir: out/results\n")
    return book


def run_tiny(book: Path, exercises_yaml: str, *args) -> subprocess.CompletedProcess:
    (book / "exercises.yaml").write_text(exercises_yaml)
    return subprocess.run([sys.executable, "scripts/run_notebooks.py", "--params", "params.yaml", "--out", "out",
                           "--exercises", "exercises.yaml", *args], cwd=book, capture_output=True, text=True, timeout=600)


def printed(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_the_runner_executes_a_variant_beside_the_page_without_touching_it(tiny_book):
    result = run_tiny(tiny_book, "exercises:\n  - {id: seven, page: tiny, overrides: {seed: 7}}\n")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tiny_book / "out"
    assert not (out / "tiny.ipynb").exists(), "the exercise mode ran the page itself"
    nb = nbformat.read(out / "exercise-seven.ipynb", as_version=4)
    assert "done with seed 7" in printed(out / "exercise-seven.ipynb")
    assert not any("exercise" in c.metadata.get("tags", []) for c in nb.cells)
    assert nb.cells[0].source.startswith("# Exercise run: seven")
    assert nb.metadata.papermill.input_path == "notebooks/tiny.py"
    params = yaml.safe_load((tiny_book / "out" / "results" / "exercises" / "seven" / "params.yaml").read_text())
    assert params == {"seed": 7, "results_dir": "out/results/exercises/seven", "cache_dir": "out/results"}
    assert "exercise-seven" in (out / "timings.json").read_text()


@pytest.mark.parametrize("exercises_yaml, args, expected", [
    ("exercises:\n  - {id: seven, page: tiny, overrides: {results_dir: x}}\n", [], "override 'results_dir' is set by the runner"),
    ("exercises:\n  - {id: seven, page: tiny, overrides: {sed: 7}}\n", [], "override 'sed' is no setting of memlib.config"),
    ("exercises:\n  - {id: seven, page: tiny, overrides: {seed: -1}}\n", [], "seed: got -1"),
    ("exercises:\n  - {id: seven, page: nope, overrides: {seed: 7}}\n", [], "page 'nope' is not a notebook of _toc.yml"),
    ("exercises:\n  - {id: Seven, page: tiny, overrides: {seed: 7}}\n", [], "id 'Seven': expected lower-case words"),
    ("exercises:\n  - {id: seven, page: tiny, overrides: {}}\n", [], "overrides: expected a non-empty mapping"),
    ("exercises:\n  - {id: seven, page: tiny, overrides: {seed: 7}}\n", ["--exercise", "eight"], "--exercise eight: not a variant"),
    ("exercises:\n  - {id: seven, page: tiny, overrides: {seed: 7}}\n", ["--only", "tiny"], "--only selects pages"),
])
def test_a_bad_variant_is_refused_naming_it_before_anything_runs(tiny_book, exercises_yaml, args, expected):
    result = run_tiny(tiny_book, exercises_yaml, *args)
    assert result.returncode != 0 and expected in result.stderr, result.stderr[-2000:]
    assert not (tiny_book / "out" / "exercise-seven.ipynb").exists()
