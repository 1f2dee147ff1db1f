"""The book's work beside other busy processes: how much slower it gets, per thread setting (CPU).

    python benchmarks/bench_contention.py [--repeats 3] [--busy 2] [--images 48]

The workload is the sweep's unit of work, the part of a cold ``make book`` that takes longest:
``memlib.extract.run_attack`` on given candidates (stages C and D: greedy decoding from every
prefix length of the run, decoding, pixel similarity) for the testbed VAR and RAR, ``--images``
training images each, at the book's prefix lengths (``notebooks/params/testbed.yaml``).

Each setting runs in its own child process (OpenMP reads its environment when torch loads), once
on the otherwise quiet machine and once beside ``--busy`` processes that spin a core each (a user's
browser, a second build: what a laptop has); the two are interleaved per repetition. Settings:

- ``default``: 2 torch threads, OpenMP's wait policy as shipped (threads busy-wait for work);
- ``passive``: 2 threads, ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep when idle);
- ``spin-short``: 2 threads, ``GOMP_SPINCOUNT=--spin`` (busy-wait briefly, then sleep);
- ``one-thread``: 1 torch thread.

Entries ``contention/<setting>/idle`` and ``/busy`` (seconds) and ``/ratio`` (busy / idle of the
same repetition); the ``spin-short`` ratio carries the target of issue 16: at most 3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common

TARGET_RATIO = 3.0
SHORT_SPIN = 10_000  # libgomp's default is 300,000 spins before a waiting thread sleeps
SETTINGS = ("default", "passive", "spin-short", "one-thread")


def child_env(setting: str, spin: int) -> dict:
    """The environment of a child process measuring ``setting`` (the parent's, without any
    OpenMP wait settings of its own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if setting == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif setting == "spin-short":
        env["GOMP_SPINCOUNT"] = str(spin)
    return env


def workload(images: int) -> float:
    """Seconds of the attack on ``images`` testbed training images for each testbed family
    (runs in the child process)."""
    import torch
    import yaml

    from memlib import data
    from memlib.extract import run_attack
    from memlib.similarity import PixelSimilarity

    params = yaml.safe_load((common.ROOT / "notebooks" / "params" / "testbed.yaml").read_text())
    testbed = data.load_testbed()
    seconds = 0.0
    for name in ("var-testbed", "rar-testbed"):
        gen, _ = common.testbed_generator(name)
        prefixes = [n for n in params["prefix_lengths"] if n in gen.valid_prefix_lengths()]
        with torch.no_grad():
            tokens = gen.images_to_tokens(data.testbed_views(testbed.train_images[:images], gen.family))
        labels = torch.as_tensor(testbed.train_labels[:images]).long()
        seconds += common.time_call(lambda: run_attack(
            gen, tokens, labels, similarity=PixelSimilarity(), threshold=params["threshold"], prefix_lengths=prefixes,
            candidates=torch.arange(images), batch_size=64))
    return seconds


def measure(setting: str, images: int, spin: int) -> float:
    """Seconds of :func:`workload` in a child process with ``setting``."""
    out = subprocess.run([sys.executable, __file__, "--child", setting, "--images", str(images)], env=child_env(setting, spin),
                         cwd=common.ROOT, check=True, capture_output=True, text=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def spinners(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep a core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the work (default: %(default)s)")
    parser.add_argument("--images", type=int, default=48, help="candidates per family (default: %(default)s)")
    parser.add_argument("--spin", type=int, default=SHORT_SPIN, help="GOMP_SPINCOUNT of spin-short (default: %(default)s)")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(1 if args.child == "one-thread" else common.THREADS)
        print(json.dumps({"seconds": workload(args.images)}))
        return
    common.wait_for_quiet_machine(args.max_load)
    ctx = common.context()
    runs = {s: {"idle": [], "busy": [], "ratio": []} for s in SETTINGS}
    for r in range(args.repeats):
        for setting in SETTINGS:
            idle = measure(setting, args.images, args.spin)
            busy_procs = spinners(args.busy)
            try:
                time.sleep(1.0)  # the spinners hold their cores before the work starts
                busy = measure(setting, args.images, args.spin)
            finally:
                for proc in busy_procs:
                    proc.kill()
                    proc.wait()
            runs[setting]["idle"].append(idle)
            runs[setting]["busy"].append(busy)
            runs[setting]["ratio"].append(busy / idle)
            print(f"[contention] {r + 1}/{args.repeats} {setting}: idle {idle:.1f} s, beside {args.busy} busy "
                  f"processes {busy:.1f} s ({busy / idle:.2f}x)", flush=True)
    settings = {"images_per_family": args.images, "busy_processes": args.busy, "threads": common.THREADS, "spin": args.spin,
                "workload": "run_attack on given candidates, var-testbed and rar-testbed, testbed.yaml prefix lengths"}
    entries = []
    descriptions = {"idle": "seconds of the workload on the quiet machine",
                    "busy": f"seconds of the workload beside {args.busy} busy processes",
                    "ratio": "busy / idle seconds, per repetition"}
    for setting, values in runs.items():
        for what, unit in (("idle", "s"), ("busy", "s"), ("ratio", "x")):
            extra = {}
            if setting == "spin-short" and what == "ratio":
                extra["target"] = common.target("<=", TARGET_RATIO, common.median(values[what]),
                                                f"beside {args.busy} busy processes at most {TARGET_RATIO:g}x the idle time")
            entries.append(common.entry(f"contention/{setting}/{what}", values[what], unit, descriptions[what],
                                        settings={**settings, "setting": setting}, ctx=ctx, **extra))
    common.write_entries(entries, replace_prefix="contention/")


if __name__ == "__main__":
    main()
