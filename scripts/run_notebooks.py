"""Execute the book's notebooks with papermill, one parameter file for the whole run.

    python scripts/run_notebooks.py --params notebooks/params/testbed.yaml
    python scripts/run_notebooks.py --params notebooks/params/smoke.yaml --only testbed --out /tmp/x

The notebooks and their order come from `_toc.yml`: every entry `executed/<name>` is the
notebook `notebooks/<name>.py` (py:percent). For each one this script

1. converts the source with jupytext and sets the kernel to `python3`,
2. reads the names its `parameters` cell declares and passes it those keys of the YAML file and,
   as `params_file`, the YAML file itself (the notebook reads the rest of the run's settings from
   it through `memlib.config`),
3. runs papermill in a child process (kernel `python3`, working directory = repository root)
   under a wall-clock limit, so a hung notebook is killed together with its kernel,
4. tags papermill's injected-parameters cell `hide-input` (the page shows it collapsed; it stays
   as the provenance of the page) and writes `<out>/<name>.ipynb`,
5. records the wall time in `<out>/timings.json`.

A YAML key that is neither a setting of `memlib.config` nor declared by a notebook is an error
naming the key (a typo guard): a misspelled parameter would otherwise be ignored silently and the
run would use the default. The first
notebook that fails stops the run; its partly executed copy, with the traceback, is kept.
"""

import argparse
import datetime
import difflib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
import yaml
from papermill.translators import PythonTranslator

from memlib.config import KEYS as CONFIG_KEYS

ROOT = Path(__file__).resolve().parents[1]
TOC = ROOT / "_toc.yml"
NOTEBOOK_DIR = ROOT / "notebooks"
EXECUTED_PREFIX = "executed/"
KERNEL = "python3"


def notebook_names(toc_path: Path = TOC) -> list[str]:
    """Names of the notebooks the toc lists (entries `executed/<name>`), in book order."""
    names = []

    def walk(node):
        if isinstance(node, dict):
            file = node.get("file")
            if isinstance(file, str) and file.startswith(EXECUTED_PREFIX):
                names.append(file.removeprefix(EXECUTED_PREFIX).removesuffix(".ipynb"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc_path.read_text()))
    return names


def source_notebook(name: str) -> nbformat.NotebookNode:
    """The py:percent source of notebook `name` as an ipynb node with kernel `python3`."""
    src = NOTEBOOK_DIR / f"{name}.py"
    if not src.is_file():
        raise SystemExit(f"error: _toc.yml lists executed/{name} but its source {src.relative_to(ROOT)} does not exist")
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    return nb


def declared_parameters(name: str, nb: nbformat.NotebookNode) -> list[str]:
    """Names assigned in the notebook's cell tagged `parameters` (which must exist)."""
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return [p.name for p in PythonTranslator.inspect(cell)]
    raise SystemExit(f"error: notebooks/{name}.py has no cell tagged 'parameters' "
                     "(start it with `# %% tags=[\"parameters\"]`)")


def read_params(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"error: parameter file {path} does not exist")
    params = yaml.safe_load(path.read_text())
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise SystemExit(f"error: parameter file {path} must be a mapping of names to values, got {type(params).__name__}")
    return params


def check_keys_declared(params: dict, declared: dict[str, list[str]], params_path: Path) -> None:
    """Typo guard: every key of the YAML file must be a setting of memlib.config or a parameter
    of at least one notebook."""
    known = sorted({p for names in declared.values() for p in names} | set(CONFIG_KEYS))
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SystemExit(f"error: key '{key}' in {params_path} is no setting of memlib.config and declared by no "
                             "notebook's parameters cell"
                             f"{hint} (declared: {', '.join(known) or 'none'})")


def run_papermill(nb: nbformat.NotebookNode, out_path: Path, params: dict, timeout_s: float) -> None:
    """Execute `nb` with papermill in a child process group, killed after `timeout_s` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        in_path = Path(tmp) / out_path.name
        nbformat.write(nb, in_path)
        cmd = [sys.executable, "-m", "papermill", str(in_path), str(out_path),
               "-k", KERNEL, "--cwd", str(ROOT), "-y", json.dumps(params),
               "--execution-timeout", str(max(1, int(timeout_s))), "--log-output", "--no-progress-bar"]
        # its own session, so that a timeout or Ctrl-C here can stop papermill and its kernel together
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise SystemExit(f"error: {out_path.stem} ran longer than --timeout {timeout_s:g} s and was stopped")
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.returncode != 0:
        raise SystemExit(f"error: notebook {out_path.stem} failed; the executed copy with the traceback is {out_path}")


def finish_executed(out_path: Path, name: str) -> None:
    """Tag the injected-parameters cell `hide-input`; record repository-relative paths, not this machine's."""
    nb = nbformat.read(out_path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    papermill = nb.metadata.setdefault("papermill", {})
    papermill["input_path"] = f"notebooks/{name}.py"
    papermill["output_path"] = f"executed/{name}.ipynb"
    papermill.pop("cwd", None)
    nbformat.write(nb, out_path)


def update_timings(out_dir: Path, name: str, seconds: float, params_path: Path) -> None:
    path = out_dir / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[name] = {
        "seconds": round(seconds, 2),
        "params_file": os.path.relpath(params_path, ROOT),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(timings, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=NOTEBOOK_DIR / "params" / "testbed.yaml",
                        help="YAML file of parameters shared by all notebooks (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="execute only this notebook (repeatable); the typo guard still checks all notebooks")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="wall-clock limit per notebook in seconds (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "executed",
                        help="folder for the executed notebooks and timings.json (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")

    names = notebook_names()
    unknown = [n for n in args.only if n not in names]
    if unknown:
        parser.error(f"--only {unknown[0]}: not a notebook of _toc.yml (notebooks: {', '.join(names)})")
    sources = {name: source_notebook(name) for name in names}
    declared = {name: declared_parameters(name, nb) for name, nb in sources.items()}
    params_path = args.params.resolve()
    params = read_params(params_path)
    check_keys_declared(params, declared, params_path)

    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or names:
        passed = {k: v for k, v in params.items() if k in declared[name]}
        if "params_file" in declared[name]:
            passed["params_file"] = os.path.relpath(params_path, ROOT)
        out_path = args.out.resolve() / f"{name}.ipynb"
        print(f"[run_notebooks] {name}: parameters {passed}", flush=True)
        start = time.perf_counter()
        run_papermill(sources[name], out_path, passed, args.timeout)
        seconds = time.perf_counter() - start
        finish_executed(out_path, name)
        update_timings(args.out, name, seconds, params_path)
        print(f"[run_notebooks] {name}: {seconds:.1f} s -> {out_path}", flush=True)


if __name__ == "__main__":
    main()
