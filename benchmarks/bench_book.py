"""Wall time of `make book`, cold and with a warm cache, and of each notebook.

    python benchmarks/bench_book.py [--repeats 3] [--params notebooks/params/testbed.yaml] [--max-load 1.5] [--busy 2]

It first waits for a quiet machine, as run_all.py does.

Each repetition runs, from the repository root:

1. cold: ``make clean`` and delete the parameter file's ``results_dir`` (where notebooks keep
   their results and caches) and ``.cache/``, then ``make book PARAMS=...``;
2. warm: ``make book PARAMS=...`` again, with everything the cold run left in place;
3. with ``--busy N``: cold again, beside N processes that each keep a core busy (a user's
   browser, a second build), and the ratio of its time to the idle cold time of the same
   repetition (issue 16's target: at most 3x).

The cold entry carries the budget of the testbed (issue 13: at most 20 minutes on the 2-core
machine it was sized for).

So it DELETES _build/, executed/, book/provenance.md, the results folder and .cache/ (all
re-created by `make book`; none is tracked by git). The per-notebook seconds come from
executed/timings.json, which scripts/run_notebooks.py writes during each build. A failed
build stops the script without writing anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import yaml

import common
from bench_contention import spinners

TIMINGS = common.ROOT / "executed" / "timings.json"
COLD_BUDGET_S = 1200.0  # issue 13: a cold `make book` of the testbed in at most 20 minutes
BUSY_RATIO = 3.0  # issue 16: beside two busy processes at most 3x the idle time


def make_book(params: Path) -> tuple[float, dict[str, float]]:
    """Seconds of one ``make book`` and the per-notebook seconds it recorded."""
    start = time.perf_counter()
    subprocess.run(["make", "book", f"PARAMS={params}"], cwd=common.ROOT, check=True)
    seconds = time.perf_counter() - start
    timings = json.loads(TIMINGS.read_text())
    return seconds, {name: float(t["seconds"]) for name, t in timings.items()}


def clear_caches(params: Path) -> None:
    """``make clean``, then delete the parameter file's ``results_dir`` and ``.cache/``; refuses
    (before deleting anything) a ``results_dir`` outside the repository."""
    results_dir = (yaml.safe_load((common.ROOT / params).read_text()) or {}).get("results_dir")
    folders = [(common.ROOT / folder).resolve() for folder in ([results_dir] if results_dir else []) + [".cache"]]
    for folder in folders:
        if common.ROOT not in folder.parents:
            raise ValueError(f"results_dir {results_dir!r} in {params} lies outside the repository; not deleting it")
    subprocess.run(["make", "clean"], cwd=common.ROOT, check=True)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    common.add_quiet_machine_options(parser)
    parser.add_argument("--busy", type=int, default=0,
                        help="also a cold build beside this many busy processes (default: %(default)s, none)")
    parser.add_argument("--params", type=Path, default=Path("notebooks/params/testbed.yaml"),
                        help="parameter file, relative to the repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    common.wait_for_quiet_machine(args.max_load, args.max_wait)
    ctx = common.context()
    states = ("cold", "warm") + (("busy",) if args.busy else ())
    runs = {state: [] for state in states}
    notebooks = {state: {} for state in states}
    for r in range(args.repeats):
        for state in states:
            if state != "warm":
                clear_caches(args.params)
            print(f"[book] repetition {r + 1}/{args.repeats}: make book ({state})", flush=True)
            busy = spinners(args.busy) if state == "busy" else []
            try:
                seconds, per_notebook = make_book(args.params)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            runs[state].append(seconds)
            for name, s in per_notebook.items():
                notebooks[state].setdefault(name, []).append(s)
            print(f"[book] {state}: {seconds:.1f} s", flush=True)
    settings = {"params": args.params.as_posix(), "command": f"make book PARAMS={args.params.as_posix()}"}
    described = {"cold": "after make clean and deleting the results and caches",
                 "warm": "right after a build: warm caches",
                 "busy": f"cold, beside {args.busy} busy processes"}
    entries = []
    for state in states:
        extra = {}
        if state == "cold":
            extra["target"] = common.target("<=", COLD_BUDGET_S, common.median(runs[state]),
                                            f"a cold build in at most {COLD_BUDGET_S / 60:g} minutes")
        entries.append(common.entry(f"book/make_book/{state}", runs[state], "s",
                                    f"wall time of `make book` ({described[state]})", settings=settings, ctx=ctx, **extra))
    if args.busy:
        ratios = [busy / cold for busy, cold in zip(runs["busy"], runs["cold"])]
        entries.append(common.entry("book/make_book/busy-ratio", ratios, "x",
                                    f"cold `make book` beside {args.busy} busy processes / idle, per repetition",
                                    settings={**settings, "busy_processes": args.busy}, ctx=ctx,
                                    target=common.target("<=", BUSY_RATIO, common.median(ratios),
                                                         f"beside {args.busy} busy processes at most {BUSY_RATIO:g}x the idle time")))
    entries += [
        common.entry(f"book/notebook/{name}/{state}", seconds, "s",
                     f"papermill wall time of notebook {name} in a {state} `make book` (executed/timings.json)",
                     settings=settings, ctx=ctx)
        for state in states for name, seconds in sorted(notebooks[state].items())
    ]
    common.write_entries(entries, replace_prefix="book/")


if __name__ == "__main__":
    main()
