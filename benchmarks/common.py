"""What every benchmark script shares: timing, the machine, the testbed models, and the results file.

Every figure in ``benchmarks/results.json`` is an *entry*::

    {"name": "capture/var-testbed/ratio", "benchmark": "capture", "unit": "x",
     "median": 0.97, "runs": [0.96, 0.97, 0.99], "description": "...", "settings": {...},
     "target": {"op": ">=", "value": 0.9, "holds": true, "text": "..."},        (when there is one)
     "context": {"machine": {...}, "date": "...", "git_commit": "...", "load_average": [1m, 5m, 15m]}}

``median`` is the median of ``runs`` (one number per timed repetition; untimed warm-up calls
come first). A script replaces the entries it measures and keeps all others, so the file always
holds the latest measurement of every figure, each with the machine and date it was taken on.
The book's Performance page (``notebooks/performance.py``) only reads this file.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = Path(__file__).resolve().parent / "results.json"
CHECKPOINT_DIR = ROOT / "data" / "checkpoints"
FORMAT_VERSION = 1
THREADS = 2  # the CPU benchmarks use two threads (the machine they were written on has two cores)


# ---------------------------------------------------------------------------------------------
# The machine and the moment
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Platform, CPU, cores, memory, torch and its threads, and the GPU if CUDA sees one."""
    info = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # OpenMP's default busy-waiting makes two threads 10-100x slower on an oversubscribed machine
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def context() -> dict:
    """Machine, UTC date, code version and load average: stored beside every figure."""
    from memlib.results import git_commit

    return {
        "machine": machine_info(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(ignore=(RESULTS_FILE.relative_to(ROOT).as_posix(),)),  # earlier scripts rewrite it
        "load_average": load_average(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def add_quiet_machine_options(parser: argparse.ArgumentParser) -> None:
    """``--max-load`` and ``--max-wait``: the arguments a script passes to :func:`wait_for_quiet_machine`."""
    parser.add_argument("--max-load", type=float, default=1.5, help="wait until the 1-minute load is at most this")
    parser.add_argument("--max-wait", type=float, default=900, help="give up waiting after this many seconds")


def wait_for_quiet_machine(max_load: float = 2.0, max_wait_s: float = 900, poll_s: float = 60) -> list[float]:
    """Sleep (``poll_s`` at a time, ``max_wait_s`` in all) until the 1-minute load average is at
    most ``max_load``; returns the load averages measured at the end (quiet or not)."""
    waited = 0.0
    while os.getloadavg()[0] > max_load and waited < max_wait_s:
        print(f"[bench] load average {load_average()} > {max_load}; waiting {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
        waited += poll_s
    loads = load_average()
    print(f"[bench] measuring at load average {loads} (waited {waited:.0f} s)", flush=True)
    return loads


def setup_torch(threads: int = THREADS) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def time_call(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn`` (garbage collected before, so no earlier garbage is paid for)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` rounds of all of them in turn (after
    ``warmup`` untimed rounds), so that slow drifts of a shared machine hit every variant alike."""
    if repeats < 1:
        raise ValueError(f"repeats: expected an integer >= 1, got {repeats!r}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    seconds = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds[name].append(time_call(fn))
    return seconds


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def testbed_generator(name: str, **overrides):
    """The testbed model ``name`` (``var-testbed`` / ``rar-testbed``) in eval mode, and which
    weights it has: the trained checkpoints in data/checkpoints when both files exist and no
    size is overridden, else random weights of the same shape (timing does not depend on them)."""
    from memlib.models.registry import build_generator, get_config, load_generator

    weights, tokenizer = CHECKPOINT_DIR / f"{name}.safetensors", CHECKPOINT_DIR / f"{name}-tokenizer.safetensors"
    if not overrides and weights.is_file() and tokenizer.is_file():
        return load_generator(name, weights, tokenizer).eval(), "trained testbed checkpoint"
    return build_generator(get_config(name, **overrides)).eval(), "random weights, testbed shape"


def synthetic_batch(gen, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random images (B, 3, H, W) in [0, 1] and labels (B,) for ``gen``."""
    rng = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, gen.image_size, gen.image_size, generator=rng)
    labels = torch.randint(0, gen.num_classes, (batch,), generator=rng)
    return images, labels


# ---------------------------------------------------------------------------------------------
# The results file
# ---------------------------------------------------------------------------------------------


def entry(name: str, runs: Sequence[float], unit: str, description: str, *, settings: dict | None = None,
          ctx: dict, **extra) -> dict:
    """One figure: the median of ``runs`` with everything needed to judge it."""
    runs = [float(r) for r in runs]
    return {
        "name": name,
        "benchmark": name.split("/", 1)[0],
        "description": description,
        "unit": unit,
        "median": median(runs),
        "runs": runs,
        "n_runs": len(runs),
        "settings": settings or {},
        **extra,
        "context": ctx,
    }


def target(op: str, value: float, measured: float, text: str) -> dict:
    """A target ``measured <op> value`` (op ``>=`` or ``<=``) and whether it holds."""
    holds = measured >= value if op == ">=" else measured <= value
    return {"op": op, "value": value, "holds": bool(holds), "text": text}


def read_results(path: Path = RESULTS_FILE) -> dict:
    if not path.is_file():
        return {"format": FORMAT_VERSION, "entries": {}}
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT_VERSION or not isinstance(data.get("entries"), dict):
        raise ValueError(f"{path}: expected {{'format': {FORMAT_VERSION}, 'entries': {{...}}}}")
    return data


def write_entries(entries: Sequence[dict], path: Path = RESULTS_FILE, replace_prefix: str | None = None) -> None:
    """Store ``entries`` (by name) in the results file, keeping every other entry; with
    ``replace_prefix``, first drop the old entries whose name starts with it (a re-run that
    measures fewer cases leaves no stale ones behind). Written atomically."""
    data = read_results(path)
    if replace_prefix is not None:
        data["entries"] = {k: v for k, v in data["entries"].items() if not k.startswith(replace_prefix)}
    for item in entries:
        data["entries"][item["name"]] = item
    data["entries"] = dict(sorted(data["entries"].items()))
    data["about"] = "Written by benchmarks/*.py (see benchmarks/README.md); never edit by hand."
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    shown = path.relative_to(ROOT) if ROOT in path.parents else path
    print(f"[bench] wrote {len(entries)} entries to {shown}", flush=True)


def testbed_view_fn(gen):
    """UnitMem's views of a testbed image (float (3, H, W) in [0, 1]) for ``gen``'s family: the
    family's augmentation (memlib.data.family_views), as memlib.stages.training_images gives
    them to the collection."""
    from PIL import Image

    from memlib.data import family_views

    def views(image_3HW, n_views, generator):
        gray = Image.fromarray((image_3HW[0] * 255).round().to(torch.uint8).numpy(), mode="L")
        return family_views(gray, gen.family, image_3HW.shape[-1], n_views, generator)

    return views

