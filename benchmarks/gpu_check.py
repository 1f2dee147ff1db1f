"""The GPU check: var-d16 and rar-b shapes with random weights, bf16, on one CUDA device.

    python benchmarks/gpu_check.py [--peak-tflops 989]
    python benchmarks/gpu_check.py --tiny      # smoke check: testbed shapes, any device, writes nothing

For each model it measures (median of 3 timed repetitions after one warm-up, CUDA synchronized):

- ``collect``: images per second of ``memlib.collect.accumulate_unitmem`` (one view per image,
  bf16 autocast for the transformer, float32 tokenizer: the collection's own ``amp=True`` path)
  on synthetic images;
- ``stage_a``: images per second of the attack's stage A as the CLI runs it: tokenize (float32),
  then ``memlib.extract.score_images`` under bf16 autocast (synthetic images, so no decoding);
- ``generate``: images per second of the KV-cached sampler (``Generator.sample`` with the
  family's guidance) under bf16 autocast;
- ``fid_samples``: samples per second of FID's sampling and feature extraction as memlib runs
  it (``memlib.fid.generated_images`` into ``feature_stats``, float32, clean-fid's resize to
  299 x 299 on the CPU), with torchvision's Inception-v3 with random weights standing in for
  clean-fid's network (same architecture, so the same cost; the score itself is meaningless);
- ``forward_peak_fraction``: FLOPs of one teacher-forced forward (counted by
  ``torch.utils.flop_counter``: matrix products and attention) / its median time / the GPU's
  dense bf16 tensor-core peak (from the table below, or ``--peak-tflops``).

Without CUDA it refuses: it measures nothing and records "not measured: no GPU was available"
in benchmarks/results.json (unless the file already holds GPU measurements, which it keeps).
``--tiny`` runs every measurement once at testbed shapes with a few images, on CUDA when there
is one and else the CPU, prints the entries and writes nothing: a check that the script still
runs against memlib's API, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import torch

import common


@dataclass(frozen=True)
class Sizes:
    """What one run measures: which models, how many images per timed call, repetitions."""

    models: tuple[str, ...]
    collect_images: int
    collect_batch: int
    stage_a_images: int
    stage_a_batch: int
    generate_batch: int
    fid_samples: int
    fid_batch: int
    forward_batch: int
    repeats: int
    forward_repeats: int


FULL = Sizes(models=("var-d16", "rar-b"), collect_images=256, collect_batch=64, stage_a_images=256, stage_a_batch=64,
             generate_batch=32, fid_samples=256, fid_batch=64, forward_batch=64, repeats=3, forward_repeats=5)
TINY = Sizes(models=("var-testbed", "rar-testbed"), collect_images=4, collect_batch=2, stage_a_images=4,
             stage_a_batch=2, generate_batch=2, fid_samples=2, fid_batch=2, forward_batch=2, repeats=1,
            forward_repeats=1)
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


def timed(fn, device: torch.device, repeats: int) -> list[float]:
    """Seconds per call (one untimed warm-up), synchronized on CUDA devices."""

    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return common.time_interleaved({"fn": call}, repeats, warmup=1)["fn"]


def collect_seconds(gen, device: torch.device, n_images: int, batch: int, amp: bool, repeats: int) -> list[float]:
    from memlib.collect import accumulate_unitmem

    images, labels = common.synthetic_batch(gen, n_images)
    dataset = list(zip(images, labels.tolist()))
    views = common.testbed_view_fn(gen)
    return timed(lambda: accumulate_unitmem(gen, dataset, range(n_images), n_views=1, views=views, batch_size=batch, amp=amp),
                 device, repeats)


def stage_a_seconds(gen, device: torch.device, n_images: int, batch: int, amp: bool, repeats: int) -> list[float]:
    """Stage A as the CLI's attack runs it on images already decoded: tokens in float32, then
    the teacher-forced scores under bf16 autocast."""
    from memlib.extract import score_images

    images, labels = common.synthetic_batch(gen, n_images)

    def stage_a():
        with torch.no_grad():
            tokens = torch.cat([gen.images_to_tokens(images[i : i + batch].to(device)).cpu()
                                for i in range(0, n_images, batch)])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            score_images(gen, tokens, labels, batch_size=batch)

    return timed(stage_a, device, repeats)


def generate_seconds(gen, device: torch.device, batch: int, amp: bool, repeats: int) -> list[float]:
    labels = (torch.arange(batch) % gen.num_classes).to(device)

    def sample():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            gen.sample(labels, generator=torch.Generator(device=device).manual_seed(0))

    return timed(sample, device, repeats)


def random_inception(device: torch.device):
    """An Inception-v3 feature extractor with random weights in memlib.fid's protocols:
    clean-fid's resize and input scaling, torchvision's network up to the 2048-d pool."""
    import torchvision
    from cleanfid.resize import build_resizer

    from memlib.fid import FeatureExtractor

    class RandomInception(FeatureExtractor):
        name = "torchvision Inception-v3, random weights (cost stand-in for clean-fid's)"
        metric_name = "not a FID"
        preprocessing = "uint8 quantisation; clean-fid 'clean' resize to 299x299; (x - 128) / 128"
        weights_sha256 = "random"

        def __init__(self):
            self.device = device
            self.model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
            self.model.fc = torch.nn.Identity()
            self.model = self.model.to(device).eval()
            self._resize = build_resizer("clean")

        def resize(self, image_HW3):
            return self._resize(image_HW3)

        def __call__(self, batch_B3hw):
            with torch.no_grad():
                return self.model((batch_B3hw.to(self.device) - 128) / 128)

    return RandomInception()


def fid_samples_seconds(gen, device: torch.device, n_samples: int, batch: int, repeats: int) -> list[float]:
    """FID's per-sample work as memlib.fid.fid_of_generator does it (sampling, clean-fid resize,
    Inception features, streamed statistics), one sample for each of the first ``n_samples``
    classes."""
    from memlib.fid import feature_stats, generated_images

    if n_samples > gen.num_classes:
        raise ValueError(f"fid_samples: at most one sample per class ({gen.num_classes}), got {n_samples}")
    extractor = random_inception(device)
    classes = list(range(n_samples))
    return timed(lambda: feature_stats(extractor, generated_images(gen, 1, {}, 0, batch, classes)), device, repeats)


def forward_flops_and_seconds(gen, device: torch.device, batch: int, amp: bool,
                              repeats: int) -> tuple[float, list[float]]:
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
    return float(counter.get_total_flops()), timed(forward, device, repeats)


def model_entries(name: str, device: torch.device, peak: float | None, ctx: dict, sizes: Sizes = FULL) -> list[dict]:
    from memlib.models.registry import build_generator

    gen = build_generator(name, device=device).eval()
    shape = "official shape" if sizes == FULL else "testbed shape (--tiny smoke check)"
    settings = {"model": name, "weights": f"random weights, {shape}", "device": str(device),
                "dtype": "bfloat16 autocast", "gpu": ctx["machine"]["gpu"]}
    repeats = sizes.repeats
    print(f"[gpu] {name}: collection", flush=True)
    collect = collect_seconds(gen, device, sizes.collect_images, sizes.collect_batch, amp=True, repeats=repeats)
    print(f"[gpu] {name}: attack stage A", flush=True)
    stage_a = stage_a_seconds(gen, device, sizes.stage_a_images, sizes.stage_a_batch, amp=True, repeats=repeats)
    print(f"[gpu] {name}: generation", flush=True)
    generate = generate_seconds(gen, device, sizes.generate_batch, amp=True, repeats=repeats)
    print(f"[gpu] {name}: FID sampling and features", flush=True)
    fid = fid_samples_seconds(gen, device, sizes.fid_samples, sizes.fid_batch, repeats=repeats)
    print(f"[gpu] {name}: teacher-forced forward", flush=True)
    flops, forward = forward_flops_and_seconds(gen, device, sizes.forward_batch, amp=True,
                                               repeats=sizes.forward_repeats)
    entries = [
        common.entry(f"gpu/{name}/collect", [sizes.collect_images / s for s in collect], "images/s",
                     "UnitMem collection (accumulate_unitmem, bf16 forward)",
                     settings={**settings, "images_per_run": sizes.collect_images, "batch_size": sizes.collect_batch},
                     ctx=ctx, seconds=collect),
        common.entry(f"gpu/{name}/stage_a", [sizes.stage_a_images / s for s in stage_a], "images/s",
                     "attack stage A: tokenize (float32) + teacher-forced scores (bf16), images already decoded",
                     settings={**settings, "images_per_run": sizes.stage_a_images, "batch_size": sizes.stage_a_batch},
                     ctx=ctx, seconds=stage_a),
        common.entry(f"gpu/{name}/generate", [sizes.generate_batch / s for s in generate], "images/s",
                     "KV-cached sampling with the family's guidance (bf16)",
                     settings={**settings, "batch_size": sizes.generate_batch}, ctx=ctx, seconds=generate),
        common.entry(f"gpu/{name}/fid_samples", [sizes.fid_samples / s for s in fid], "samples/s",
                     "FID sampling + clean-fid resize + Inception-v3 features (float32; random-weight Inception)",
                     settings={**settings, "dtype": "float32", "samples_per_run": sizes.fid_samples,
                               "batch_size": sizes.fid_batch}, ctx=ctx, seconds=fid),
        common.entry(f"gpu/{name}/forward_tflops", [flops / s / 1e12 for s in forward], "TFLOP/s",
                     "teacher-forced forward, counted FLOPs / time",
                     settings={**settings, "batch_size": sizes.forward_batch}, ctx=ctx, flops=flops, seconds=forward),
    ]
    if peak is not None:
        entries.append(common.entry(
            f"gpu/{name}/forward_peak_fraction", [flops / s / peak for s in forward], "fraction of peak",
            "teacher-forced forward: achieved FLOP/s / dense bf16 peak of the GPU",
            settings={**settings, "batch_size": sizes.forward_batch, "peak_tflops": peak / 1e12}, ctx=ctx,
        ))
    return entries


def tiny_check(peak_tflops: float | None) -> list[dict]:
    """Every measurement once at testbed shapes (CUDA if available, else CPU); nothing written."""
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    peak = peak_tflops * 1e12 if peak_tflops else None
    torch.manual_seed(0)
    ctx = common.context()
    entries = []
    for name in TINY.models:
        entries += model_entries(name, device, peak, ctx, TINY)
    return entries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak in TFLOP/s (default: from the built-in table)")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke check: testbed shapes, a few images, any device; prints, writes nothing")
    args = parser.parse_args(argv)
    if args.tiny:
        for e in tiny_check(args.peak_tflops):
            print(json.dumps({"name": e["name"], "median": e["median"], "unit": e["unit"], "device": e["settings"]["device"]}))
        print(f"gpu_check --tiny: {asdict(TINY)}; nothing written to {common.RESULTS_FILE.name}", file=sys.stderr)
        return 0
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
    for name in FULL.models:
        entries += model_entries(name, device, peak, ctx, FULL)
        torch.cuda.empty_cache()
    entries.append({"name": "gpu/status", "benchmark": "gpu", "status": "measured",
                    "peak_tflops": None if peak is None else peak / 1e12, "context": ctx})
    common.write_entries(entries, replace_prefix="gpu/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
