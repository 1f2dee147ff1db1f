"""Generation: KV-cached sampling against full recomputation, tokens per second (CPU).

    python benchmarks/bench_generation.py [--repeats 5] [--big-repeats 3] [--skip-big]

Both modes run the family's own sampler with its guidance (VAR: ``VAR.sample``, cfg 1.5, so
2B transformer rows; RAR: ``RARTransformer.generate`` with the config's guidance, 2B rows);
``use_kv_cache=False`` recomputes the whole sequence so far at every step. Tokens per second =
images x tokens per image / wall seconds. The speed-up of a repetition is recompute seconds /
cached seconds of that repetition.

Cases (the target, "the cache is at least 3 times faster", is judged at 256 tokens):

- ``var-testbed`` (85 tokens, scales 1-8) and ``rar-testbed`` (64 tokens), as trained;
- ``var-testbed-255`` / ``rar-testbed-256``: the testbed widths with VAR's first 8 official
  scales (1..10, 255 tokens) and RAR at 64x64 pixels (16x16 = 256 tokens), random weights;
- ``var-d16-255``: var-d16 with random weights, truncated to its first 8 of 10 scales (255 of
  680 tokens; the full sequence takes minutes per sample on two CPU cores);
- ``rar-b``: rar-b with random weights, all 256 tokens. Cached generation is measured end to
  end; full recomputation would take several minutes per sample here, so its time is
  *estimated*: the recompute step (a forward over n + 2 positions) is timed at a few prefix
  lengths n, interpolated linearly in n, and summed over n = 0..255. The same estimate is
  also made for ``rar-testbed-256``, where it can be checked against the measured time.

``token_forward_ratio``: transformer positions processed without cache / with cache, the
speed-up the cache would give if time were proportional to positions. For VAR it is small by
construction (10 steps at most: each recompute step only repeats the coarser scales), so the
3x target cannot be met by VAR at any size; for RAR (one token per step) it is ~N/2.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import common
from memlib.models.registry import build_generator, get_config
from memlib.models.var import PATCH_NUMS_256, scale_boundaries

TARGET_SPEEDUP = 3.0
TARGET_TOKENS = 256
VAR_255 = dict(patch_nums=PATCH_NUMS_256[:8])  # 1..10: 255 tokens
ESTIMATE_POINTS = (0, 128, 255)  # prefix lengths at which the RAR recompute step is timed


def token_forward_ratio(gen) -> float:
    """Positions run by full recomputation / positions run with the KV cache, per sample."""
    if gen.family == "var":
        bounds = scale_boundaries(gen.config.patch_nums)
        return sum(bounds[1:]) / bounds[-1]
    n = gen.seq_len
    return sum(step + 2 for step in range(n)) / (n + 1)


def sampler(gen, batch: int, use_kv_cache: bool):
    """A no-argument function that samples ``batch`` images (fixed seed) in the given mode."""
    labels = torch.arange(batch) % gen.num_classes
    if gen.family == "var":
        return lambda: gen.transformer.sample(
            gen.tokenizer.quantize, labels, torch.Generator().manual_seed(0), cfg=1.5, use_kv_cache=use_kv_cache
        )
    cfg = gen.config
    condition = gen.transformer.preprocess_condition(labels)
    return lambda: gen.transformer.generate(
        condition, cfg.guidance_scale, cfg.guidance_scale_pow, cfg.temperature,
        generator=torch.Generator().manual_seed(0), use_kv_cache=use_kv_cache,
    )


def estimated_recompute_seconds(gen, batch: int, repeats: int) -> tuple[list[float], dict]:
    """RAR only: estimated seconds of one full-recomputation sample, per repetition (see module
    docstring), and the timed step seconds per prefix length."""
    labels = torch.arange(batch) % gen.num_classes
    condition = gen.transformer.preprocess_condition(labels)
    rows = torch.cat([condition, gen.transformer.null_condition(condition)])  # guidance: 2B rows
    ids = torch.randint(0, gen.config.codebook_size, (rows.shape[0], gen.seq_len), generator=torch.Generator().manual_seed(0))
    steps = {
        n: (lambda n=n: gen.transformer.next_token_logits(ids[:, :n], rows, None)) for n in ESTIMATE_POINTS
    }
    with torch.no_grad():
        seconds = common.time_interleaved(steps, repeats, warmup=0)
    every_step = np.arange(gen.seq_len)
    totals = [
        float(np.interp(every_step, ESTIMATE_POINTS, [seconds[n][r] for n in ESTIMATE_POINTS]).sum())
        for r in range(repeats)
    ]
    return totals, {str(n): s for n, s in seconds.items()}


def case_entries(key: str, gen, weights: str, batch: int, repeats: int, estimate_only: bool = False,
                 check_estimate: bool = False) -> list[dict]:
    ctx = common.context()
    tokens = batch * gen.seq_len
    print(f"[generation] {key}: {gen.seq_len} tokens, {batch} images, {repeats} repetitions", flush=True)
    variants = {"kv_cache": sampler(gen, batch, True)}
    if not estimate_only:
        variants["recompute"] = sampler(gen, batch, False)
    warmup = 0 if estimate_only else 1
    seconds = common.time_interleaved(variants, repeats, warmup=warmup)
    settings = {
        "model": key, "weights": weights, "images": batch, "tokens_per_image": gen.seq_len,
        "guidance_rows": 2 * batch, "device": "cpu", "dtype": "float32", "warmup_rounds": warmup,
    }
    extra = {}
    if estimate_only or check_estimate:
        estimate, step_seconds = estimated_recompute_seconds(gen, batch, repeats)
        extra = {"estimate_step_seconds": step_seconds, "estimate_points": list(ESTIMATE_POINTS)}
        if estimate_only:
            seconds["recompute"] = estimate
            settings["recompute"] = "estimated from timed recompute steps (see bench_generation.py)"
        else:
            extra["estimated_recompute_seconds"] = estimate
            extra["estimate_error"] = common.median(estimate) / common.median(seconds["recompute"]) - 1
    speedup = [r / c for r, c in zip(seconds["recompute"], seconds["kv_cache"])]
    entries = [
        common.entry(f"generation/{key}/{mode}", [tokens / s for s in seconds[mode]], "tokens/s",
                     f"{mode.replace('_', ' ')} sampling throughput" + (" (estimated)" if mode == "recompute" and estimate_only else ""),
                     settings=settings, ctx=ctx, seconds=seconds[mode])
        for mode in ("kv_cache", "recompute")
    ]
    speedup_extra = {"token_forward_ratio": token_forward_ratio(gen), **extra}
    if gen.seq_len >= TARGET_TOKENS - 1:  # 255 (VAR's 8 scales) or 256 tokens
        speedup_extra["target"] = common.target(
            ">=", TARGET_SPEEDUP, common.median(speedup),
            f"KV-cached generation is at least {TARGET_SPEEDUP:g}x faster than full recomputation at 256 tokens",
        )
    entries.append(common.entry(f"generation/{key}/speedup", speedup, "x",
                                "recompute seconds / KV-cached seconds", settings=settings, ctx=ctx, **speedup_extra))
    print(f"[generation] {key}: speed-up {common.median(speedup):.1f}x "
          f"(positions ratio {token_forward_ratio(gen):.1f})", flush=True)
    return entries


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions, testbed shapes")
    parser.add_argument("--big-repeats", type=int, default=3, help="timed repetitions, var-d16 / rar-b shapes")
    parser.add_argument("--skip-big", action="store_true", help="only the testbed shapes")
    args = parser.parse_args(argv)
    common.setup_torch()

    entries = []
    for name in ("var-testbed", "rar-testbed"):
        gen, weights = common.testbed_generator(name)
        entries += case_entries(name, gen, weights, batch=4, repeats=args.repeats)
    gen, weights = common.testbed_generator("var-testbed", **VAR_255, resolution=40)
    entries += case_entries("var-testbed-255", gen, weights, batch=2, repeats=args.repeats)
    gen, weights = common.testbed_generator("rar-testbed", image_size=64, image_seq_len=256)
    entries += case_entries("rar-testbed-256", gen, weights, batch=2, repeats=args.big_repeats, check_estimate=True)
    if not args.skip_big:
        gen = build_generator(get_config("var-d16", **VAR_255, resolution=160)).eval()
        entries += case_entries("var-d16-255", gen, "random weights, var-d16 truncated to 8 scales", batch=1,
                                repeats=args.big_repeats)
        gen = build_generator("rar-b").eval()
        entries += case_entries("rar-b", gen, "random weights, official rar-b shape", batch=1,
                                repeats=args.big_repeats, estimate_only=True)
    common.write_entries(entries)


if __name__ == "__main__":
    main()
