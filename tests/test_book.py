"""The book's notebooks execute with the smoke parameters and glue what the prose uses.

Runs scripts/run_notebooks.py (papermill) into a temporary folder, reads the glued values back
(outputs whose metadata.scrapbook.name is the key) and checks them against the data they
describe; checks the typo guard and the format of the parameter files.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "notebooks" / "params"
SCRIPT = ROOT / "scripts" / "run_notebooks.py"

sys.path.insert(0, str(ROOT / "scripts"))
from run_notebooks import EXERCISES, load_exercises, notebook_names  # noqa: E402

# `{glue:text}`../executed/NAME.ipynb::KEY:FORMAT`` (and glue:any/glue:figure) in prose pages
CROSS_PAGE_GLUE = re.compile(r"\{glue(?::\w+)?\}`(?:\.\./)?executed/([\w-]+)\.ipynb::(\w+)")


def run_notebooks(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def glued(nb) -> dict:
    """key -> {mime type: data} of every value the notebook glued (mime prefix removed)."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook", {})
            if "name" in scrapbook:
                prefix = scrapbook.get("mime_prefix", "")
                values[scrapbook["name"]] = {mime.removeprefix(prefix): data for mime, data in output["data"].items()}
    return values


@pytest.fixture(scope="module")
def executed(smoke_book):
    """The notebooks executed with smoke.yaml (tests/conftest.py)."""
    return smoke_book / "executed"


@pytest.mark.slow
def test_every_notebook_executes_and_records_its_run(executed):
    smoke = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    timings = json.loads((executed / "timings.json").read_text())
    for name in notebook_names():
        nb = nbformat.read(executed / f"{name}.ipynb", as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and "hide-input" in injected[0].metadata.tags, name
        parameters = dict(nb.metadata.papermill.parameters)
        params_file = parameters.pop("params_file", None)
        assert params_file in (None, "notebooks/params/smoke.yaml"), (name, params_file)
        assert (parameters or params_file) and all(smoke[k] == v for k, v in parameters.items()), (name, parameters)
        assert nb.metadata.papermill.input_path == f"notebooks/{name}.py"
        assert timings[name]["seconds"] > 0 and timings[name]["params_file"].endswith("smoke.yaml")


@pytest.mark.slow
def test_testbed_glues_the_numbers_of_the_shipped_data(executed):
    from memlib.data import load_testbed

    data = load_testbed()
    values = glued(nbformat.read(executed / "testbed.ipynb", as_version=4))
    number = lambda key: json.loads(values[key]["text/plain"])  # noqa: E731
    assert number("n_train") == len(data.train_labels)
    assert number("n_heldout") == len(data.heldout_labels)
    assert number("n_planted") == len(data.planted_ids) > 0
    assert number("n_control") == len(data.control_ids) > 0
    assert number("n_classes") == data.num_classes
    assert (number("level_min"), number("level_max"), number("n_levels")) == (min(data.levels), max(data.levels), len(data.levels))
    assert number("epoch_size") == int(data.train_copies.sum())
    planted_copies = int(data.train_copies[data.planted_ids].sum())
    assert number("planted_share_of_epoch") == pytest.approx(planted_copies / int(data.train_copies.sum()))
    # the planting rule of data/PROVENANCE.json: first 8 rows differ by >= 12 gray levels within a class
    assert number("planted_min_top_rows_diff") >= 12.0
    for figure in ("fig_training_images", "fig_planted_images", "fig_epoch_composition", "fig_views"):
        assert "image/png" in values[figure], figure


@pytest.mark.slow
def test_prose_pages_glue_only_keys_that_exist(executed):
    references = [(page, *match) for page in sorted((ROOT / "book").glob("*.md"))
                  for match in CROSS_PAGE_GLUE.findall(page.read_text())]
    assert references, "the prose pages glue nothing; the pattern no longer matches their syntax"
    runs = notebook_names() + [e.name for e in load_exercises(EXERCISES, notebook_names())]
    available = {name: glued(nbformat.read(executed / f"{name}.ipynb", as_version=4)) for name in runs}
    for page, name, key in references:
        assert name in available, f"{page.name} glues from executed/{name}, which _toc.yml does not list"
        assert key in available[name], f"{page.name} glues '{key}', which executed/{name} does not glue"


@pytest.mark.slow
def test_exercise_runs_execute_their_variant_beside_the_main_run(smoke_book, executed):
    """Every variant ran with its overrides into its own results folder, its solutions' keys
    exist, and the main run's summaries and latest stage copies are the main run's."""
    smoke = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    timings = json.loads((executed / "timings.json").read_text())
    for exercise in load_exercises(EXERCISES, notebook_names()):
        nb = nbformat.read(executed / f"{exercise.name}.ipynb", as_version=4)
        assert nb.metadata.papermill.input_path == f"notebooks/{exercise.page}.py"
        params_file = nb.metadata.papermill.parameters.get("params_file")
        assert params_file in (None, f"results/smoke/exercises/{exercise.id}/params.yaml"), params_file
        run_params = yaml.safe_load((smoke_book / "results" / "smoke" / "exercises" / exercise.id / "params.yaml").read_text())
        assert run_params == {**smoke, **exercise.overrides, "results_dir": f"results/smoke/exercises/{exercise.id}",
                              "cache_dir": "results/smoke"}
        assert not any("exercise" in c.metadata.get("tags", []) for c in nb.cells)
        values = glued(nb)
        assert "page_seconds" in values and f"--exercise {exercise.id}" in values["rerun_box"]["text/markdown"]
        assert timings[exercise.name]["seconds"] > 0
    # the RAR page's variant read at T-1 wrote its summary in its own folder; the main run's says T-2
    main = json.loads((smoke_book / "results/smoke/rar-testbed/summary-unitmem-rar.json").read_text())
    variant = json.loads((smoke_book / "results/smoke/exercises/unitmem-rar-last/rar-testbed/summary-unitmem-rar.json").read_text())
    assert (main["numbers"]["selection"], variant["numbers"]["selection"]) == ("predicts-last", "last")
    # the one-view variant computed UnitMem into the shared cache but left the main latest copy alone
    latest = json.loads((smoke_book / "results/smoke/rar-testbed/unitmem.json").read_text())
    assert latest["meta"]["params"]["unitmem"]["n_views"] == smoke["n_views"]
    assert len(list((smoke_book / "results/smoke/rar-testbed").glob("unitmem-*"))) == 2


def test_a_misspelled_parameter_stops_the_run_naming_it(tmp_path):
    params = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    params["images_per_clas"] = params.pop("images_per_class")
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(params))
    result = run_notebooks("--params", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "'images_per_clas'" in result.stderr and "did you mean 'images_per_class'" in result.stderr
    assert not (tmp_path / "out").exists(), "nothing may run before the parameters are checked"


def test_notebooks_declare_few_parameters_and_do_not_import_the_command_line():
    """A page's parameters cell holds the run's parameter file and what the page discusses;
    the pipeline comes from memlib.stages, not from memlib.cli."""
    import jupytext
    from papermill.translators import PythonTranslator

    for name in notebook_names():
        nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        declared = [p.name for p in PythonTranslator.inspect(cell)]
        assert 1 <= len(declared) <= 15, (name, declared)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "memlib.cli" not in source and "from memlib import cli" not in source, name
        assert "globals()" not in source, name


def test_unknown_notebook_name_is_refused(tmp_path):
    result = run_notebooks("--params", str(PARAMS / "smoke.yaml"), "--only", "no-such-notebook", "--out", str(tmp_path))
    assert result.returncode != 0 and "no-such-notebook" in result.stderr


def test_parameter_files_share_their_keys():
    testbed = yaml.safe_load((PARAMS / "testbed.yaml").read_text())
    smoke = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    assert smoke.keys() == testbed.keys(), "smoke.yaml must set the same parameters as testbed.yaml"
    full = {path.name: yaml.safe_load(path.read_text()) for path in sorted(PARAMS.glob("full-*.yaml"))}
    assert set(full) == {"full-var-d16.yaml", "full-var-d30.yaml", "full-rar-b.yaml", "full-rar-xxl.yaml"}
    for name, params in full.items():
        assert params.keys() == full["full-var-d30.yaml"].keys(), name
        assert testbed.keys() <= params.keys(), name


def test_reproduction_page_run_alone_gives_the_numbers_of_the_whole_book(smoke_book, executed, tmp_path):
    """Run alone, in a fresh results folder where no other page has written anything (its stage
    cache the executed book's), the reproduction page glues the same numbers and verdicts as in the
    executed book: it gathers them through memlib from the stages' results, under the keys the
    pages computed them with, not from the other pages' outputs (summaries, figures), so it is
    right whatever order the pages ran in."""
    cache = smoke_book / "results" / "smoke"

    def stage_entries() -> list[str]:  # <model>/<stage>-<key>
        return sorted(str(p.relative_to(cache)) for p in cache.glob("*/*-*") if p.is_dir())

    entries = stage_entries()
    assert any("/sweep-" in entry for entry in entries)
    params = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    params["results_dir"], params["cache_dir"] = str(tmp_path / "results"), str(cache)
    params_file = tmp_path / "alone.yaml"
    params_file.write_text(yaml.safe_dump(params))
    out = tmp_path / "executed"
    result = run_notebooks("--params", str(params_file), "--only", "reproduction", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((tmp_path / "results").rglob("summary-mitigation.json"))  # no other page ran
    assert stage_entries() == entries  # read back from the book's cache: no stage computed under another key
    alone = glued(nbformat.read(out / "reproduction.ipynb", as_version=4))
    in_book = glued(nbformat.read(executed / "reproduction.ipynb", as_version=4))
    numbers = set(in_book) - {"page_seconds", "rerun_box"}
    assert any(key.endswith("_verdict") for key in numbers) and "verdict_table" in numbers
    assert {key: alone[key] for key in numbers} == {key: in_book[key] for key in numbers}
