"""``python -m memlib STAGE --params FILE [--out DIR]``: the long computations as resumable,
``torchrun``-able stages that write result files with their parameters.

Stages: ``unitmem`` (UnitMem of every fc1 unit), ``attack`` (the extraction attack on the
unedited model), ``sweep`` (the intervention sweep; runs or reuses unitmem and attack), ``fid``
(FID of the unedited model) and ``train`` (forwarded to ``memlib.train``).

Every stage

1. validates the parameter file first (:mod:`memlib.params`; one error naming every bad key);
2. names its work folder by a hash of everything the result depends on
   (:func:`memlib.results.cache_key`: parameters, checkpoint and data identities), so changed
   parameters never reuse stale files;
3. splits the work into shards of ``shard_size`` images or candidates, written atomically as
   they finish and skipped when rerun (a killed run resumes where it stopped);
4. under ``torchrun --nproc_per_node=N`` gives each rank a contiguous block of shards, and
   merges the shards exactly in shard order (UnitMem: sum/max/argmax; attack: by candidate
   position), so the result does not depend on N or on interruptions;
5. saves the merged result with parameters, seed, code version, timing and library versions
   (``OUT/<stage>-<hash>/`` and a copy of the latest under ``OUT/<stage>``).

Errors a user can act on (bad parameters: exit code 2; an unreadable or mismatched checkpoint,
image folder, result or TorchScript file: exit code 1) are printed as one ``error:`` line
without a traceback. SIGTERM (what ``torchrun`` and schedulers send) ends a run like Ctrl-C, so
temporary files are removed; finished shards stay and a rerun resumes from them.

``MEMLIB_SHARD_PAUSE_S`` (environment, seconds): sleep after each finished shard; only for
demonstrating and testing interruption.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed as dist_utils
from .params import REPO_ROOT, load_params
from .results import (
    ResultFileError,
    atomic_write_bytes,
    cache_key,
    load_result,
    provenance,
    result_exists,
    save_result,
)

STAGE_HELP = {
    "unitmem": "UnitMem of every fc1 unit over the training images",
    "attack": "the extraction attack (score, candidates, greedy generation, similarity) on the unedited model",
    "sweep": "the intervention sweep over k%%, modes and seeds on the attack's candidates",
    "fid": "FID (or the testbed's feature distance) of the unedited model",
    "train": "train the testbed models (forwards its arguments to memlib.train)",
}


# ---------------------------------------------------------------------------------------------
# The run: parameters, rank, model and data, loaded once
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    params: dict
    out: Path
    device: torch.device
    rank: int = 0
    world_size: int = 1
    _gen: object = field(default=None, repr=False)

    def log(self, message: str) -> None:
        prefix = f"[rank {self.rank}/{self.world_size}] " if self.world_size > 1 else ""
        print(f"{prefix}{message}", file=sys.stderr, flush=True)

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda" if self.params["amp"] == "auto" else bool(self.params["amp"])

    def generator(self):
        if self._gen is None:
            from .models.registry import get_config, load_generator

            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in self.params["model_overrides"].items()}
            config = get_config(self.params["model"], **overrides)
            self._gen = load_generator(config, self.params["checkpoint"], self.params["tokenizer_checkpoint"], self.device)
        return self._gen

    def model_inputs(self) -> dict[str, str]:
        return {"checkpoint": self.params["checkpoint"], "tokenizer_checkpoint": self.params["tokenizer_checkpoint"]}

    def model_params(self) -> dict:
        return {"model": self.params["model"], "model_overrides": self.params["model_overrides"]}


def make_run(params: dict, out: Path | None) -> Run:
    device = dist_utils.init_from_env()
    if params["device"] != "auto":
        if params["device"].startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device: got {params['device']!r}; expected 'auto' or 'cpu' on this machine (no CUDA device)")
        device = torch.device(params["device"])
    out = Path(out) if out is not None else Path(params["results_dir"])
    return Run(params, out, device, dist_utils.get_rank(), dist_utils.get_world_size())


def training_images(run: Run, fraction: float):
    """(dataset of (image, label), views for UnitMem, ground-truth image function, identity).

    Testbed: the train split as float (3, 32, 32) tensors, views = the image itself.
    ImageNet: a per-class sample of ``fraction`` of the folder; views = the family's
    augmentation; the attack's ground-truth image = the family's centre view (VAR: the centre
    crop of the 1.125x resize; RAR: the centre one of the ten-crop views).
    """
    from . import data
    from .collect import family_view, identity_view
    from .results import file_sha256

    params, gen = run.params, run.generator()
    if params["dataset"] == "testbed":
        testbed = data.load_testbed(params["testbed_file"] or None)
        dataset = torch.utils.data.TensorDataset(data.to_float_images(testbed.train_images), torch.as_tensor(testbed.train_labels))
        identity = {"testbed_sha256": file_sha256(testbed.path)}
        return dataset, identity_view, (lambda image: image), identity
    sample = data.ImageFolderSample(params["imagenet_train_dir"], fraction=fraction, seed=params["seed"],
                                    strict=params["strict_images"])
    run.log(sample.summary())
    res = gen.image_size
    if gen.family == "var":
        center = lambda image: data.var_view(image, res, None)  # noqa: E731
    else:
        center = lambda image: data.rar_ten_crop(image, res)[4]  # noqa: E731  (the centre crop of the ten)
    listing = "\n".join(f"{p.relative_to(sample.root).as_posix()}|{p.stat().st_size}|{label}" for p, label in sample.samples)
    identity = {"imagenet_sample_sha256": _sha256_text(listing), "fraction": fraction}
    return sample, family_view(gen.family, res, params["n_views"]), center, identity


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _limit(n: int, params: dict) -> int:
    return min(n, params["max_images"]) if params["max_images"] else n


# ---------------------------------------------------------------------------------------------
# Resumable shards
# ---------------------------------------------------------------------------------------------


def run_shards(run: Run, folder: Path, n_items: int, compute: Callable[[range], tuple[dict, dict]], what: str):
    """Compute the missing shards of ``range(n_items)`` that this rank owns, then (after a
    barrier) load every shard in order. ``compute(ids)`` returns ``(tensors, info)``."""
    shard_size = run.params["shard_size"]
    n_shards = math.ceil(n_items / shard_size)
    pause = float(os.environ.get("MEMLIB_SHARD_PAUSE_S", "0"))
    for j in dist_utils.shard_indices(n_shards, run.rank, run.world_size):
        path = folder / f"shard-{j:05d}"
        if result_exists(path):
            try:
                load_result(path)
                continue
            except ResultFileError as err:
                run.log(f"{what} shard {j}: damaged ({err}); recomputing")
        ids = range(j * shard_size, min(n_items, (j + 1) * shard_size))
        started = time.time()
        tensors, info = compute(ids)
        save_result(path, tensors, {"shard": j, "ids": [ids.start, ids.stop], "info": info,
                                    **provenance(run.params, run.params["seed"], started)})
        run.log(f"{what} shard {j + 1}/{n_shards} ({len(ids)} items) done in {time.time() - started:.1f} s")
        if pause:
            time.sleep(pause)
    dist_utils.barrier()
    return [load_result(folder / f"shard-{j:05d}") for j in range(n_shards)]


def save_final(run: Run, work: Path, name: str, tensors: dict, meta: dict, started: float) -> None:
    """Save the merged result in the stage's work folder and as the latest under ``OUT/name``."""
    meta = {**meta, "work_dir": work.name, **provenance(run.params, run.params["seed"], started)}
    save_result(work / name, tensors, meta)
    save_result(run.out / name, tensors, meta)


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def stage_unitmem(run: Run):
    """UnitMem over the testbed train split or a ``unitmem_fraction`` sample of ImageNet."""
    from .collect import UnitMemResult, accumulate_unitmem, collection_groups
    from .distributed import merge_unitmem_states

    p, gen = run.params, run.generator()
    dataset, views, _, data_identity = training_images(run, p["unitmem_fraction"])
    settings = {
        **run.model_params(), **data_identity, "max_images": p["max_images"], "n_views": p["n_views"],
        "activation": p["activation"], "pooled": p["unitmem_pooled"], "seed": p["seed"],
        "batch_size": p["batch_size"], "shard_size": p["shard_size"], "amp": run.amp,
    }
    key = cache_key("unitmem", settings, run.model_inputs())
    work = run.out / f"unitmem-{key[:16]}"
    if result_exists(work / "unitmem"):
        run.log(f"unitmem: finished before, reading {work / 'unitmem'}")
        result = load_result(work / "unitmem")
        return UnitMemResult.from_record(result.tensors, result.meta)
    started = time.time()

    def compute(ids: range):
        acc = accumulate_unitmem(gen, dataset, ids, n_views=p["n_views"], views=views, activation=p["activation"],
                                 pooled=p["unitmem_pooled"], batch_size=p["batch_size"], seed=p["seed"], amp=run.amp)
        return acc.state_dict(), {"images": len(ids)}

    shards = run_shards(run, work / "shards", _limit(len(dataset), p), compute, "unitmem")
    merged = merge_unitmem_states(shard.tensors for shard in shards)
    group_names = [g.name for g in collection_groups(gen, p["unitmem_pooled"])]
    result = UnitMemResult(merged.state_dict(), group_names, list(gen.fc1_names()), gen.family,
                           {k: settings[k] for k in ("n_views", "activation", "pooled", "seed")})
    if run.rank == 0:
        tensors, meta = result.to_record()
        save_final(run, work, "unitmem", tensors, {**meta, "cache_key": key, "settings": settings}, started)
    dist_utils.barrier()
    return result


def attack_settings(run: Run, data_identity: dict) -> dict:
    p = run.params
    return {
        **run.model_params(), **data_identity, "max_images": p["max_images"], "per_class": p["per_class"],
        "score_span": p["score_span"], "prefix_lengths": p["prefix_lengths"], "similarity": p["similarity"],
        "threshold": p["threshold"], "batch_size": p["batch_size"], "shard_size": p["shard_size"], "amp": run.amp,
    }


def make_similarity_fn(run: Run):
    from .similarity import make_similarity

    if run.params["similarity"] == "sscd":
        return make_similarity("sscd", path=run.params["sscd_torchscript"], device=run.device)
    return make_similarity("pixel")


def attack_record(result) -> tuple[dict, dict]:
    """An AttackResult as (tensors, JSON metadata) for a result file."""
    as_dict = result.to_dict()
    tensors = {k: v for k, v in as_dict.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in as_dict.items() if not isinstance(v, torch.Tensor)}


def attack_from_record(tensors: dict, meta: dict):
    from .extract import AttackResult

    return AttackResult.from_dict({**meta, **tensors})


def stage_attack(run: Run):
    """Stage A (score every image, sharded), B (candidates), then C-D sharded over candidates.
    Returns ``(AttackResult, candidate_tokens_CL)``."""
    from .extract import merge_attack_results, run_attack, score_images, select_candidates

    p, gen = run.params, run.generator()
    dataset, _, ground_truth, data_identity = training_images(run, 1.0)
    settings = attack_settings(run, data_identity)
    inputs = {**run.model_inputs(), **({"sscd": p["sscd_torchscript"]} if p["similarity"] == "sscd" else {})}
    key = cache_key("attack", settings, inputs)
    work = run.out / f"attack-{key[:16]}"
    if result_exists(work / "attack"):
        run.log(f"attack: finished before, reading {work / 'attack'}")
        stored = load_result(work / "attack")
        tokens = stored.tensors.pop("candidate_tokens").long()
        return attack_from_record(stored.tensors, stored.meta["attack"]), tokens
    started = time.time()
    span = None if p["score_span"] is None else tuple(p["score_span"])

    def score(ids: range):
        images, labels = zip(*(dataset[i] for i in ids))
        images_N3HW = torch.stack([ground_truth(image) for image in images])
        labels_N = torch.tensor([int(label) for label in labels])
        tokens = []
        with torch.no_grad():
            for i in range(0, len(ids), p["batch_size"]):
                tokens.append(gen.images_to_tokens(images_N3HW[i : i + p["batch_size"]].to(gen.device)).cpu())
        tokens_NL = torch.cat(tokens)
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
            scores_N = score_images(gen, tokens_NL, labels_N, span=span, batch_size=p["batch_size"])
        return {"tokens": tokens_NL.to(torch.int32), "labels": labels_N, "scores": scores_N}, {}

    scored = run_shards(run, work / "scores", _limit(len(dataset), p), score, "attack stage A")
    tokens_NL = torch.cat([s.tensors["tokens"] for s in scored]).long()
    labels_N = torch.cat([s.tensors["labels"] for s in scored])
    scores_N = torch.cat([s.tensors["scores"] for s in scored])
    candidates_C = select_candidates(scores_N, labels_N, per_class=p["per_class"])
    tokens_CL, labels_C = tokens_NL[candidates_C], labels_N[candidates_C]
    similarity = make_similarity_fn(run)

    def generate(positions: range):
        pos = torch.arange(positions.start, positions.stop)
        result = run_attack(gen, tokens_CL[pos], labels_C[pos], similarity=similarity, threshold=p["threshold"],
                            prefix_lengths=p["prefix_lengths"], per_class=p["per_class"], span=span,
                            batch_size=p["batch_size"], candidates=torch.arange(len(pos)))
        result.candidate_ids, result.positions = candidates_C[pos], pos
        result.candidate_scores = scores_N[candidates_C[pos]]
        result.num_candidates_total = len(candidates_C)
        return attack_record(result)

    pieces = run_shards(run, work / "candidates", len(candidates_C), generate, "attack stages C-D")
    result = merge_attack_results([attack_from_record(s.tensors, s.meta["info"]) for s in pieces])
    if run.rank == 0:
        tensors, meta = attack_record(result)
        tensors["candidate_tokens"] = tokens_CL.to(torch.int32)
        save_final(run, work, "attack", tensors, {"attack": meta, "cache_key": key, "settings": settings}, started)
        run.log("attack: extracted " + ", ".join(f"{n} tokens: {c}" for n, c in result.counts.items()))
    dist_utils.barrier()
    return result, tokens_CL


def stage_sweep(run: Run):
    """The intervention sweep on the unedited model's attack candidates (rows spread over ranks)."""
    from .extract import run_attack
    from .sweep import run_sweep, sweep_identity

    from .collect import SELECTIONS

    p, gen = run.params, run.generator()
    if p["selection"] != "default" and p["selection"] not in SELECTIONS[gen.family]:
        raise ValueError(f"selection: got {p['selection']!r}; expected 'default' or one of {SELECTIONS[gen.family]} for {gen.family}")
    if p["selection"] == "pooled" and not p["unitmem_pooled"]:
        raise ValueError("selection: got 'pooled'; it needs unitmem_pooled: true")
    unitmem = stage_unitmem(run)
    baseline, tokens_CL = stage_attack(run)
    how = None if p["selection"] == "default" else p["selection"]
    scores_KU = unitmem.selection_scores(how)
    scores = {"unitmem": scores_KU, "magnitude": unitmem.selection_scores(how, statistic="magnitude")}
    similarity = make_similarity_fn(run)
    span = None if p["score_span"] is None else tuple(p["score_span"])
    candidates_C, labels_C = baseline.candidate_ids, baseline.candidate_labels

    def attack(edited):
        result = run_attack(edited, tokens_CL, labels_C, similarity=similarity, threshold=p["threshold"],
                            prefix_lengths=p["prefix_lengths"], per_class=p["per_class"], span=span,
                            batch_size=p["batch_size"], candidates=torch.arange(len(candidates_C)))
        result.candidate_ids = candidates_C[result.candidate_ids]
        return result

    fid = make_fid_fn(run) if p["sweep_fid"] else None
    settings = {**attack_settings(run, {}), "selection": p["selection"], "unitmem_params": unitmem.params,
                "fid": fid_settings(run) if fid else None}
    identity = sweep_identity(scores, candidates_C, settings)
    work = run.out / f"sweep-{identity[:16]}"
    started = time.time()
    table = run_sweep(gen, scores, attack, work, identity, k_percents=p["k_percents"], modes=p["sweep_modes"],
                      seeds=p["random_seeds"], fid=fid, rank=run.rank, world_size=run.world_size, log=run.log)
    if run.rank == 0:
        csv = table.drop(columns=["extracted_ids", "units_per_block"]).to_csv(index=False).encode()
        atomic_write_bytes(work / "sweep.csv", csv)
        atomic_write_bytes(run.out / "sweep.csv", csv)
        record = {"rows": table.to_dict(orient="records"), "identity": identity, "settings": settings}
        save_final(run, work, "sweep", {"selection_scores_KU": scores_KU}, record, started)
        run.log(f"sweep: {len(table)} rows -> {run.out / 'sweep.csv'}")
    dist_utils.barrier()
    return table


def fid_settings(run: Run) -> dict:
    p = run.params
    return {"fid_feature": p["fid_feature"], "fid_samples_per_class": p["fid_samples_per_class"],
            "sampling_kwargs": p["sampling_kwargs"], "seed": p["seed"], "batch_size": p["batch_size"]}


def make_fid_fn(run: Run):
    """``fid(gen) -> (value, metric name)`` (memlib.fid): the testbed classifier's features
    against the testbed training images ("testbed FID"), or clean-fid's Inception against the
    images of ``fid_reference_npz`` (key ``arr_0``, the ADM reference batch). Reference
    statistics are cached under ``OUT/fid-cache`` by a hash of the images and the extractor."""
    import numpy as np

    from . import data
    from . import fid as fid_lib

    p, cache = run.params, run.out / "fid-cache"
    if p["fid_feature"] == "testbed":
        extractor = fid_lib.TestbedFeatures(p["classifier_checkpoint"], run.device)
        images = data.to_float_images(data.load_testbed(p["testbed_file"] or None).train_images)
        reference = fid_lib.cached_reference_stats(list(images.split(512)), extractor, cache, p["batch_size"])
    else:
        extractor = fid_lib.InceptionFeatures(Path(p["inception_torchscript"]).parent, run.device)
        with np.load(p["fid_reference_npz"], allow_pickle=False) as npz:
            if "arr_0" not in npz.files:
                raise ValueError(f"fid_reference_npz: {p['fid_reference_npz']} has no 'arr_0' images (has {npz.files})")
            images_NHW3 = npz["arr_0"]
        batches = [torch.from_numpy(images_NHW3[i : i + 500]).permute(0, 3, 1, 2).contiguous()
                   for i in range(0, len(images_NHW3), 500)]
        reference = fid_lib.cached_reference_stats(batches, extractor, cache, p["batch_size"])

    def fid(gen) -> tuple[float, str]:
        result = fid_lib.fid_of_generator(gen, extractor, reference, p["fid_samples_per_class"], p["sampling_kwargs"],
                                          seed=p["seed"], batch_size=p["batch_size"])
        return float(result.score), result.metric_name

    return fid


def stage_fid(run: Run):
    """FID of the unedited model (computed on rank 0; the other ranks wait)."""
    settings = {**run.model_params(), **fid_settings(run)}
    inputs = {**run.model_inputs(), **{k: run.params[k] for k in ("classifier_checkpoint", "inception_torchscript",
                                                                   "fid_reference_npz") if run.params[k]}}
    key = cache_key("fid", settings, inputs)
    work = run.out / f"fid-{key[:16]}"
    if result_exists(work / "fid"):
        meta = load_result(work / "fid").meta
        run.log(f"fid: finished before: {meta['metric']} = {meta['fid']:.4f}")
        return meta["fid"], meta["metric"]
    started = time.time()
    if run.rank == 0:
        value, metric = make_fid_fn(run)(run.generator())
        save_final(run, work, "fid", {}, {"fid": value, "metric": metric, "settings": settings, "cache_key": key}, started)
        run.log(f"fid: {metric} = {value:.4f}")
    dist_utils.barrier()
    meta = load_result(work / "fid").meta
    return meta["fid"], meta["metric"]


STAGES = {"unitmem": stage_unitmem, "attack": stage_attack, "sweep": stage_sweep, "fid": stage_fid}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memlib",
        description="Resumable, torchrun-able stages of the memorization pipeline. "
        "Run under torchrun --nproc_per_node=N -m memlib STAGE ... to shard the work.",
    )
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE", title="stages")
    for name, text in STAGE_HELP.items():
        sub = stages.add_parser(name, help=text, description=text, add_help=name != "train")
        if name == "train":
            continue
        sub.add_argument("--params", type=Path, required=True, help="YAML parameter file (notebooks/params/*.yaml)")
        sub.add_argument("--out", type=Path, default=None, help="output folder (default: results_dir of the parameters)")
        sub.add_argument("--base-dir", type=Path, default=REPO_ROOT,
                         help="folder that relative paths in the parameters are relative to (default: the repository root)")
        sub.add_argument("--traceback", action="store_true",
                         help="on an error, raise it with its full traceback instead of printing one line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from . import train

        return train.main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        params = load_params(args.params, base_dir=args.base_dir, stage=args.stage)
    except (ValueError, FileNotFoundError) as err:
        if args.traceback:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        STAGES[args.stage](make_run(params, args.out))
    except (ValueError, FileNotFoundError) as err:  # CheckpointError, ResultFileError, bad data: one line
        if args.traceback:
            raise
        print(f"error: {args.stage}: {err} (--traceback shows where)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        dist_utils.shutdown()
    return 0


def _exit_on_sigterm(signum, frame):
    """Turn SIGTERM into SystemExit, so ``finally`` blocks run (temporary files are removed)."""
    raise SystemExit(128 + signum)
