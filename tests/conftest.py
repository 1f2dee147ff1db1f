"""Session fixtures shared by test files.

The smoke build of the book (notebooks executed with notebooks/params/smoke.yaml, then the
site built) is the slowest thing the suite does, so it happens once per session, in a copy of
the book's sources: tests/test_book.py reads the executed notebooks, tests/test_browser.py
opens the built site. The repository itself is left untouched.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_SOURCES = ["_config.yml", "_toc.yml", "README.md", "book", "notebooks", "scripts", "benchmarks"]  # README: book/parameters.md includes its table


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
