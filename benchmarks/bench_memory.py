"""Peak memory of UnitMem collection for N = 100, 1,000 and 10,000 images: streaming against dense.

    python benchmarks/bench_memory.py [--repeats 3] [--sizes 100 1000 10000] [--dense-sizes 100 1000]

Every measurement runs in a fresh Python process (``--child``), so no earlier allocation counts.
The child builds a testbed-sized model, resets the kernel's peak-RSS counter (``VmHWM``, by
writing 5 to /proc/self/clear_refs), runs one collection over N synthetic images that are made
on the fly from their index (so the data set itself takes no memory that grows with N), and
reports the peak resident set size above its starting point (glibc's mmap threshold pinned,
see ``MALLOC_ENV``).

- ``stream``: ``memlib.collect.accumulate_unitmem``: per-image means go straight into the
  accumulator (sum, max, argmax per unit), so memory should not depend on N.
- ``dense``: the same per-image means (``memlib.collect.image_means``, batch by batch) kept in
  one (N, G, K, U) float64 tensor, then ``memlib.unitmem.unitmem_dense``: the approach that
  stores every per-image mean (needed for the median variant). Its storage alone is
  N x units x groups x 8 bytes, reported beside the measurement for every N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import common

MODEL = "rar-testbed"
BATCH_SIZE = 64  # the collection default; every N here fills whole batches
# glibc raises its mmap threshold as large blocks are freed and then keeps freed tensors in its
# heap, so peak RSS would measure allocator retention (tens of MiB, varying run to run) rather
# than live tensors. A fixed threshold returns every large tensor to the kernel when freed.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
MAX_GROWTH_MIB = 10.0  # "flat": the streaming peak grows by less than this from N = 100 to the largest N


class SyntheticImages:
    """``dataset[i]`` = (a uniform random image made from seed i, label i mod classes); nothing stored."""

    def __init__(self, n: int, image_size: int, num_classes: int):
        self.n, self.image_size, self.num_classes = n, image_size, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = torch.Generator().manual_seed(int(i))
        return torch.rand(3, self.image_size, self.image_size, generator=rng), int(i) % self.num_classes


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(method: str, n: int) -> dict:
    """One measurement in this (fresh) process: peak RSS of one collection over n images."""
    from memlib.collect import accumulate_unitmem, collection_groups, image_means
    from memlib.unitmem import unitmem_dense

    common.setup_torch()
    gen, weights = common.testbed_generator(MODEL)
    dataset = SyntheticImages(n, gen.image_size, gen.num_classes)
    groups = collection_groups(gen)
    views = common.testbed_view_fn(gen)
    with torch.no_grad():  # one small warm-up batch, so lazy initialisation is not counted
        image_means(gen, dataset, [0, 1], groups, n_views=1, views=views, activation="post",
                    batch_size=2, seed=0, amp=False)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
    base = _rss_mib("VmRSS")
    start = time.perf_counter()
    if method == "stream":
        acc = accumulate_unitmem(gen, dataset, range(n), n_views=1, views=views, batch_size=BATCH_SIZE, amp=False)
        acc.scores()
    else:
        chunks = [
            image_means(gen, dataset, list(range(s, min(s + BATCH_SIZE, n))), groups, n_views=1,
                        views=views, activation="post", batch_size=BATCH_SIZE, seed=0, amp=False)
            for s in range(0, n, BATCH_SIZE)
        ]
        mu_NGKU = torch.cat(chunks)
        del chunks
        unitmem_dense(mu_NGKU, rest="mean")
    seconds = time.perf_counter() - start
    return {
        "peak_above_start_mib": _rss_mib("VmHWM") - base,
        "start_rss_mib": base,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": seconds,
        "weights": weights,
    }


def run_child(method: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--child", method, str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **MALLOC_ENV}).stdout
    return json.loads(out.strip().splitlines()[-1])


def unit_grid() -> tuple[int, int, int]:
    """(G, K, U) of the model's UnitMem grid, from its config (nothing built)."""
    from memlib.collect import fc1_width
    from memlib.models.registry import build_generator

    gen = build_generator(MODEL, device="meta")
    return len(gen.position_groups()), len(gen.fc1_names()), fc1_width(gen)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000], help="N for streaming")
    parser.add_argument("--dense-sizes", type=int, nargs="+", default=[100, 1000], help="N for dense")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, n = args.child
        print(json.dumps(child(method, int(n))))
        return

    G, K, U = unit_grid()
    units = G * K * U
    entries = []
    peaks = {}
    for method, sizes in (("stream", args.sizes), ("dense", args.dense_sizes)):
        for n in sizes:
            ctx = common.context()
            runs = [run_child(method, n) for _ in range(args.repeats)]
            peaks[method, n] = common.median([r["peak_above_start_mib"] for r in runs])
            print(f"[memory] {method} N={n}: peak +{peaks[method, n]:.1f} MiB, "
                  f"{common.median([r['seconds'] for r in runs]):.1f} s", flush=True)
            settings = {
                "model": MODEL, "weights": runs[0]["weights"], "n_images": n, "batch_size": BATCH_SIZE,
                "n_views": 1, "unit_grid_GKU": [G, K, U], "images": "synthetic, made on the fly from the index",
            }
            entries.append(common.entry(
                f"memory/{method}/{n}", [r["peak_above_start_mib"] for r in runs], "MiB",
                f"{method}: peak resident memory above the process's state before collection (fresh process)",
                settings=settings, ctx=ctx,
                seconds=[r["seconds"] for r in runs],
                process_peak_rss_mib=[r["ru_maxrss_mib"] for r in runs],
                start_rss_mib=[r["start_rss_mib"] for r in runs],
            ))
    for n in sorted(set(args.sizes) | set(args.dense_sizes)):
        ctx = common.context()
        entries.append(common.entry(
            f"memory/dense_storage/{n}", [n * units * 8 / 2**20], "MiB",
            "computed: the dense approach's per-image means alone, N x groups x blocks x units x 8 bytes",
            settings={"model": MODEL, "n_images": n, "unit_grid_GKU": [G, K, U]}, ctx=ctx,
        ))
    accumulator_mib = units * (8 + 8 + 8) / 2**20
    entries.append(common.entry(
        "memory/accumulator_state", [accumulator_mib], "MiB",
        "computed: the streaming accumulator's state (float64 sum and max, int64 argmax per unit), any N",
        settings={"model": MODEL, "unit_grid_GKU": [G, K, U]}, ctx=common.context(),
    ))
    small, large = min(args.sizes), max(args.sizes)
    growth = peaks["stream", large] - peaks["stream", small]
    entries.append(common.entry(
        "memory/stream_growth", [growth], "MiB",
        f"streaming peak at N = {large} minus at N = {small} (medians)",
        settings={"model": MODEL, "from_n": small, "to_n": large}, ctx=common.context(),
        target=common.target("<=", MAX_GROWTH_MIB, growth,
                             f"streaming memory is flat: grows by at most {MAX_GROWTH_MIB:g} MiB from N = {small} to {large}"),
    ))
    common.write_entries(entries, replace_prefix="memory/")


if __name__ == "__main__":
    main()
