"""Wall time of `make test`, on a quiet machine and beside busy processes.

    python benchmarks/bench_tests.py [--repeats 1] [--busy 2] [--max-load 1.5]

It first waits for a quiet machine, as run_all.py does. Each repetition runs, from the
repository root, ``make test`` (with the .venv as it is: the suite, not the install) and, with
``--busy N``, ``make test`` again beside N processes that each keep a core busy (a user's
browser, a second build). Both carry the developers' target: the suite within 15 minutes on this
2-core machine, busy or not. A failed run stops the script without writing anything.
"""

from __future__ import annotations

import argparse
import subprocess
import time

import common
from bench_contention import spinners

BUDGET_S = 900.0  # the developers' guide: `make test` under 15 minutes, even when the machine is busy


def make_test() -> float:
    """Seconds of one ``make test`` (raises when it fails)."""
    start = time.perf_counter()
    subprocess.run(["make", "test"], cwd=common.ROOT, check=True)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    common.add_quiet_machine_options(parser)
    parser.add_argument("--busy", type=int, default=2,
                        help="busy processes beside the second run (default: %(default)s; 0: no busy run)")
    args = parser.parse_args(argv)
    common.wait_for_quiet_machine(args.max_load, args.max_wait)
    ctx = common.context()
    states = ("idle",) + (("busy",) if args.busy else ())
    runs = {state: [] for state in states}
    for r in range(args.repeats):
        for state in states:
            print(f"[tests] repetition {r + 1}/{args.repeats}: make test ({state})", flush=True)
            busy = spinners(args.busy) if state == "busy" else []
            try:
                runs[state].append(make_test())
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            print(f"[tests] {state}: {runs[state][-1]:.1f} s", flush=True)
    described = {"idle": "on a quiet machine", "busy": f"beside {args.busy} busy processes"}
    entries = [
        common.entry(f"tests/make_test/{state}", runs[state], "s", f"wall time of `make test` ({described[state]})",
                     settings={"command": "make test", "busy_processes": args.busy if state == "busy" else 0}, ctx=ctx,
                     target=common.target("<=", BUDGET_S, common.median(runs[state]),
                                          f"the suite in at most {BUDGET_S / 60:g} minutes"))
        for state in states
    ]
    common.write_entries(entries, replace_prefix="tests/")


if __name__ == "__main__":
    main()
