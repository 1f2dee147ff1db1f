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

With `--exercises` the script runs the book's exercise variants instead of its pages
(`notebooks/exercises.yaml`, or the file given): each is one page re-run with the
parameter file plus the variant's `overrides`, under its own `results_dir`
(`<results_dir>/exercises/<id>`, with its parameter file `params.yaml` there) so it never
overwrites the main run's summaries, figures or latest stage copies, and with `cache_dir` set to
the main run's results folder, so every stage whose settings the variant leaves unchanged is read
back from the main run's cache. The executed variant is `<out>/exercise-<id>.ipynb` (the page's
cells tagged `exercise`, its exercises and solutions, left out; its title names the exercise
run; its re-run box gives `--exercise <id>`), and its time is `exercise-<id>` in timings.json.
The main page's solutions paste the variant's glued numbers from there. `--exercise ID`
(repeatable) runs only those variants. The toc lists the variants as `executed/exercise-<id>`;
such entries are not pages of their own.

    python scripts/run_notebooks.py --params notebooks/params/testbed.yaml --exercises
    python scripts/run_notebooks.py --exercise unitmem-rar-last

`--jobs N` executes up to N notebooks at once, in the order above, each kernel with
max(1, CPUs // N) threads (OMP_NUM_THREADS, unless it is set already). The notebooks share the
stage cache, whose entry locks make a notebook that needs a stage another one is computing wait
for it and read it back, so any N gives the same results as N = 1 with those threads. The
exercise variants are independent of one another: `--exercises --jobs 2` on two cores takes about
half the time of one at a time with two threads each (benchmarks/bench_contention.py).

Papermill writes into a hidden temporary file beside `<out>/<name>.ipynb`, which is replaced
only when the notebook completed, so `<out>/<name>.ipynb` is always the last complete execution.
The first notebook that fails (or runs past --timeout) stops the run, and the others executing
with it; its partly executed copy, with the traceback, is `<out>/<name>.failed.ipynb`. Ctrl-C or
SIGTERM stops the notebooks and their kernels, removes the temporary files and exits 130 or 143
with one line saying what was kept. A SIGKILL of this script (a CI timeout) stops papermill too,
on Linux; its temporary file is removed by the next run.
"""

import argparse
import ast
import contextlib
import copy
import datetime
import difflib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import yaml
from papermill.translators import PythonTranslator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the memlib the notebooks import (they run in ROOT)
from memlib import style  # noqa: E402
from memlib.config import KEYS as CONFIG_KEYS  # noqa: E402
from memlib.results import process_exists  # noqa: E402
from memlib.yamlsafe import ParameterFileError, load_yaml  # noqa: E402

TOC = ROOT / "_toc.yml"
NOTEBOOK_DIR = ROOT / "notebooks"
EXECUTED_PREFIX = "executed/"
EXERCISE_PREFIX = "exercise-"  # executed/exercise-<id>: an exercise variant of a page, not a page of its own
EXERCISES = NOTEBOOK_DIR / "exercises.yaml"
EXERCISE_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
RUNNER_KEYS = ("results_dir", "cache_dir")  # set for every variant by this script, never by the variant
KERNEL = "python3"


def notebook_names(toc_path: Path = TOC) -> list[str]:
    """Names of the notebooks the toc lists (entries `executed/<name>`, not the exercise runs
    `executed/exercise-<id>`), in book order."""
    names = []

    def walk(node):
        if isinstance(node, dict):
            file = node.get("file")
            if isinstance(file, str) and file.startswith(EXECUTED_PREFIX) and not file.startswith(EXECUTED_PREFIX + EXERCISE_PREFIX):
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


def page_values(params: dict, nb: nbformat.NotebookNode, declared: list[str]) -> dict:
    """The settings a notebook runs with: the file's, the page's defaults over them, and the
    file's values of the keys the page declares over those (what the runner passes it)."""
    page = {k: v for k, v in notebook_defaults(nb).items() if k != "params_file"}
    return {**params, **page, **{k: v for k, v in params.items() if k in declared}}


def check_values(params: dict, sources: dict[str, nbformat.NotebookNode], declared: dict[str, list[str]],
                 params_path: Path) -> None:
    """Every notebook's run (the file's settings, its page values over them) checked before any
    notebook runs; one message names every problem and the notebooks it concerns."""
    problems: dict[str, list[str]] = {}
    for name, nb in sources.items():
        values = page_values(params, nb, declared[name])
        for problem in value_problems(values, nb):
            problems.setdefault(problem, []).append(name)
    if problems:
        lines = [f"{problem} (notebook{'s' if len(names) > 1 else ''} {', '.join(names)})"
                 for problem, names in problems.items()]
        raise SystemExit(f"error: invalid parameters in {params_path}; no notebook was run:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Exercise:
    """One exercise variant: page ``page`` re-run with ``overrides`` over the run's parameters."""

    id: str
    page: str
    overrides: dict

    @property
    def name(self) -> str:
        """Its executed notebook's name (``<out>/<name>.ipynb``) and its key in timings.json."""
        return EXERCISE_PREFIX + self.id


def load_exercises(path: Path, pages: list[str]) -> list[Exercise]:
    """The variants of an exercises file (``exercises:``, a list of ``{id, page, overrides}``),
    checked: ids unique, lower-case words joined by hyphens; ``page`` a notebook of the toc;
    ``overrides`` a non-empty mapping of settings of memlib.config other than the runner's own
    (``results_dir``, ``cache_dir``). The values are checked with the run (:func:`check_exercises`)."""
    data = read_params(path)
    if not isinstance(data, dict) or set(data) != {"exercises"} or not isinstance(data["exercises"], list):
        raise SystemExit(f"error: {path}: expected one key 'exercises' holding a list of {{id, page, overrides}}")
    exercises, seen = [], set()
    for i, entry in enumerate(data["exercises"]):
        where = f"{path}: exercises[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "page", "overrides"}:
            raise SystemExit(f"error: {where}: expected exactly the keys id, page, overrides, got {entry!r}")
        ex_id, page, overrides = entry["id"], entry["page"], entry["overrides"]
        if not isinstance(ex_id, str) or not EXERCISE_ID.fullmatch(ex_id):
            raise SystemExit(f"error: {where}: id {ex_id!r}: expected lower-case words joined by hyphens")
        if ex_id in seen:
            raise SystemExit(f"error: {where}: id {ex_id!r} is used twice")
        seen.add(ex_id)
        if page not in pages:
            raise SystemExit(f"error: {where} ({ex_id}): page {page!r} is not a notebook of _toc.yml "
                             f"(notebooks: {', '.join(pages)})")
        if not isinstance(overrides, dict) or not overrides:
            raise SystemExit(f"error: {where} ({ex_id}): overrides: expected a non-empty mapping of settings to values")
        for key in overrides:
            if key in RUNNER_KEYS or key not in CONFIG_KEYS:
                why = "is set by the runner for every variant" if key in RUNNER_KEYS else "is no setting of memlib.config"
                raise SystemExit(f"error: {where} ({ex_id}): override '{key}' {why}")
        exercises.append(Exercise(ex_id, page, overrides))
    return exercises


def exercise_params(params: dict, exercise: Exercise) -> dict:
    """The parameters of an exercise run: the file's, the overrides over them, its own results
    folder ``<results_dir>/exercises/<id>``, and the main run's stage cache (``cache_dir``)."""
    results_dir = params.get("results_dir") or "results"
    return {**params, **exercise.overrides, "results_dir": f"{results_dir}/exercises/{exercise.id}",
            "cache_dir": params.get("cache_dir") or results_dir}


def check_exercises(exercises: list[Exercise], params: dict, sources: dict[str, nbformat.NotebookNode],
                    declared: dict[str, list[str]], path: Path) -> None:
    """Every variant's run checked as its page will check it; one message names every problem."""
    problems = [f"{exercise.id} ({exercise.page}): {problem}" for exercise in exercises
                for problem in value_problems(page_values(exercise_params(params, exercise), sources[exercise.page],
                                                          declared[exercise.page]), sources[exercise.page])]
    if problems:
        raise SystemExit(f"error: invalid exercise variants in {path}; no notebook was run:\n  " + "\n  ".join(problems))


def exercise_notebook(nb: nbformat.NotebookNode, exercise: Exercise, params_file: str) -> nbformat.NotebookNode:
    """The page's source as the exercise run executes it: its cells tagged ``exercise`` (the
    exercises and their solutions) left out, and its title naming the run, what it changed and
    the page it varies."""
    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if "exercise" not in cell.get("metadata", {}).get("tags", [])]
    first = next((cell for cell in nb.cells if cell.cell_type == "markdown"), None)
    changed = ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in exercise.overrides.items())
    note = (f"# Exercise run: {exercise.id}\n\nThe page {{doc}}`{exercise.page}` executed with {changed} over "
            f"`{params_file}`, for its exercise {{ref}}`ex-{exercise.id}`. Stages whose settings this leaves unchanged "
            "were read from the main run's cache; this run's own files are in its results folder.\n")
    if first is not None and first.source.startswith("# "):
        first.source = note + first.source.split("\n", 1)[1] if "\n" in first.source else note
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    return nb


def replace_rerun_box(out_path: Path, exercise: Exercise, params_file: str) -> None:
    """Point the executed variant's glued re-run box at the exercise's own command (the page's
    box would re-run the main page into its executed notebook)."""
    nb = nbformat.read(out_path, as_version=4)
    box = style.exercise_rerun_box(exercise.id, exercise.page, params_file, exercise.overrides)
    own = lambda text: re.sub(r"^:name: (\S+)", rf":name: exercise-{exercise.id}-\1", text, flags=re.M)  # noqa: E731
    for cell in nb.cells:  # the page's figure labels (in its text and its glued leads) made the variant's own
        if cell.cell_type == "markdown":
            cell.source = own(cell.source)
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook", {})
            if record.get("name") == "rerun_box":
                output["data"][f"{record.get('mime_prefix', '')}text/markdown"] = box
            for mime, text in output.get("data", {}).items():
                if mime.endswith("text/markdown") and isinstance(text, str):
                    output["data"][mime] = own(text)
    nbformat.write(nb, out_path)


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


def die_with_parent() -> None:
    """Run in the papermill child before it starts: on Linux it is killed when this script dies,
    even by SIGKILL (which no handler sees), and its kernel follows it; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Stopped(Exception):
    """This notebook was stopped because another one failed or the run was interrupted."""


class Executions:
    """The notebooks executing now and their papermill processes: a failure or an interrupt
    stops all of them (:meth:`stop_all`), and none starts after that."""

    def __init__(self):
        self.lock = threading.Lock()
        self.names: list[str] = []
        self.procs: set[subprocess.Popen] = set()
        self.stopping = False

    def start(self, name: str) -> None:
        with self.lock:
            if self.stopping:
                raise Stopped(name)
            self.names.append(name)

    def end(self, name: str) -> None:
        with self.lock:
            self.names.remove(name)

    def add(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.add(proc)
            if self.stopping:
                os.killpg(proc.pid, signal.SIGKILL)

    def discard(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.discard(proc)

    def stop_all(self) -> list[str]:
        """Kill every papermill process group now; the names of the notebooks that were executing."""
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return list(self.names)


RUNNING = Executions()


def run_papermill(nb: nbformat.NotebookNode, out_path: Path, params: dict, timeout_s: float,
                  threads: int | None = None) -> str | None:
    """Execute `nb` with papermill in a child process group, killed after `timeout_s` seconds,
    its kernel with `threads` threads when given. Returns None when every cell ran, else what
    went wrong; :class:`Stopped` when :meth:`Executions.stop_all` stopped it."""
    env = None if threads is None or "OMP_NUM_THREADS" in os.environ else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        in_path = Path(tmp) / out_path.name
        nbformat.write(nb, in_path)
        cmd = [sys.executable, "-m", "papermill", str(in_path), str(out_path),
               "-k", KERNEL, "--cwd", str(ROOT), "-y", json.dumps(params),
               "--execution-timeout", str(max(1, int(timeout_s))), "--log-output", "--no-progress-bar"]
        # its own session, so that a timeout or Ctrl-C here can stop papermill and its kernel together
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent, env=env)
        RUNNING.add(proc)
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
        finally:
            RUNNING.discard(proc)
    if RUNNING.stopping:
        raise Stopped(out_path.name)
    return None if proc.returncode == 0 else "failed"


def execute(name: str, nb: nbformat.NotebookNode, out_path: Path, params: dict, timeout_s: float,
            source: str | None = None, finish: Callable[[Path], None] | None = None, threads: int | None = None) -> None:
    """Execute notebook `name` (the source `notebooks/<source or name>.py`) into `out_path`, which
    is replaced only by a complete execution, after `finish(path)` when given. A failed execution
    is kept as `<name>.failed.ipynb`; the temporary file never stays."""
    partial = temporary_copy(out_path)
    failed = out_path.with_name(f"{name}.failed.ipynb")
    try:
        problem = run_papermill(nb, partial, params, timeout_s, threads)
        if problem is not None:
            kept = f"; {out_path} keeps its last complete execution" if out_path.is_file() else ""
            if partial.is_file():
                os.replace(partial, failed)
                raise SystemExit(f"error: notebook {name} {problem}; "
                                 f"the executed copy with the traceback is {failed}{kept}")
            raise SystemExit(f"error: notebook {name} {problem}{kept}")
        finish_executed(partial, name, source or name)
        if finish is not None:
            finish(partial)
        os.replace(partial, out_path)
        failed.unlink(missing_ok=True)
    finally:
        partial.unlink(missing_ok=True)


def finish_executed(out_path: Path, name: str, source: str) -> None:
    """Tag the injected-parameters cell `hide-input`; record repository-relative paths, not this machine's."""
    nb = nbformat.read(out_path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    papermill = nb.metadata.setdefault("papermill", {})
    papermill["input_path"] = f"notebooks/{source}.py"
    papermill["output_path"] = f"executed/{name}.ipynb"
    papermill.pop("cwd", None)
    nbformat.write(nb, out_path)


TIMINGS_LOCK = threading.Lock()  # notebooks executing at once record their times one at a time


def update_timings(out_dir: Path, name: str, seconds: float, params_path: Path) -> None:
    path = out_dir / "timings.json"
    with TIMINGS_LOCK:
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
    parser.add_argument("--exercises", type=Path, nargs="?", const=EXERCISES, default=None, metavar="FILE",
                        help="execute the exercise variants of FILE (default: %(const)s) instead of the pages")
    parser.add_argument("--exercise", action="append", default=[], metavar="ID",
                        help="execute only this exercise variant (repeatable; implies --exercises)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="notebooks executed at once, each kernel with max(1, CPUs // N) threads (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.exercise and args.exercises is None:
        args.exercises = EXERCISES
    if args.exercises is not None and args.only:
        parser.error("--only selects pages; with --exercises select variants with --exercise ID")

    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"error: --out {args.out} is a file; expected a folder (created if missing)")
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)
    running, done = [], []
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
        jobs = [(name, name, sources[name], params, params_path, None) for name in args.only or names]
        if args.exercises is not None:
            jobs = exercise_jobs(args, names, sources, declared, params, params_path, parser)

        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SystemExit(f"error: --out {args.out}: cannot create the folder ({err.strerror})") from None
        threads = None if args.jobs == 1 else max(1, (os.cpu_count() or 1) // args.jobs)

        def kept(names: list[str]) -> str:
            """What each stopped notebook left: its last complete execution, or nothing."""
            return "; ".join(f"{args.out.resolve() / f'{name}.ipynb'} "
                             f"{'keeps its last complete execution' if (args.out / f'{name}.ipynb').is_file() else 'was not written'}"
                             for name in names)

        def run_job(job) -> None:
            name, page, nb, run_params, run_params_path, finish = job
            passed = {k: v for k, v in run_params.items() if k in declared[page]}
            if "params_file" in declared[page]:
                passed["params_file"] = os.path.relpath(run_params_path, ROOT)
            out_path = args.out.resolve() / f"{name}.ipynb"
            RUNNING.start(name)
            try:
                print(f"[run_notebooks] {name}: parameters {passed}", flush=True)
                start = time.perf_counter()
                execute(name, nb, out_path, passed, args.timeout, source=page, finish=finish, threads=threads)
                update_timings(args.out, name, time.perf_counter() - start, run_params_path)
                done.append(name)
                print(f"[run_notebooks] {name}: {time.perf_counter() - start:.1f} s -> {out_path}", flush=True)
            finally:
                RUNNING.end(name)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]  # started in this order
            try:
                for future in as_completed(futures):
                    future.result()  # a failed notebook's SystemExit
            except BaseException as err:
                running = RUNNING.stop_all()  # the failed notebook has ended: these are the others
                pool.shutdown(wait=True, cancel_futures=True)
                if running and not isinstance(err, Interrupted):
                    print(f"[run_notebooks] stopped {', '.join(running)}; {kept(running)}", file=sys.stderr, flush=True)
                raise
    except Interrupted as stop:
        if not running:
            print(f"[run_notebooks] interrupted by {stop} before any notebook ran", file=sys.stderr, flush=True)
        else:
            print(f"[run_notebooks] interrupted by {stop} during {', '.join(running)} (finished this run: "
                  f"{', '.join(done) or 'none'}); {kept(running)}", file=sys.stderr, flush=True)
        raise SystemExit(128 + stop.signum) from None


def exercise_jobs(args, names, sources, declared, params, params_path, parser) -> list[tuple]:
    """(name, page, notebook, parameters, parameter file, finish) of each exercise run asked for,
    after checking the exercises file and every variant's values; writes each variant's
    parameter file ``<results_dir>/exercises/<id>/params.yaml``."""
    path = args.exercises.resolve()
    exercises = load_exercises(path, names)
    known = [exercise.id for exercise in exercises]
    for ex_id in args.exercise:
        if ex_id not in known:
            parser.error(f"--exercise {ex_id}: not a variant of {os.path.relpath(path, ROOT)} (variants: {', '.join(known)})")
    chosen = [exercise for exercise in exercises if not args.exercise or exercise.id in args.exercise]
    check_exercises(chosen, params, sources, declared, path)
    shown_params = os.path.relpath(params_path, ROOT)
    jobs = []
    for exercise in chosen:
        run_params = exercise_params(params, exercise)
        run_params_path = ROOT / run_params["results_dir"] / "params.yaml"
        run_params_path.parent.mkdir(parents=True, exist_ok=True)
        run_params_path.write_text(f"# exercise {exercise.id}: {shown_params} with {json.dumps(exercise.overrides)} "
                                   f"(written by scripts/run_notebooks.py --exercises)\n" + yaml.safe_dump(run_params, sort_keys=False))
        finish = functools.partial(replace_rerun_box, exercise=exercise, params_file=shown_params)
        jobs.append((exercise.name, exercise.page, exercise_notebook(sources[exercise.page], exercise, shown_params),
                     run_params, run_params_path, finish))
    return jobs


if __name__ == "__main__":
    main()
