"""Stage A of the attack over an ImageNet-layout folder of small JPEGs: memory and time against N.

    python benchmarks/bench_stage_a.py [--sizes 2000 20000] [--classes 100] [--workers 1] [--repeats 1]

Writes a synthetic folder ``<tmp>/train/<wnid>/<i>.JPEG`` (the first ``--classes`` ImageNet-1k
wnids, N / classes random smooth 64 x 80 JPEGs each), then, each in a fresh process
(``--child``, glibc's mmap threshold pinned as in bench_memory.py), with a small model (the
a 2-block VAR of 21 tokens at 16 x 16 with 1000 classes, random weights, 2 torch threads):

- ``stage_a``: what ``python -m memlib attack`` runs before its candidates: the folder listed
  (``memlib.stages.training_images``), then ``memlib.stages.stage_a`` (decoding in
  ``--workers`` DataLoader processes, tokenize, score, top ``per_class`` per class, shards
  written and merged). Peak RSS of the main process (``VmHWM``) and wall seconds.
- ``decode``: the same DataLoader over the same images alone (``GroundTruthViews``: decode +
  the family's attack view), no model.
- ``forward``: tokenize + ``memlib.extract.score_images`` alone, on synthetic images of the same
  shape and batch size, in the main process.

Targets: the peak RSS at the largest N is within 10% of that at the smallest; stage A's wall
time is close to the larger of decoding and forward alone (their sum would be no overlap).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common
from bench_memory import MALLOC_ENV, _rss_mib

MODEL = "var-d16"
# a tiny VAR (like tests/toy_pipeline.py's TINY_VAR, 1000 classes): 2 blocks, 21 tokens, 16 x 16 images,
# so that on two cores its forward is not far from the decoding time (the case overlap matters for)
MODEL_OVERRIDES = {"depth": 2, "width": 32, "num_heads": 2, "num_classes": 1000, "patch_nums": (1, 2, 4), "vocab_size": 16,
                   "z_channels": 4, "ch": 32, "ch_mult": (1, 1, 1), "num_res_blocks": 1, "using_sa": False,
                   "using_mid_sa": False, "resolution": 16}
BATCH_SIZE = 64
SHARD_SIZE = 256
PER_CLASS = 5
MAX_MEMORY_GROWTH = 0.10  # peak RSS at the largest N at most 10% above that at the smallest
MAX_OVERLAP_RATIO = 1.25  # stage A wall time / max(decode, forward): "close to the larger"


def write_folder(root: Path, n_images: int, n_classes: int, seed: int = 0) -> None:
    """``n_images`` small JPEGs spread evenly over the first ``n_classes`` ImageNet-1k wnids."""
    from PIL import Image

    from memlib.data import imagenet_wnids

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    for i in range(n_images):
        folder = root / imagenet_wnids()[i % n_classes]
        folder.mkdir(parents=True, exist_ok=True)
        small = np.clip(base.astype(int) + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(small).resize((80, 64), Image.BILINEAR).save(folder / f"{i:06d}.JPEG", quality=90)


def make_run(train_dir: Path, out: Path, workers: int):
    from memlib import stages
    from memlib.config import make_config
    from memlib.models.registry import build_generator, get_config

    config = make_config(dict(dataset="imagenet", imagenet_train_dir=str(train_dir), model=MODEL,
                              model_overrides={k: list(v) if isinstance(v, tuple) else v for k, v in MODEL_OVERRIDES.items()}, device="cpu", batch_size=BATCH_SIZE,
                              shard_size=SHARD_SIZE, per_class=PER_CLASS, num_workers=workers, amp=False))
    torch.manual_seed(0)
    gen = build_generator(get_config(MODEL, **MODEL_OVERRIDES)).eval()
    return stages.Run(config, out, torch.device("cpu"), _gen=gen)


def child(variant: str, train_dir: Path, workers: int) -> dict:
    """One measurement in this fresh process."""
    from memlib import stages
    from memlib.extract import score_images

    common.setup_torch()
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(train_dir, Path(tmp), workers)
        gen = run.generator()
        warm = torch.rand(2, 3, gen.image_size, gen.image_size)
        with torch.no_grad():  # lazy initialisation is not counted
            score_images(gen, gen.images_to_tokens(warm), torch.zeros(2, dtype=torch.long))
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _rss_mib("VmRSS")
        start = time.perf_counter()
        if variant == "stage_a":
            images = stages.training_images(run, 1.0)
            n = len(images)
            top, scores_N = stages.stage_a(run, images, np.arange(n), Path(tmp) / "scores", {})
            assert len(scores_N) == n and not torch.isnan(scores_N).any()
        elif variant == "decode":
            images = stages.training_images(run, 1.0)
            n = len(images)
            batches = [list(range(i, min(n, i + BATCH_SIZE))) for i in range(0, n, BATCH_SIZE)]
            loader = torch.utils.data.DataLoader(stages.GroundTruthViews(images, gen.image_size), batch_sampler=batches,
                                                 num_workers=workers, collate_fn=stages._collate_views)
            for _ in loader:
                pass
        else:  # forward alone: the same batches of synthetic images, nothing decoded
            n = sum(1 for _ in train_dir.glob("*/*.JPEG"))
            images_B3HW = torch.rand(BATCH_SIZE, 3, gen.image_size, gen.image_size, generator=torch.Generator().manual_seed(0))
            for i in range(0, n, BATCH_SIZE):
                b = min(BATCH_SIZE, n - i)
                with torch.no_grad():
                    tokens_BL = gen.images_to_tokens(images_B3HW[:b])
                score_images(gen, tokens_BL, torch.arange(i, i + b) % 1000, batch_size=BATCH_SIZE)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": n, "peak_rss_mib": _rss_mib("VmHWM"), "peak_above_start_mib": _rss_mib("VmHWM") - base,
            "start_rss_mib": base, "children_max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def run_child(variant: str, train_dir: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(train_dir), str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (this machine: 2 cores)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "TRAIN_DIR", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, train_dir, workers = args.child
        print(json.dumps(child(variant, Path(train_dir), int(workers))))
        return

    entries, peaks, seconds = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            train_dir = Path(tmp) / f"train-{n}"
            write_folder(train_dir, n, args.classes)
            for variant in ("stage_a", "decode", "forward"):
                ctx = common.context()
                runs = [run_child(variant, train_dir, args.workers) for _ in range(args.repeats)]
                seconds[variant, n] = common.median([r["seconds"] for r in runs])
                peaks[variant, n] = common.median([r["peak_rss_mib"] for r in runs])
                print(f"[stage_a] {variant} N={n}: {seconds[variant, n]:.1f} s, peak RSS {peaks[variant, n]:.0f} MiB", flush=True)
                settings = {"model": MODEL, "weights": "random weights", "model_overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in MODEL_OVERRIDES.items()},
                            "n_images": n, "classes": args.classes, "images": "synthetic 64 x 80 JPEGs, quality 90",
                            "batch_size": BATCH_SIZE, "shard_size": SHARD_SIZE, "per_class": PER_CLASS,
                            "num_workers": args.workers if variant != "forward" else 0}
                entries.append(common.entry(
                    f"stage_a/{variant}/{n}/seconds", [r["seconds"] for r in runs], "s",
                    {"stage_a": "stage A as the attack runs it (list, decode in workers, tokenize, score, select, shards)",
                     "decode": "decoding and the attack view alone (the same DataLoader, no model)",
                     "forward": "tokenize + score alone on synthetic images (nothing decoded)"}[variant],
                    settings=settings, ctx=ctx, peak_rss_mib=[r["peak_rss_mib"] for r in runs],
                    peak_above_start_mib=[r["peak_above_start_mib"] for r in runs],
                    children_max_rss_mib=[r["children_max_rss_mib"] for r in runs]))
        small, large = min(args.sizes), max(args.sizes)
        growth = peaks["stage_a", large] / peaks["stage_a", small] - 1
        entries.append(common.entry(
            "stage_a/memory_growth", [growth], "fraction",
            f"stage A's peak RSS (main process) at N = {large} over that at N = {small}, minus 1",
            settings={"from_n": small, "to_n": large, "peak_rss_mib": [peaks["stage_a", small], peaks["stage_a", large]]},
            ctx=common.context(),
            target=common.target("<=", MAX_MEMORY_GROWTH, growth,
                                 f"stage A's memory does not grow with N: at most {MAX_MEMORY_GROWTH:.0%} more at N = {large} than at {small}")))
        for n in args.sizes:
            bound = max(seconds["decode", n], seconds["forward", n])
            ratio = seconds["stage_a", n] / bound
            entries.append(common.entry(
                f"stage_a/overlap/{n}", [ratio], "x",
                f"stage A's wall time / the larger of decoding alone and forward alone, N = {n} "
                f"(no overlap at all: (decode + forward) / larger = "
                f"{(seconds['decode', n] + seconds['forward', n]) / bound:.2f})",
                settings={"n_images": n, "seconds": {v: seconds[v, n] for v in ("stage_a", "decode", "forward")},
                          "num_workers": args.workers},
                ctx=common.context(),
                target=common.target("<=", MAX_OVERLAP_RATIO, ratio,
                                     f"decoding overlaps the forward: stage A within {MAX_OVERLAP_RATIO:g}x the larger of the two alone")))
    common.write_entries(entries, replace_prefix="stage_a/")


if __name__ == "__main__":
    main()
