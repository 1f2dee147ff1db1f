"""Session fixtures shared by test files.

The smoke build of the book (notebooks executed with notebooks/params/smoke.yaml, then the
site built) is the slowest thing the suite does, so it happens once per session, in a copy of
the book's sources: tests/test_book.py reads the executed notebooks, tests/test_browser.py
opens the built site. The repository itself is left untouched.

`make test` runs the suite on two pytest-xdist workers (`-n 2`): the tests of one file run on
one worker, so that a module fixture is built once, and every test that reads the smoke book runs
on the worker that built it (:func:`pytest_xdist_make_scheduler`).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_SOURCES = ["_config.yml", "_toc.yml", "README.md", "book", "notebooks", "scripts", "benchmarks"]  # README: book/parameters.md includes its table


SMOKE_FILES = ("tests/test_book.py", "tests/test_browser.py")  # every test file that uses smoke_book


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which `make test` runs with
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler for `make test -n 2`: each test file is one unit of work, run on
    one worker, so that its module fixtures are built once, and the files of SMOKE_FILES are one
    unit, so that the smoke book is built once; units go out in collection order (test_book.py
    is the second file), so that the smoke book, the longest unit, starts first."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "smoke book" if path in SMOKE_FILES else path

    config.option.loadscopereorder = False  # xdist would put the files with the most tests first
    return ByFile(config, log)


def pytest_collection_modifyitems(items):
    """A test outside SMOKE_FILES that uses the smoke book is an error (it would make a second
    worker build the book again)."""
    for item in items:
        if "smoke_book" in item.fixturenames and item.nodeid.split("::", 1)[0] not in SMOKE_FILES:
            raise pytest.UsageError(f"{item.nodeid} uses the smoke book; add its file to SMOKE_FILES in tests/conftest.py")


def run_checked(*cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> Path:
    """A copy of the book's sources with every notebook and every exercise variant executed
    under the smoke parameters (executed/ beside the sources, as `make book` does)."""
    copy = tmp_path_factory.mktemp("book")
    for name in BOOK_SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "provenance.md"))
        elif source.exists():
            shutil.copy2(source, copy / name)
    # memlib is copied, not linked: its repository root (memlib.config.REPO_ROOT, against which the
    # pages resolve relative paths and write their results) must be the copy, as in a clone
    shutil.copytree(ROOT / "memlib", copy / "memlib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (copy / "data").symlink_to(ROOT / "data", target_is_directory=True)  # read, not written, by the notebooks
    run_checked(sys.executable, "scripts/run_notebooks.py", "--params", "notebooks/params/smoke.yaml", "--timeout", "600", "--jobs", "2",
                cwd=copy)
    # the exercise variants, as `make book` runs them: the pages' solutions paste their numbers
    run_checked(sys.executable, "scripts/run_notebooks.py", "--params", "notebooks/params/smoke.yaml", "--exercises", "--jobs", "2",
                "--timeout", "600", cwd=copy)
    return copy


@pytest.fixture(scope="session")
def smoke_site(smoke_book) -> Path:
    """The site built from :func:`smoke_book` with `jupyter-book build -W -n`: path of _build/html."""
    run_checked(sys.executable, "scripts/write_provenance.py", cwd=smoke_book)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    run_checked(jupyter_book, "build", ".", "--builder", "html", "-W", "-n", "--keep-going", cwd=smoke_book)
    return smoke_book / "_build" / "html"
