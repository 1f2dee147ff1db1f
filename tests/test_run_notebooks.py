"""scripts/run_notebooks.py as a user meets it: bad parameter files, bad values anywhere in the
book, a failing notebook, Ctrl-C and SIGTERM during a page.

The execution tests run the script itself, copied into a tiny book under tmp_path (its `_toc.yml`
lists one notebook, `notebooks/tiny.py`), because the script takes its notebooks from the
`_toc.yml` beside it; the checks of parameter files run against the real book.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_notebooks.py"
SMOKE = ROOT / "notebooks" / "params" / "smoke.yaml"

TINY_NOTEBOOK = '''\
# %% tags=["parameters"]
seed = 0
k_percent = 10
sleep_s = 0
fail = False
marker = ""

# %%
import pathlib
import time

if marker:
    pathlib.Path(marker).write_text("started")
time.sleep(sleep_s)

# %%
if fail:
    raise RuntimeError("planned failure")
print("done with seed", seed)
'''


def run(script: Path, *args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def tiny_book(tmp_path) -> Path:
    """A book of one notebook, `tiny`, with this repository's run_notebooks.py and memlib."""
    book = tmp_path / "book"
    (book / "scripts").mkdir(parents=True)
    (book / "notebooks").mkdir()
    shutil.copy2(SCRIPT, book / "scripts" / "run_notebooks.py")
    (book / "memlib").symlink_to(ROOT / "memlib", target_is_directory=True)
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: executed/tiny\n")
    (book / "notebooks" / "tiny.py").write_text(TINY_NOTEBOOK)
    return book


def run_tiny(book: Path, params: dict) -> subprocess.CompletedProcess:
    (book / "params.yaml").write_text(yaml.safe_dump(params))
    return run(book / "scripts" / "run_notebooks.py", "--params", "params.yaml", "--out", "out", cwd=book)


def printed(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))


def test_a_complete_run_leaves_the_notebook_and_no_temporary_file(tiny_book):
    result = run_tiny(tiny_book, {"seed": 3})
    assert result.returncode == 0, result.stderr
    out = tiny_book / "out"
    assert sorted(p.name for p in out.iterdir()) == ["timings.json", "tiny.ipynb"]
    assert "done with seed 3" in printed(out / "tiny.ipynb")
    assert json.loads((out / "timings.json").read_text())["tiny"]["params_file"] == "params.yaml"


def test_a_temporary_file_of_an_ended_run_is_removed(tiny_book):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tiny_book / "out").mkdir()
    stale = tiny_book / "out" / f".tiny.{int(ended.stdout)}.tmp.ipynb"
    stale.write_text("{half a notebook")
    assert run_tiny(tiny_book, {"seed": 1}).returncode == 0
    assert not stale.exists()


def test_a_failing_notebook_keeps_the_last_complete_copy(tiny_book):
    assert run_tiny(tiny_book, {"seed": 1}).returncode == 0
    complete = (tiny_book / "out" / "tiny.ipynb").read_bytes()

    result = run_tiny(tiny_book, {"seed": 2, "fail": True})
    out = tiny_book / "out"
    assert result.returncode == 1
    assert (f"error: notebook tiny failed; the executed copy with the traceback is {out / 'tiny.failed.ipynb'}; "
            f"{out / 'tiny.ipynb'} keeps its last complete execution") in result.stderr
    assert (out / "tiny.ipynb").read_bytes() == complete
    assert "planned failure" in json.dumps(nbformat.read(out / "tiny.failed.ipynb", as_version=4))
    assert sorted(p.name for p in out.iterdir()) == ["timings.json", "tiny.failed.ipynb", "tiny.ipynb"]

    assert run_tiny(tiny_book, {"seed": 5}).returncode == 0  # a complete rerun replaces both
    assert "done with seed 5" in printed(out / "tiny.ipynb")
    assert not (out / "tiny.failed.ipynb").exists()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_page_keeps_its_last_complete_copy(tiny_book, signum, code):
    assert run_tiny(tiny_book, {"seed": 1}).returncode == 0
    out = tiny_book / "out"
    complete = (out / "tiny.ipynb").read_bytes()

    marker = tiny_book / "started"
    (tiny_book / "params.yaml").write_text(yaml.safe_dump({"seed": 2, "sleep_s": 600, "marker": str(marker)}))
    proc = subprocess.Popen([sys.executable, "scripts/run_notebooks.py", "--params", "params.yaml", "--out", "out"],
                            cwd=tiny_book, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # the notebook's second cell has started (at most 10 minutes)
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert marker.exists(), proc.communicate()
        assert [p.name for p in out.glob(".tiny.*.tmp.ipynb")], "papermill writes a temporary copy"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert (f"[run_notebooks] interrupted by {signal.Signals(signum).name} during tiny (finished this run: none); "
            f"{out / 'tiny.ipynb'} keeps its last complete execution") in stderr
    assert "Traceback" not in stderr
    assert (out / "tiny.ipynb").read_bytes() == complete
    assert sorted(p.name for p in out.iterdir()) == ["timings.json", "tiny.ipynb"]


def run_with_smoke_changed(tmp_path, **changes) -> tuple[Path, subprocess.CompletedProcess]:
    params = {**yaml.safe_load(SMOKE.read_text()), **changes}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    return bad, run(SCRIPT, "--params", bad, "--only", "testbed", "--out", tmp_path / "out")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_papermill_does_not_outlive_a_killed_run(tiny_book):
    """SIGKILL (a CI timeout) cannot be handled; papermill, in its own session, must still stop."""
    marker = tiny_book / "started"
    (tiny_book / "params.yaml").write_text(yaml.safe_dump({"sleep_s": 600, "marker": str(marker)}))
    proc = subprocess.Popen([sys.executable, "scripts/run_notebooks.py", "--params", "params.yaml", "--out", "out"],
                            cwd=tiny_book, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert marker.exists()
        # the children of every thread: papermill is started by the runner's worker thread
        children = [c for task in Path(f"/proc/{proc.pid}/task").iterdir() for c in (task / "children").read_text().split()]
        assert len(children) == 1, children  # papermill
        papermill = int(children[0])
    finally:
        proc.kill()
        proc.wait()
    for _ in range(240):  # it is killed at once; allow a loaded machine 2 minutes to reap it
        if not Path(f"/proc/{papermill}").exists() or "Z" in Path(f"/proc/{papermill}/stat").read_text().split()[2]:
            break
        time.sleep(0.5)
    stat = Path(f"/proc/{papermill}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z", "papermill outlived the killed run"


def test_every_bad_value_of_the_book_is_named_before_any_notebook_runs(tmp_path):
    """Every page's run is the whole parameter file (memlib.config), so a bad seed and a bad
    k_percents are named for every page that reads the file, in one message, and nothing runs."""
    bad, result = run_with_smoke_changed(tmp_path, k_percents=[0, 150], seed=-1)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: invalid parameters in {bad}; no notebook was run:\n")
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert problems[0].startswith("seed: got -1; expected an integer >= 0 (notebooks testbed, unitmem-var, "), problems
    assert problems[1].startswith("k_percents: got [0, 150]; expected a non-empty list of distinct percentages "
                                  "0 <= k <= 100 (notebooks testbed, unitmem-var, "), problems
    assert "mitigation, tradeoff, reproduction" in problems[1] and len(problems) == 2
    assert not (tmp_path / "out").exists()


def test_prefix_lengths_no_model_accepts_are_named_before_any_notebook_runs(tmp_path):
    """[2, 3] is valid for RAR (any length) but not for the testbed's VAR (scale boundaries 0, 1, 5, ...)."""
    bad, result = run_with_smoke_changed(tmp_path, prefix_lengths=[2, 3])
    assert result.returncode == 1
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    from memlib.models.registry import get_config
    from memlib.models.var import scale_boundaries

    valid = scale_boundaries(get_config("var-testbed").patch_nums)
    assert problems == [f"prefix_lengths: got [2, 3]; var-testbed accepts none of them (valid: {valid}) "
                        "(notebooks extraction, mitigation, tradeoff, reproduction)"]
    assert not (tmp_path / "out").exists()


def test_the_shipped_smoke_parameters_pass_the_value_checks():
    sys.path.insert(0, str(ROOT / "scripts"))
    import run_notebooks

    names = run_notebooks.notebook_names()
    sources = {name: run_notebooks.source_notebook(name) for name in names}
    declared = {name: run_notebooks.declared_parameters(name, nb) for name, nb in sources.items()}
    run_notebooks.check_values(run_notebooks.read_params(SMOKE), sources, declared, SMOKE)  # raises when not


@pytest.mark.parametrize("content, expected", [
    ("seed: 0\nmax_images: 200\nmax_images: 0\n".encode(),
     "{path}, line 3: duplicate key 'max_images' (first given at line 2); give each key once"),
    ("seed: 0\nresults_dir: r\xe9sultats\n".encode("latin-1"), "{path}, line 2: not UTF-8 text (byte 0xe9)"),
    (b"seed: 0\nprefix_lengths: [0, 5\n", "{path}, line 3: not valid YAML ("),
    (b"seed: 1180591620717411303424\n", "{path}, line 1: key 'seed': integer 1180591620717411303424 does not fit"),
], ids=["duplicate-key", "not-utf8", "invalid-yaml", "huge-int"])
def test_a_bad_parameter_file_is_one_line_naming_it(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    result = run(SCRIPT, "--params", path, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: " + expected.format(path=path))
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "out"
    out.write_text("not a folder")
    result = run(SCRIPT, "--params", SMOKE, "--out", out)
    assert result.returncode == 1
    assert result.stderr == f"error: --out {out} is a file; expected a folder (created if missing)\n"
    assert "Traceback" not in result.stderr and out.read_text() == "not a folder"


PAIR_NOTEBOOK = '''\
# %% tags=["parameters"]
{me}_fails = False
{me}_sleeps = 0

# %%
import os
import pathlib
import time

pathlib.Path("{me}.started").write_text("started")
for _ in range(1200):  # both notebooks execute at once: each waits for the other to start
    if pathlib.Path("{other}.started").exists():
        break
    time.sleep(0.5)
else:
    raise RuntimeError("{other} never started while {me} ran")
print("threads", os.environ.get("OMP_NUM_THREADS"))
time.sleep({me}_sleeps)
if {me}_fails:
    raise RuntimeError("planned failure")
'''


@pytest.fixture
def pair_book(tiny_book) -> Path:
    """The tiny book with two notebooks, `first` and `second`, that finish only when both run at once."""
    (tiny_book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: executed/first\n"
                                        "  - file: executed/second\n")
    for me, other in [("first", "second"), ("second", "first")]:
        (tiny_book / "notebooks" / f"{me}.py").write_text(PAIR_NOTEBOOK.format(me=me, other=other))
    return tiny_book


def run_pair(book: Path, params: dict, *args) -> subprocess.CompletedProcess:
    (book / "params.yaml").write_text(yaml.safe_dump(params))
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    return subprocess.run([sys.executable, "scripts/run_notebooks.py", "--params", "params.yaml", "--out", "out", *args],
                          cwd=book, capture_output=True, text=True, timeout=600, env=env)


def test_jobs_executes_notebooks_at_once_each_with_its_share_of_the_cpus(pair_book):
    result = run_pair(pair_book, {}, "--jobs", "2")
    assert result.returncode == 0, result.stderr
    out = pair_book / "out"
    assert sorted(p.name for p in out.iterdir()) == ["first.ipynb", "second.ipynb", "timings.json"]
    threads = max(1, os.cpu_count() // 2)
    assert f"threads {threads}" in printed(out / "first.ipynb") and f"threads {threads}" in printed(out / "second.ipynb")
    assert sorted(json.loads((out / "timings.json").read_text())) == ["first", "second"]


def test_a_failure_stops_the_notebooks_executing_with_it(pair_book):
    started = time.perf_counter()
    result = run_pair(pair_book, {"first_fails": True, "second_sleeps": 600}, "--jobs", "2")
    assert time.perf_counter() - started < 300, "the second notebook ran on after the first failed"
    out = pair_book / "out"
    assert result.returncode == 1
    assert f"error: notebook first failed; the executed copy with the traceback is {out / 'first.failed.ipynb'}" in result.stderr
    assert f"[run_notebooks] stopped second; {out / 'second.ipynb'} was not written" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.failed.ipynb"]
