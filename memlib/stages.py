"""The pipeline: the run, its training images, resumable shards and the four stages.

    config (memlib.config) -> Run -> TrainingImages -> stage_unitmem ─┐
                                                   -> stage_attack  ─┼─> stage_sweep
                                                      stage_fid    ──┘ (with sweep_fid)

Both the command line (``python -m memlib STAGE``, :mod:`memlib.cli`) and the notebooks call
these functions; the notebooks get one :class:`Run` per model from :func:`make_runs`.

Every stage

1. names its work folder by a hash of the config sections it reads, the model's checkpoints
   and the data's identity (:func:`memlib.results.cached`), so changed settings never reuse
   stale files and an unrelated setting (an FID one for UnitMem) never invalidates them;
2. splits the work into shards of ``shard_size`` images or candidates, written atomically as
   they finish and skipped when rerun (a killed run resumes where it stopped);
3. under ``torchrun --nproc_per_node=N`` gives each rank a contiguous block of shards and merges
   them exactly in shard order (UnitMem: sum/max/argmax; attack: by candidate position), so
   the result does not depend on N or on interruptions;
4. saves the merged result with the sections it used as its parameters, seed, code version,
   timing and library versions (``OUT/<stage>-<hash>/`` and the latest under ``OUT/<stage>``).

``MEMLIB_SHARD_PAUSE_S`` (environment, seconds): sleep after each finished shard; only for
demonstrating and testing interruption.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import data
from . import distributed as dist_utils
from . import fid as fid_lib
from .collect import SELECTIONS, UnitMemResult, ViewFn, accumulate_unitmem, collection_groups
from .config import RunConfig, model_configs
from .extract import AttackResult, merge_attack_results, run_attack, score_images, select_candidates
from .models.generator import Generator
from .models.registry import build_generator, get_config, load_generator
from .results import (
    ResultFileError,
    atomic_write_bytes,
    cached,
    file_sha256,
    load_result,
    provenance,
    result_exists,
    save_result,
    text_sha256,
)
from .similarity import make_similarity
from .sweep import run_sweep, sweep_identity, sweep_table

# ---------------------------------------------------------------------------------------------
# The run: one model's config, rank and device; the model is loaded once, on first use
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    config: RunConfig
    out: Path
    device: torch.device
    rank: int = 0
    world_size: int = 1
    _gen: Generator | None = field(default=None, repr=False)

    def log(self, message: str) -> None:
        prefix = f"[rank {self.rank}/{self.world_size}] " if self.world_size > 1 else ""
        print(f"{prefix}{message}", file=sys.stderr, flush=True)

    @property
    def amp(self) -> bool:
        amp = self.config.run.amp
        return self.device.type == "cuda" if amp == "auto" else bool(amp)

    @property
    def name(self) -> str:
        return self.config.model.model

    def generator(self) -> Generator:
        if self._gen is None:
            m = self.config.model
            self._gen = load_generator(model_config(self.config), m.checkpoint, m.tokenizer_checkpoint, self.device)
        return self._gen

    def model_inputs(self) -> dict[str, str]:
        return {"checkpoint": self.config.model.checkpoint, "tokenizer_checkpoint": self.config.model.tokenizer_checkpoint}

    def settings(self, *sections: str) -> dict:
        """The config sections a stage reads, with the run section's device-free part and the
        resolved autocast: what names its result and what its provenance records."""
        run = self.config.run
        computation = {"seed": run.seed, "batch_size": run.batch_size, "shard_size": run.shard_size, "amp": self.amp}
        return {"run": computation, **self.config.sections("model", *sections)}


def model_config(config: RunConfig):
    """The registry config of the run's model, with ``model_overrides`` (lists become tuples)."""
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model.model_overrides.items()}
    return get_config(config.model.model, **overrides)


def make_run(config: RunConfig, out: str | os.PathLike | None = None) -> Run:
    """The run of one model (``config.model.model`` names it) on this process's rank."""
    device = dist_utils.init_from_env()
    if config.run.device != "auto":
        if config.run.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device: got {config.run.device!r}; expected 'auto' or 'cpu' on this machine (no CUDA device)")
        device = torch.device(config.run.device)
    out = Path(out) if out is not None else Path(config.run.results_dir)
    return Run(config, out, device, dist_utils.get_rank(), dist_utils.get_world_size())


def make_runs(config: RunConfig, stage: str, family: str | None = None, usable_prefixes: bool = False) -> dict[str, Run]:
    """The runs of the config's models by family (:func:`memlib.config.model_configs`), only
    ``family``'s when given. With ``usable_prefixes`` each keeps only the ``prefix_lengths`` its
    model accepts (VAR: scale boundaries); none accepted is an error naming the parameter."""
    runs = {}
    for fam, cfg in model_configs(config, stage).items():
        if family is not None and fam != family:
            continue
        if usable_prefixes:
            valid = build_generator(model_config(cfg), device="meta").valid_prefix_lengths()
            usable = [n for n in cfg.attack.prefix_lengths if n in valid]
            if not usable:
                raise ValueError(f"prefix_lengths: got {cfg.attack.prefix_lengths}; {cfg.model.model} accepts none of them "
                                 f"(valid: {valid[:12]}{' ...' if len(valid) > 12 else ''})")
            cfg = cfg.replace(prefix_lengths=usable,  # the family's own reported prefix only: it must be one it accepts
                          reported_prefix={f: n for f, n in cfg.book.reported_prefix.items() if f == fam})
        runs[fam] = make_run(cfg)
    return runs


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a page prints it: relative to the repository (or the working folder) when
    inside it, so no output shows the builder's machine paths."""
    path = Path(path).resolve()
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def reported_prefix(run: Run) -> int:
    """The prefix (tokens) whose count the pages report for the run's model: ``reported_prefix``
    of its family, else the longest of the ``prefix_lengths`` it accepts (the paper: 30)."""
    family = get_config(run.config.model.model).family
    return int(run.config.book.reported_prefix.get(family, max(run.config.attack.prefix_lengths)))


# ---------------------------------------------------------------------------------------------
# The training images
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainingImages:
    """The images a stage reads.

    ``dataset[i]`` is ``(image, label)``; ``views(image, n_views, generator)`` gives UnitMem's
    augmented views (A, 3, H, W); ``ground_truth(image)`` is the (3, H, W) image the attack
    tokenizes (the family's centre view); ``identity`` names the images in a cache key;
    ``unitmem_ids`` are the dataset indices of D', the images UnitMem runs on; ``testbed`` is
    the testbed set (planted images, control group, levels) or None at full scale.
    """

    dataset: torch.utils.data.Dataset
    views: ViewFn
    ground_truth: Callable[[object], torch.Tensor]
    identity: dict
    unitmem_ids: np.ndarray
    testbed: data.TestbedData | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def limit(self, max_images: int) -> int:
        """How many of the images a stage reads (``max_images`` 0: all)."""
        return min(len(self), max_images) if max_images else len(self)


def training_images(run: Run, fraction: float) -> TrainingImages:
    """The run's training images.

    Testbed: the train split (uint8 32 x 32); views and ground truth are the family's
    augmentation at 32 x 32 (:func:`memlib.data.family_views`, :func:`memlib.data.testbed_views`,
    as the testbed models were trained); D' = :func:`memlib.data.testbed_dprime` (``unitmem_images``).
    ImageNet: a per-class sample of ``fraction`` of the folder (all of it is D'); views = the
    family's augmentation; the attack's ground truth = the family's centre view (VAR: the centre
    crop of the 1.125x resize; RAR: the centre one of the ten-crop views).
    """
    cfg, gen = run.config, run.generator()
    family, unitmem, res = gen.family, cfg.unitmem, gen.image_size

    def views(image, n_views, generator):
        if isinstance(image, torch.Tensor):  # a testbed image: uint8 (H, W)
            image = Image.fromarray(image.numpy(), mode="L")
        return data.family_views(image, family, res, n_views, generator, rar_views=unitmem.rar_views)

    if cfg.data.dataset == "testbed":
        testbed = data.load_testbed(cfg.data.testbed_file)
        dataset = torch.utils.data.TensorDataset(torch.as_tensor(testbed.train_images), torch.as_tensor(testbed.train_labels))
        centre = lambda image: data.testbed_views(image.numpy()[None], family)[0]  # noqa: E731
        dprime = data.testbed_dprime(testbed, unitmem.unitmem_images, cfg.run.seed)
        identity = {"testbed_sha256": file_sha256(testbed.path)}
        return TrainingImages(dataset, views, centre, identity, dprime, testbed)
    sample = data.ImageFolderSample(cfg.data.imagenet_train_dir, fraction=fraction, seed=cfg.run.seed,
                                    strict=cfg.data.strict_images)
    run.log(sample.summary())
    if family == "var":
        center = lambda image: data.var_view(image, res, None)  # noqa: E731
    else:
        center = lambda image: data.rar_ten_crop(image, res)[4]  # noqa: E731  (the centre crop of the ten)
    listing = "\n".join(f"{p.relative_to(sample.root).as_posix()}|{p.stat().st_size}|{label}" for p, label in sample.samples)
    return TrainingImages(sample, views, center, {"imagenet_sample_sha256": text_sha256(listing), "fraction": fraction},
                          np.arange(len(sample)))


# ---------------------------------------------------------------------------------------------
# Resumable shards
# ---------------------------------------------------------------------------------------------


def run_shards(run: Run, folder: Path, n_items: int, compute: Callable[[range], tuple[dict, dict]], what: str,
               settings: dict):
    """Compute the missing shards of ``range(n_items)`` that this rank owns, then (after a
    barrier) load every shard in order. ``compute(ids)`` returns ``(tensors, info)``."""
    shard_size = run.config.run.shard_size
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
                                    **provenance(settings, run.config.run.seed, started)})
        run.log(f"{what} shard {j + 1}/{n_shards} ({len(ids)} items) done in {time.time() - started:.1f} s")
        if pause:
            time.sleep(pause)
    dist_utils.barrier()
    return [load_result(folder / f"shard-{j:05d}") for j in range(n_shards)]


def stage_result(run: Run, stage: str, settings: dict, compute: Callable[[Path], tuple[dict, dict]], inputs: dict):
    """The stage's result through :func:`memlib.results.cached`: read back when finished
    before, else computed (every rank), written by rank 0, and read by all after a barrier."""
    return cached(stage, settings, compute, run.out, inputs=inputs, seed=run.config.run.seed,
                  latest=run.out / stage, writer=run.rank == 0, wait=dist_utils.barrier, log=run.log)


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def stage_unitmem(run: Run) -> UnitMemResult:
    """UnitMem over the testbed train split or a ``unitmem_fraction`` sample of ImageNet."""
    cfg, gen = run.config, run.generator()
    u = cfg.unitmem
    images = training_images(run, u.unitmem_fraction)
    settings = {**run.settings("data", "unitmem"), "images": images.identity}

    def compute(work: Path):
        dprime = images.unitmem_ids[: images.limit(cfg.data.max_images)] if cfg.data.max_images else images.unitmem_ids

        def shard(positions: range):
            ids = dprime[positions.start : positions.stop].tolist()
            acc = accumulate_unitmem(gen, images.dataset, ids, n_views=u.n_views, views=images.views,
                                     activation=u.activation, pooled=u.unitmem_pooled, batch_size=cfg.run.batch_size,
                                     seed=cfg.run.seed, amp=run.amp)
            return acc.state_dict(), {"images": len(ids)}

        shards = run_shards(run, work / "shards", len(dprime), shard, "unitmem", settings)
        merged = dist_utils.merge_unitmem_states(s.tensors for s in shards)
        group_names = [g.name for g in collection_groups(gen, u.unitmem_pooled)]
        used = {"n_views": u.n_views, "rar_views": u.rar_views, "activation": u.activation, "pooled": u.unitmem_pooled,
                "seed": cfg.run.seed, "images": [int(i) for i in dprime]}
        return UnitMemResult(merged.state_dict(), group_names, list(gen.fc1_names()), gen.family, used).to_record()

    result = stage_result(run, "unitmem", settings, compute, run.model_inputs())
    return UnitMemResult.from_record(result.tensors, result.meta["info"])


def similarity_fn(run: Run):
    attack = run.config.attack
    if attack.similarity == "sscd":
        return make_similarity("sscd", path=attack.sscd_torchscript, device=run.device)
    return make_similarity("pixel")


def attack_record(result: AttackResult) -> tuple[dict, dict]:
    """An AttackResult as (tensors, JSON metadata) for a result file."""
    as_dict = result.to_dict()
    tensors = {k: v for k, v in as_dict.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in as_dict.items() if not isinstance(v, torch.Tensor)}


def attack_from_record(tensors: dict, meta: dict) -> AttackResult:
    return AttackResult.from_dict({**meta, **tensors})


@dataclass
class AttackOutcome:
    """What :func:`stage_attack` returns: the attack on the candidates, their ground-truth
    tokens, and stage A's score of every attacked training image (dataset order)."""

    result: AttackResult
    candidate_tokens_CL: torch.Tensor
    scores_N: torch.Tensor
    cache_key: str


def stage_attack(run: Run) -> AttackOutcome:
    """Stage A (score every image, sharded), B (candidates), then C-D sharded over candidates."""
    cfg, gen = run.config, run.generator()
    a = cfg.attack
    images = training_images(run, 1.0)
    settings = {**run.settings("data", "attack"), "images": images.identity}
    inputs = {**run.model_inputs(), **({"sscd": a.sscd_torchscript} if a.similarity == "sscd" else {})}
    span = None if a.score_span is None else tuple(a.score_span)
    batch = cfg.run.batch_size

    def score(ids: range):
        pairs = [images.dataset[i] for i in ids]
        images_N3HW = torch.stack([images.ground_truth(image) for image, _ in pairs])
        labels_N = torch.tensor([int(label) for _, label in pairs])
        with torch.no_grad():
            tokens_NL = torch.cat([gen.images_to_tokens(images_N3HW[i : i + batch].to(gen.device)).cpu()
                                   for i in range(0, len(ids), batch)])
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
            scores_N = score_images(gen, tokens_NL, labels_N, span=span, batch_size=batch)
        return {"tokens": tokens_NL.to(torch.int32), "labels": labels_N, "scores": scores_N}, {}

    def compute(work: Path):
        scored = run_shards(run, work / "scores", images.limit(cfg.data.max_images), score, "attack stage A", settings)
        tokens_NL = torch.cat([s.tensors["tokens"] for s in scored]).long()
        labels_N = torch.cat([s.tensors["labels"] for s in scored])
        scores_N = torch.cat([s.tensors["scores"] for s in scored])
        candidates_C = select_candidates(scores_N, labels_N, per_class=a.per_class)
        tokens_CL, labels_C = tokens_NL[candidates_C], labels_N[candidates_C]
        similarity = similarity_fn(run)

        def generate(positions: range):
            pos = torch.arange(positions.start, positions.stop)
            result = run_attack(gen, tokens_CL[pos], labels_C[pos], similarity=similarity, threshold=a.threshold,
                                prefix_lengths=a.prefix_lengths, per_class=a.per_class, span=span, batch_size=batch,
                                candidates=torch.arange(len(pos)))
            result.candidate_ids, result.positions = candidates_C[pos], pos
            result.candidate_scores = scores_N[candidates_C[pos]]
            result.num_candidates_total = len(candidates_C)
            return attack_record(result)

        pieces = run_shards(run, work / "candidates", len(candidates_C), generate, "attack stages C-D", settings)
        result = merge_attack_results([attack_from_record(s.tensors, s.meta["info"]) for s in pieces])
        run.log("attack: extracted " + ", ".join(f"{n} tokens: {c}" for n, c in result.counts.items()))
        tensors, meta = attack_record(result)
        return {**tensors, "candidate_tokens": tokens_CL.to(torch.int32), "scores_N": scores_N}, {"attack": meta}

    stored = stage_result(run, "attack", settings, compute, inputs)
    tensors = dict(stored.tensors)
    tokens_CL, scores_N = tensors.pop("candidate_tokens").long(), tensors.pop("scores_N")
    return AttackOutcome(attack_from_record(tensors, stored.meta["info"]["attack"]), tokens_CL, scores_N,
                         stored.meta["cache_key"])


def stage_sweep(run: Run):
    """The intervention sweep on the unedited model's attack candidates (rows spread over ranks)."""
    cfg, gen = run.config, run.generator()
    a, s = cfg.attack, cfg.sweep
    if s.selection != "default" and s.selection not in SELECTIONS[gen.family]:
        raise ValueError(f"selection: got {s.selection!r}; expected 'default' or one of {SELECTIONS[gen.family]} for {gen.family}")
    unitmem = stage_unitmem(run)
    baseline = stage_attack(run)
    how = None if s.selection == "default" else s.selection
    scores = {"unitmem": unitmem.selection_scores(how), "magnitude": unitmem.selection_scores(how, statistic="magnitude")}
    similarity = similarity_fn(run)
    span = None if a.score_span is None else tuple(a.score_span)
    candidates_C, labels_C = baseline.result.candidate_ids, baseline.result.candidate_labels

    def attack(edited):
        result = run_attack(edited, baseline.candidate_tokens_CL, labels_C, similarity=similarity, threshold=a.threshold,
                            prefix_lengths=a.prefix_lengths, per_class=a.per_class, span=span,
                            batch_size=cfg.run.batch_size, candidates=torch.arange(len(candidates_C)))
        result.candidate_ids = candidates_C[result.candidate_ids]
        return result

    sections = ("data", "unitmem", "attack", "sweep") + (("fid",) if s.sweep_fid else ())
    settings = {**run.settings(*sections), "unitmem_params": unitmem.params, "attack_cache_key": baseline.cache_key}
    identity = sweep_identity(scores, candidates_C, settings)

    def compute(work: Path):
        fid = fid_fn(run) if s.sweep_fid else None
        table = run_sweep(gen, scores, attack, work, identity, k_percents=s.k_percents, modes=s.sweep_modes,
                          seeds=s.random_seeds, fid=fid, fid_modes=s.sweep_fid_modes, rank=run.rank,
                          world_size=run.world_size, log=run.log)
        csv = table.drop(columns=["extracted_ids", "units_per_block"]).to_csv(index=False).encode()
        if run.rank == 0:
            atomic_write_bytes(work / "sweep.csv", csv)
            atomic_write_bytes(run.out / "sweep.csv", csv)
            run.log(f"sweep: {len(table)} rows -> {run.out / 'sweep.csv'}")
        tensors = {"selection_scores_KU": scores["unitmem"], "magnitude_scores_KU": scores["magnitude"]}
        return tensors, {"rows": table.to_dict(orient="records"), "identity": identity}

    result = stage_result(run, "sweep", {**settings, "identity": identity}, compute, {})
    return sweep_table(result.meta["info"]["rows"], s.sweep_modes)


def fid_setup(run: Run) -> tuple[fid_lib.FeatureExtractor, fid_lib.FeatureStats]:
    """The run's FID features and reference statistics: the testbed classifier's features against
    the family's centre views of the testbed training images ("testbed FID"), or clean-fid's
    Inception against ``fid_reference_npz``: its ``mu``/``sigma`` (``fid_reference: mu-sigma``,
    the ADM evaluator's statistics the paper's FIDs use) or statistics recomputed from its
    ``arr_0`` images (``recompute``). Computed reference statistics are cached under
    ``OUT/fid-cache``, bound to their images and extractor."""
    cfg, cache = run.config, run.out / "fid-cache"
    f, family = cfg.fid, run.generator().family
    if f.fid_feature == "testbed":
        extractor = fid_lib.TestbedFeatures(f.classifier_checkpoint, run.device)
        images = data.testbed_views(data.load_testbed(cfg.data.testbed_file).train_images, family)
        reference = fid_lib.cached_reference_stats(list(images.split(512)), extractor, cache, cfg.run.batch_size)
    else:
        extractor = fid_lib.InceptionFeatures(f.inception_torchscript, run.device)
        reference = fid_lib.reference_stats_from_npz(f.fid_reference_npz, extractor, mode=f.fid_reference,
                                                     cache_dir=cache, batch_size=cfg.run.batch_size,
                                                     progress=show_progress(run))
    return extractor, reference


def fid_classes(run: Run) -> list[int] | None:
    """The classes FID samples: all (None), or with ``fid_classes: K`` a seeded choice of K
    (:func:`memlib.fid.rehearsal_classes` with the run's seed), a rehearsal."""
    k, num_classes = run.config.fid.fid_classes, run.generator().num_classes
    if not k:
        return None
    if k > num_classes:
        raise ValueError(f"fid_classes: got {k}; expected at most the {num_classes} classes of {run.name} (0: all)")
    return fid_lib.rehearsal_classes(num_classes, k, run.config.run.seed)


def show_progress(run: Run) -> bool:
    """Progress bars on stderr: on rank 0, and not inside a notebook's kernel (its stderr is
    part of the page)."""
    return run.rank == 0 and "ipykernel" not in sys.modules


def fid_fn(run: Run):
    """``fid(gen) -> (one value per sampling seed of fid_seeds, metric name)``, computed in this
    process (the sweep's rows are already spread over ranks): :func:`fid_setup`'s features and
    reference, the classes of :func:`fid_classes`."""
    f, batch = run.config.fid, run.config.run.batch_size
    extractor, reference = fid_setup(run)
    classes = fid_classes(run)

    def fid(gen) -> tuple[list[float], str]:
        results = [fid_lib.fid_of_generator(gen, extractor, reference, f.fid_samples_per_class, f.sampling_kwargs,
                                            seed=seed, batch_size=batch, classes=classes, progress=show_progress(run))
                   for seed in f.fid_seeds]
        return [float(r.score) for r in results], results[0].metric_name

    return fid


def stage_fid(run: Run) -> tuple[float, str]:
    """FID of the unedited model, the mean over ``fid_seeds``; the result file also holds the
    value of every seed, the classes sampled and the reference used.

    Under torchrun every rank samples and extracts its block of batches
    (:func:`memlib.fid.sample_moments`) and saves its moments in the work folder
    (``moments-seed<S>-rank<R>of<W>``, reused when rerun); rank 0 merges them in rank order
    (:meth:`memlib.fid.FeatureMoments.merge`) and scores them."""
    cfg, gen = run.config, run.generator()
    f, batch = cfg.fid, cfg.run.batch_size
    files = {"classifier_checkpoint": f.classifier_checkpoint, "inception_torchscript": f.inception_torchscript,
             "fid_reference_npz": f.fid_reference_npz}
    inputs = {**run.model_inputs(), **{k: v for k, v in files.items() if v}}
    if f.fid_feature == "testbed":
        inputs["testbed"] = data.load_testbed(cfg.data.testbed_file).path
    settings = run.settings("fid")

    def compute(work: Path):
        extractor, reference = fid_setup(run)
        classes = fid_classes(run)
        results = []
        for seed in f.fid_seeds:
            started = time.time()
            path = work / f"moments-seed{seed}-rank{run.rank}of{run.world_size}"
            try:
                load_result(path)  # finished before (a resumed run)
            except ResultFileError:
                moments = fid_lib.sample_moments(gen, extractor, f.fid_samples_per_class, f.sampling_kwargs, seed,
                                                 batch, classes, run.rank, run.world_size, progress=show_progress(run))
                save_result(path, moments.state_dict(), {"seed": seed, "rank": run.rank, "world_size": run.world_size,
                                                         **provenance(settings, cfg.run.seed, started)})
            dist_utils.barrier()
            if run.rank == 0:
                merged = fid_lib.FeatureMoments()
                for r in range(run.world_size):
                    merged.merge(fid_lib.FeatureMoments.from_state_dict(
                        load_result(work / f"moments-seed{seed}-rank{r}of{run.world_size}").tensors))
                results.append(fid_lib.fid_from_moments(merged, extractor, reference, f.fid_samples_per_class,
                                                        gen.num_classes, f.sampling_kwargs, seed, batch, classes,
                                                        seconds=time.time() - started))
        if run.rank != 0:  # rank 0 writes the result; the others read it after the barrier
            return {}, {}
        by_seed = [float(r.score) for r in results]
        value, metric = float(np.mean(by_seed)), results[0].metric_name
        run.log(f"fid: {metric} = {value:.4f} (seeds {list(f.fid_seeds)}: {[round(v, 4) for v in by_seed]})")
        return {}, {"fid": value, "fid_by_seed": by_seed, "metric": metric, "classes": classes,
                    "num_samples": results[0].num_samples, "reference": results[0].reference,
                    "extractor": results[0].extractor, "preprocessing": results[0].preprocessing}

    info = stage_result(run, "fid", settings, compute, inputs).meta["info"]
    return info["fid"], info["metric"]


STAGES = {"unitmem": stage_unitmem, "attack": stage_attack, "sweep": stage_sweep, "fid": stage_fid}
