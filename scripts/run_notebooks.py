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

Before any notebook runs, the parameter file is read with `memlib.yamlsafe` (a duplicate key,
`1:30`, a non-UTF-8 or invalid file is one line naming the file), a YAML key that is neither a
setting of `memlib.config` nor declared by a notebook is an error naming the key (a typo guard: a
misspelled parameter would otherwise be ignored silently and the run would use the default), and
the run of EVERY notebook of the book (the file's settings with its page values over them, and
the models it runs) is checked as the notebook will check it; one message names every bad key.

Papermill writes into a hidden temporary file beside `<out>/<name>.ipynb`, which is replaced
only when the notebook completed, so `<out>/<name>.ipynb` is always the last complete execution.
The first notebook that fails (or runs past --timeout) stops the run; its partly executed copy,
with the traceback, is `<out>/<name>.failed.ipynb`. Ctrl-C or SIGTERM stops the notebook and its
kernel, removes the temporary file and exits 130 or 143 with one line saying what was kept. A
SIGKILL of this script (a CI timeout) stops papermill too, on Linux; its temporary file is removed
by the next run.
"""

import argparse
import ast
import datetime
import difflib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from papermill.translators import PythonTranslator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the memlib the notebooks import (they run in ROOT)
from memlib.config import KEYS as CONFIG_KEYS  # noqa: E402
from memlib.yamlsafe import ParameterFileError, load_yaml  # noqa: E402

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

    walk(load_yaml(toc_path))
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
    if not path.exists():
        raise SystemExit(f"error: parameter file {path} does not exist")
    try:
        return load_yaml(path)
    except ParameterFileError as err:
        raise SystemExit(f"error: {err}") from None


def check_keys_declared(params: dict, declared: dict[str, list[str]], params_path: Path) -> None:
    """Typo guard: every key of the YAML file must be a parameter of at least one notebook."""
    known = sorted({p for names in declared.values() for p in names} | set(CONFIG_KEYS))
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SystemExit(f"error: key '{key}' in {params_path} is no setting of memlib.config and declared by no "
                             "notebook's parameters cell"
                             f"{hint} (declared: {', '.join(known) or 'none'})")


def notebook_defaults(nb: nbformat.NotebookNode) -> dict:
    """The default of each name of the `parameters` cell that is a Python literal."""
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    defaults = {}
    for parameter in PythonTranslator.inspect(cell):
        try:
            defaults[parameter.name] = ast.literal_eval(parameter.default)
        except (ValueError, SyntaxError):
            pass  # an expression: the notebook computes it
    return defaults


RUNS_CALL = re.compile(r"stages\.make_runs\(config,\s*\"(\w+)\"([^)]*)\)")


def value_problems(values: dict, nb: nbformat.NotebookNode) -> list[str]:
    """The problems memlib's checks find in one notebook's run, one line each (`key: got ...;
    expected ...`), [] when there are none. THE one call into memlib's checks: the run's config
    (:func:`memlib.config.make_config` of the file's settings with the page's values over them),
    and for a page that runs models (its `stages.make_runs(config, STAGE, ...)` call) every model
    of the run for that stage: the keys the stage needs and the prefix lengths each model takes."""
    from memlib.config import KEYS, make_config
    from memlib.stages import make_runs

    settings = {key: value for key, value in values.items() if key in KEYS and value is not None}
    try:
        source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
        calls = RUNS_CALL.findall(source)
        for stage in sorted({stage for stage, _ in calls}) or [None]:  # every key a stage needs, in one message
            config = make_config(settings, stage=stage)
        for stage, rest in calls:
            family = re.search(r"family=\"(\w+)\"", rest)
            make_runs(config, stage, family=family.group(1) if family else None, usable_prefixes="usable_prefixes=True" in rest)
    except ValueError as err:
        lines = str(err).splitlines()
        return [line.strip() for line in (lines[1:] if lines[0].startswith("invalid ") else lines) if line.strip()]
    return []


def check_values(params: dict, sources: dict[str, nbformat.NotebookNode], declared: dict[str, list[str]],
                 params_path: Path) -> None:
    """Every notebook's run (the file's settings, its page values over them) checked before any
    notebook runs; one message names every problem and the notebooks it concerns."""
    problems: dict[str, list[str]] = {}
    for name, nb in sources.items():
        page = {k: v for k, v in notebook_defaults(nb).items() if k != "params_file"}
        values = {**params, **page, **{k: v for k, v in params.items() if k in declared[name]}}
        for problem in value_problems(values, nb):
            problems.setdefault(problem, []).append(name)
    if problems:
        lines = [f"{problem} (notebook{'s' if len(names) > 1 else ''} {', '.join(names)})"
                 for problem, names in problems.items()]
        raise SystemExit(f"error: invalid parameters in {params_path}; no notebook was run:\n  " + "\n  ".join(lines))


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum, frame):
    raise Interrupted(signum)


def temporary_copy(path: Path) -> Path:
    """This process's temporary file for ``path``, ``.<stem>.<pid>.tmp<suffix>`` beside it (hidden:
    the book never reads it); those of earlier runs whose process has ended are removed."""
    for stale in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        pid = stale.name.removesuffix(f".tmp{path.suffix}").rsplit(".", 1)[-1]
        if pid.isdigit() and not process_exists(int(pid)):
            stale.unlink(missing_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> None:
    """Run in the papermill child before it starts: on Linux it is killed when this script dies,
    even by SIGKILL (which no handler sees), and its kernel follows it; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def run_papermill(nb: nbformat.NotebookNode, out_path: Path, params: dict, timeout_s: float) -> str | None:
    """Execute `nb` with papermill in a child process group, killed after `timeout_s` seconds.
    Returns None when every cell ran, else what went wrong."""
    with tempfile.TemporaryDirectory() as tmp:
        in_path = Path(tmp) / out_path.name
        nbformat.write(nb, in_path)
        cmd = [sys.executable, "-m", "papermill", str(in_path), str(out_path),
               "-k", KERNEL, "--cwd", str(ROOT), "-y", json.dumps(params),
               "--execution-timeout", str(max(1, int(timeout_s))), "--log-output", "--no-progress-bar"]
        # its own session, so that a timeout or Ctrl-C here can stop papermill and its kernel together
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"ran longer than --timeout {timeout_s:g} s and was stopped"
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return None if proc.returncode == 0 else "failed"


def execute(name: str, nb: nbformat.NotebookNode, out_path: Path, params: dict, timeout_s: float) -> None:
    """Execute notebook `name` into `out_path`, which is replaced only by a complete execution.
    A failed execution is kept as `<name>.failed.ipynb`; the temporary file never stays."""
    partial = temporary_copy(out_path)
    failed = out_path.with_name(f"{name}.failed.ipynb")
    try:
        problem = run_papermill(nb, partial, params, timeout_s)
        if problem is not None:
            kept = f"; {out_path} keeps its last complete execution" if out_path.is_file() else ""
            if partial.is_file():
                os.replace(partial, failed)
                raise SystemExit(f"error: notebook {name} {problem}; "
                                 f"the executed copy with the traceback is {failed}{kept}")
            raise SystemExit(f"error: notebook {name} {problem}{kept}")
        finish_executed(partial, name)
        os.replace(partial, out_path)
        failed.unlink(missing_ok=True)
    finally:
        partial.unlink(missing_ok=True)


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
    partial = temporary_copy(path)
    try:
        partial.write_text(json.dumps(timings, indent=2) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=NOTEBOOK_DIR / "params" / "testbed.yaml",
                        help="YAML file of parameters shared by all notebooks (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="execute only this notebook (repeatable); "
                             "the typo guard and the value checks still cover all notebooks")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="wall-clock limit per notebook in seconds (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "executed",
                        help="folder for the executed notebooks and timings.json (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")

    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"error: --out {args.out} is a file; expected a folder (created if missing)")
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)
    current, done = None, []
    try:
        try:
            names = notebook_names()
        except ParameterFileError as err:
            raise SystemExit(f"error: {err}") from None
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"--only {unknown[0]}: not a notebook of _toc.yml (notebooks: {', '.join(names)})")
        sources = {name: source_notebook(name) for name in names}
        declared = {name: declared_parameters(name, nb) for name, nb in sources.items()}
        params_path = args.params.resolve()
        params = read_params(params_path)
        check_keys_declared(params, declared, params_path)
        check_values(params, sources, declared, params_path)

        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SystemExit(f"error: --out {args.out}: cannot create the folder ({err.strerror})") from None
        for current in args.only or names:
            passed = {k: v for k, v in params.items() if k in declared[current]}
            if "params_file" in declared[current]:
                passed["params_file"] = os.path.relpath(params_path, ROOT)
            out_path = args.out.resolve() / f"{current}.ipynb"
            print(f"[run_notebooks] {current}: parameters {passed}", flush=True)
            start = time.perf_counter()
            execute(current, sources[current], out_path, passed, args.timeout)
            update_timings(args.out, current, time.perf_counter() - start, params_path)
            done.append(current)
            print(f"[run_notebooks] {current}: {time.perf_counter() - start:.1f} s -> {out_path}", flush=True)
    except Interrupted as stop:
        if current is None:
            print(f"[run_notebooks] interrupted by {stop} before any notebook ran", file=sys.stderr, flush=True)
        else:
            out_path = args.out.resolve() / f"{current}.ipynb"
            kept = "keeps its last complete execution" if out_path.is_file() else "was not written"
            print(f"[run_notebooks] interrupted by {stop} during {current} (finished this run: "
                  f"{', '.join(done) or 'none'}); {out_path} {kept}", file=sys.stderr, flush=True)
        raise SystemExit(128 + stop.signum) from None

if __name__ == "__main__":
    main()
