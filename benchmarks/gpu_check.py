"""The GPU check: var-d16 and rar-b shapes with random weights, bf16, on one CUDA device.

    python benchmarks/gpu_check.py [--peak-tflops 989]

For each model it measures (median of 3 timed repetitions after one warm-up, CUDA synchronized):

- ``collect``: images per second of ``memlib.collect.accumulate_unitmem`` (one view per image,
  bf16 autocast for the transformer, float32 tokenizer: the collection's own ``amp=True`` path)
  on synthetic images;
- ``generate``: images per second of the KV-cached sampler (``Generator.sample`` with the
  family's guidance) under bf16 autocast;
- ``forward_peak_fraction``: FLOPs of one teacher-forced forward (counted by
  ``torch.utils.flop_counter``: matrix products and attention) / its median time / the GPU's
  dense bf16 tensor-core peak (from the table below, or ``--peak-tflops``).

Without CUDA it refuses: it measures nothing and records "not measured: no GPU was available"
in benchmarks/results.json (unless the file already holds GPU measurements, which it keeps).
"""

from __future__ import annotations

import argparse
import sys

import torch

import common

MODELS = ("var-d16", "rar-b")
COLLECT_IMAGES, COLLECT_BATCH = 256, 64
GENERATE_BATCH = 32
FORWARD_BATCH = 64
REPEATS = 3
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, in FLOP/s; the first
# name fragment contained in the device name wins.
BF16_PEAK_FLOPS = {
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
}


def bf16_peak(device_name: str) -> float | None:
    for fragment, peak in BF16_PEAK_FLOPS.items():
        if fragment in device_name:
            return peak
    return None


def timed(fn, device: torch.device, repeats: int = REPEATS) -> list[float]:
    """Seconds per call (one untimed warm-up), synchronized on CUDA devices."""

    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return common.time_interleaved({"fn": call}, repeats, warmup=1)["fn"]


def collect_seconds(gen, device: torch.device, n_images: int, batch: int, amp: bool) -> list[float]:
    from memlib.collect import accumulate_unitmem

    images, labels = common.synthetic_batch(gen, n_images)
    dataset = list(zip(images, labels.tolist()))
    views = common.testbed_view_fn(gen)
    return timed(lambda: accumulate_unitmem(gen, dataset, range(n_images), n_views=1, views=views, batch_size=batch, amp=amp),
                 device)


def generate_seconds(gen, device: torch.device, batch: int, amp: bool) -> list[float]:
    labels = (torch.arange(batch) % gen.num_classes).to(device)

    def sample():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            gen.sample(labels, generator=torch.Generator(device=device).manual_seed(0))

    return timed(sample, device)


def forward_flops_and_seconds(gen, device: torch.device, batch: int, amp: bool) -> tuple[float, list[float]]:
    """FLOPs of one teacher-forced forward on random tokens, and its seconds per repetition."""
    from torch.utils.flop_counter import FlopCounterMode

    vocab = gen.config.vocab_size if gen.family == "var" else gen.config.codebook_size
    rng = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, gen.seq_len), generator=rng).to(device)
    labels = (torch.arange(batch) % gen.num_classes).to(device)

    def forward():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            gen.teacher_forced_logits(tokens, labels)

    counter = FlopCounterMode(display=False)
    with counter:
        forward()
    return float(counter.get_total_flops()), timed(forward, device, repeats=5)


def model_entries(name: str, device: torch.device, peak: float | None, ctx: dict) -> list[dict]:
    from memlib.models.registry import build_generator

    gen = build_generator(name, device=device).eval()
    settings = {"model": name, "weights": "random weights, official shape", "device": str(device),
                "dtype": "bfloat16 autocast", "gpu": ctx["machine"]["gpu"]}
    print(f"[gpu] {name}: collection", flush=True)
    collect = collect_seconds(gen, device, COLLECT_IMAGES, COLLECT_BATCH, amp=True)
    print(f"[gpu] {name}: generation", flush=True)
    generate = generate_seconds(gen, device, GENERATE_BATCH, amp=True)
    print(f"[gpu] {name}: teacher-forced forward", flush=True)
    flops, forward = forward_flops_and_seconds(gen, device, FORWARD_BATCH, amp=True)
    entries = [
        common.entry(f"gpu/{name}/collect", [COLLECT_IMAGES / s for s in collect], "images/s",
                     "UnitMem collection (accumulate_unitmem, bf16 forward)",
                     settings={**settings, "images_per_run": COLLECT_IMAGES, "batch_size": COLLECT_BATCH},
                     ctx=ctx, seconds=collect),
        common.entry(f"gpu/{name}/generate", [GENERATE_BATCH / s for s in generate], "images/s",
                     "KV-cached sampling with the family's guidance (bf16)",
                     settings={**settings, "batch_size": GENERATE_BATCH}, ctx=ctx, seconds=generate),
        common.entry(f"gpu/{name}/forward_tflops", [flops / s / 1e12 for s in forward], "TFLOP/s",
                     "teacher-forced forward, counted FLOPs / time",
                     settings={**settings, "batch_size": FORWARD_BATCH}, ctx=ctx, flops=flops, seconds=forward),
    ]
    if peak is not None:
        entries.append(common.entry(
            f"gpu/{name}/forward_peak_fraction", [flops / s / peak for s in forward], "fraction of peak",
            "teacher-forced forward: achieved FLOP/s / dense bf16 peak of the GPU",
            settings={**settings, "batch_size": FORWARD_BATCH, "peak_tflops": peak / 1e12}, ctx=ctx,
        ))
    return entries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak in TFLOP/s (default: from the built-in table)")
    args = parser.parse_args(argv)
    ctx = common.context()
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available (torch.cuda.is_available() is False); nothing measured.",
              file=sys.stderr)
        measured = [k for k, v in common.read_results()["entries"].items()
                    if k.startswith("gpu/") and v.get("status") != "not measured"]
        if measured:
            print(f"gpu_check: keeping the earlier GPU measurements in {common.RESULTS_FILE.name}", file=sys.stderr)
        else:
            common.write_entries([{
                "name": "gpu/status", "benchmark": "gpu", "status": "not measured",
                "reason": "no GPU was available", "context": ctx,
            }], replace_prefix="gpu/")
        return 0
    torch.manual_seed(0)
    device = torch.device("cuda", 0)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else bf16_peak(torch.cuda.get_device_name(device))
    if peak is None:
        print(f"gpu_check: no bf16 peak known for {torch.cuda.get_device_name(device)!r}; pass --peak-tflops "
              "to get the fraction of peak (the other figures are measured anyway)", file=sys.stderr)
    entries = []
    for name in MODELS:
        entries += model_entries(name, device, peak, ctx)
        torch.cuda.empty_cache()
    entries.append({"name": "gpu/status", "benchmark": "gpu", "status": "measured",
                    "peak_tflops": None if peak is None else peak / 1e12, "context": ctx})
    common.write_entries(entries, replace_prefix="gpu/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
