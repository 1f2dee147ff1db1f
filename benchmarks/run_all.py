"""Run the CPU benchmarks and the GPU check, each in a fresh process (about 10-15 minutes on two cores).

    python benchmarks/run_all.py [--max-load 2] [--max-wait 900]

First waits (up to ``--max-wait`` seconds) until the 1-minute load average is at most
``--max-load``, since other work on the machine slows every figure; each entry records the
load average it was measured under either way. Then runs bench_capture.py, bench_memory.py,
bench_generation.py, bench_bf16.py and gpu_check.py (which only records "not measured" without CUDA).
`make book` timings and stage A at 20,000 images are separate (bench_book.py rebuilds the book
several times; bench_stage_a.py takes tens of minutes on two cores).

The scripts inherit the environment as it is, OpenMP's wait policy included (see the README
here for how much it matters), and every entry records the policy it ran under.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import common

SCRIPTS = ("bench_capture.py", "bench_memory.py", "bench_generation.py", "bench_bf16.py", "gpu_check.py")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_quiet_machine_options(parser)
    args = parser.parse_args(argv)
    common.wait_for_quiet_machine(args.max_load, args.max_wait)
    here = Path(__file__).resolve().parent
    for script in SCRIPTS:
        start = time.perf_counter()
        print(f"[run_all] {script}", flush=True)
        subprocess.run([sys.executable, str(here / script)], check=True)
        print(f"[run_all] {script}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
