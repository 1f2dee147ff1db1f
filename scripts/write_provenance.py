"""Write book/provenance.md: what produced this build of the book.

    python scripts/write_provenance.py [--executed executed] [--out book/provenance.md]

`make book` runs it after the notebooks and before `jupyter-book build`; the page is a build
product (git-ignored) that the toc lists, so it must exist before every build. It records the
git commit, the date, the machine, the versions of the packages that matter, and, for every
executed notebook the toc lists, the parameters papermill injected (from the notebook's
metadata) and its wall time (from executed/timings.json).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import ROOT, notebook_names  # noqa: E402  (a sibling script, not a package)

PACKAGES = ["memlib", "torch", "torchvision", "numpy", "scipy", "pillow", "safetensors", "clean-fid",
            "matplotlib", "seaborn", "pandas", "jupyter-book", "sphinx", "myst-nb", "papermill",
            "jupytext", "ipykernel", "sphinxcontrib-bibtex", "sphinx-mathjax-offline"]


def git_commit() -> str:
    """The commit of the working tree, marked when it has uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "uncommitted (no git commit found)"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} (with uncommitted changes)" if dirty else commit


def package_versions() -> list[tuple[str, str]]:
    versions = []
    for name in PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return versions


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def notebook_section(executed_dir: Path) -> str:
    timings_path = executed_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    parts = []
    for name in notebook_names():
        path = executed_dir / f"{name}.ipynb"
        if not path.is_file():
            parts.append(f"### {name}\n\nNot executed in this build.")
            continue
        papermill = nbformat.read(path, as_version=4).metadata.get("papermill", {})
        timing = timings.get(name, {})
        seconds = timing.get("seconds")
        rows = [[f"`{key}`", f"`{json.dumps(value)}`"] for key, value in papermill.get("parameters", {}).items()]
        parts.append("\n\n".join([
            f"### {name}",
            f"Parameter file `{timing.get('params_file', 'unknown')}`; "
            f"wall time {f'{seconds:.1f} s' if seconds is not None else 'not recorded'}; "
            f"finished {timing.get('finished', 'unknown')}.",
            markdown_table(["parameter", "value"], rows) if rows else "No parameters were injected (the defaults ran).",
        ]))
    return "\n\n".join(parts)


def provenance_page(executed_dir: Path) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = [
        ["platform", platform.platform()],
        ["processor", platform.machine()],
        ["CPU count", str(os.cpu_count())],
        ["Python", platform.python_version()],
    ]
    return "\n\n".join([
        "# Provenance of this build",
        "This page is written by `scripts/write_provenance.py` each time `make book` runs; "
        "it describes the build you are reading.",
        markdown_table(["item", "value"], [["git commit", f"`{git_commit()}`"], ["built", now]]),
        "## Machine",
        markdown_table(["item", "value"], machine),
        "## Packages",
        markdown_table(["package", "version"], [[name, version] for name, version in package_versions()]),
        "## Notebooks",
        "The parameters papermill injected into each notebook, and its wall time. `params_file` is the "
        "run's parameter file: it holds every other setting (one it leaves out has memlib.config's default).",
        notebook_section(executed_dir),
    ]) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executed", type=Path, default=ROOT / "executed",
                        help="folder of the executed notebooks (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "provenance.md",
                        help="page to write (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out.write_text(provenance_page(args.executed))
    print(f"[write_provenance] wrote {args.out}")


if __name__ == "__main__":
    main()
