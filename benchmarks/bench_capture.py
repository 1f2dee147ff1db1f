"""Capture overhead: UnitMem collection against the bare teacher-forced forward (CPU).

    python benchmarks/bench_capture.py [--repeats 5] [--big-repeats 3] [--skip-big]

On the same batches of synthetic images, each repetition times four things:

- ``tokenize``: ``gen.images_to_tokens`` (what collection must do first anyway);
- ``forward``: the bare ``teacher_forced_logits`` on those tokens, no hooks;
- ``hooked``: the same forward inside ``memlib.hooks.capture`` with collection's own reducer
  (``memlib.collect.group_means_reducer``) and the accumulator update: capture alone;
- ``collect``: ``memlib.collect.accumulate_unitmem`` end to end (tokenize, hooked forward,
  per-image means, accumulator), one view per image.

Two ratios per repetition (throughput of collection over throughput without capture; 1 = free):

- ``ratio`` = (tokenize + forward) / collect: the whole collection against the same work
  without capture. Target: at least 0.9.
- ``forward_ratio`` = forward / hooked: the forward pass alone, with and without capture.

Models: the testbed VAR and RAR (trained checkpoints when data/checkpoints has them, else
random weights of the testbed shape) and a var-d16-shaped model with random weights.
"""

from __future__ import annotations

import argparse

import torch

import common
from memlib.collect import accumulate_unitmem, collection_groups, fc1_width, group_means_reducer, hooked_names
from memlib.hooks import capture
from memlib.models.registry import build_generator
from memlib.unitmem import UnitMemAccumulator

TARGET_RATIO = 0.9


def capture_case(gen, images_B3HW: torch.Tensor, labels_B: torch.Tensor, batch_size: int, repeats: int) -> dict:
    """Seconds per repetition of tokenize / forward / hooked / collect on ``images`` in batches."""
    dataset = list(zip(images_B3HW, labels_B.tolist()))
    ids = list(range(len(dataset)))
    starts = range(0, len(dataset), batch_size)
    names = hooked_names(gen, "post")
    units = fc1_width(gen)
    groups = collection_groups(gen)
    reduce = group_means_reducer(groups)
    tokens = [gen.images_to_tokens(images_B3HW[s : s + batch_size]) for s in starts]
    labels = [labels_B[s : s + batch_size] for s in starts]

    def tokenize():
        with torch.no_grad():
            for s in starts:
                gen.images_to_tokens(images_B3HW[s : s + batch_size])

    def forward():
        with torch.no_grad():
            for tokens_BL, y in zip(tokens, labels):
                gen.teacher_forced_logits(tokens_BL, y)

    def hooked():
        acc = UnitMemAccumulator((len(groups), len(names), units))
        with torch.no_grad(), capture(gen.transformer, names, reduce) as store:
            for i, (tokens_BL, y) in enumerate(zip(tokens, labels)):
                gen.teacher_forced_logits(tokens_BL, y)
                means_BGKU = torch.stack([store[name][-1] for name in names], dim=2)
                acc.add(means_BGKU, torch.arange(i * batch_size, i * batch_size + len(y)))

    def collect():
        accumulate_unitmem(gen, dataset, ids, n_views=1, views=common.testbed_view_fn(gen), batch_size=batch_size,
                           amp=False)

    return common.time_interleaved(
        {"tokenize": tokenize, "forward": forward, "hooked": hooked, "collect": collect}, repeats
    )


def case_entries(key: str, gen, weights: str, n_images: int, batch_size: int, repeats: int) -> list[dict]:
    ctx = common.context()
    images, labels = common.synthetic_batch(gen, n_images)
    print(f"[capture] {key}: {n_images} images, batch {batch_size}, {repeats} repetitions", flush=True)
    sec = capture_case(gen, images, labels, batch_size, repeats)
    settings = {
        "model": key, "weights": weights, "images_per_run": n_images, "batch_size": batch_size,
        "n_views": 1, "activation": "post", "device": "cpu", "dtype": "float32",
        "position_groups": len(gen.position_groups()), "blocks": len(gen.fc1_names()),
    }
    per_second = {name: [n_images / s for s in runs] for name, runs in sec.items()}
    ratio = [(t + f) / c for t, f, c in zip(sec["tokenize"], sec["forward"], sec["collect"])]
    forward_ratio = [f / h for f, h in zip(sec["forward"], sec["hooked"])]
    what = {
        "tokenize": "images_to_tokens only",
        "forward": "bare teacher-forced forward on pre-computed tokens (no hooks)",
        "hooked": "teacher-forced forward with collection's hooks and accumulator update",
        "collect": "accumulate_unitmem end to end (tokenize + hooked forward + accumulate)",
    }
    entries = [
        common.entry(f"capture/{key}/{name}", per_second[name], "images/s", what[name], settings=settings, ctx=ctx)
        for name in what
    ]
    entries.append(common.entry(
        f"capture/{key}/ratio", ratio, "x",
        "collection throughput / throughput of the same work without capture ((tokenize + forward) / collect)",
        settings=settings, ctx=ctx,
        target=common.target(">=", TARGET_RATIO, common.median(ratio),
                             "UnitMem collection keeps at least 0.9 of the bare forward's throughput"),
    ))
    entries.append(common.entry(
        f"capture/{key}/forward_ratio", forward_ratio, "x",
        "teacher-forced forward throughput with capture / without (forward / hooked), tokenization excluded",
        settings=settings, ctx=ctx,
    ))
    print(f"[capture] {key}: ratio {common.median(ratio):.3f}, forward-only ratio {common.median(forward_ratio):.3f}",
          flush=True)
    return entries


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions, testbed models")
    parser.add_argument("--big-repeats", type=int, default=3, help="timed repetitions, var-d16 shape")
    parser.add_argument("--skip-big", action="store_true", help="only the testbed models")
    args = parser.parse_args(argv)
    common.setup_torch()

    entries = []
    for name in ("var-testbed", "rar-testbed"):
        gen, weights = common.testbed_generator(name)
        entries += case_entries(name, gen, weights, n_images=128, batch_size=64, repeats=args.repeats)
    if not args.skip_big:
        gen = build_generator("var-d16").eval()
        entries += case_entries("var-d16", gen, "random weights, official var-d16 shape", n_images=1,
                                batch_size=1, repeats=args.big_repeats)
    common.write_entries(entries)


if __name__ == "__main__":
    main()
