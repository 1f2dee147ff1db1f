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
   timing and library versions (``CACHE/<stage>-<hash>/`` and the latest under ``OUT/<stage>``;
   CACHE is ``cache_dir`` when given, else OUT, the results folder).

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
from .config import RunConfig, location_kinds, model_configs, paper_k_percent
from .extract import AttackResult, TopPerClass, check_prefix_lengths, merge_attack_results, run_attack, score_images
from .models.generator import Generator
from .models.registry import build_generator, get_config, load_generator
from .results import (
    ResultFileError,
    atomic_write_bytes,
    cached,
    file_sha256,
    interrupts_held,
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
    # what this process has finished and kept, by part ("unitmem shards": "3 of 7"), for the
    # one line an interrupted stage ends with (memlib.cli)
    progress: dict[str, str] = field(default_factory=dict, repr=False)

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

    @property
    def cache(self) -> Path:
        """Folder of the stages' cached results: ``cache_dir`` when given, else :attr:`out`.
        Only the content-keyed entries live there; the latest copies, summaries and figures
        stay in :attr:`out`, so a run with its own ``results_dir`` never overwrites another's."""
        return Path(self.config.run.cache_dir) if self.config.run.cache_dir else self.out

    def generator(self) -> Generator:
        if self._gen is None:
            m = self.config.model
            self._gen = load_generator(model_config(self.config), m.checkpoint, m.tokenizer_checkpoint, self.device)
        return self._gen

    def model_inputs(self) -> dict[str, str]:
        return {"checkpoint": self.config.model.checkpoint, "tokenizer_checkpoint": self.config.model.tokenizer_checkpoint}

    def settings(self, *sections: str) -> dict:
        """The config sections a stage reads, with the run section's device-free part and the
        resolved autocast: what names its result and what its provenance records. A file is
        named by its content (sha256), a folder by the images' identity the stage adds, never by
        a path: the same files in another checkout or folder give the same result names."""
        run = self.config.run
        computation = {"seed": run.seed, "batch_size": run.batch_size, "shard_size": run.shard_size, "amp": self.amp}
        kinds = location_kinds()
        self.cache.mkdir(parents=True, exist_ok=True)
        chosen = self.config.sections("model", *sections)
        for values in chosen.values():
            for key, value in values.items():
                if value and kinds.get(key) == "file":
                    values[key] = "sha256:" + file_sha256(value, self.cache / "file-hashes.json")
                elif value and kinds.get(key) == "dir":
                    values[key] = "a folder, named by the images' identity"
        return {"run": computation, **chosen}


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
    out.mkdir(parents=True, exist_ok=True)  # the pages write figures and summaries there, even when every stage is cached elsewhere
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
    tokenizes (the family's centre view); ``labels_N`` the label of every image (known without
    decoding one); ``identity`` names the images in a cache key; ``unitmem_ids`` are the
    dataset indices of D', the images UnitMem runs on; ``testbed`` is the testbed set (planted
    images, control group, levels) or None at full scale. An image folder is listed, not
    decoded, when this is made: its images are decoded when a stage reads them, after its
    cache check.
    """

    dataset: torch.utils.data.Dataset
    views: ViewFn
    ground_truth: Callable[[object], torch.Tensor]
    identity: dict
    labels_N: np.ndarray
    unitmem_ids: np.ndarray
    testbed: data.TestbedData | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def folder(self) -> data.ImageFolderSample | None:
        return self.dataset if isinstance(self.dataset, data.ImageFolderSample) else None

    def reduce(self, ids: np.ndarray, max_images: int, seed: int) -> np.ndarray:
        """``ids`` (dataset indices), or ``max_images`` of them spread across their classes
        (:func:`memlib.data.sample_across_classes`, seeded), in increasing order."""
        ids = np.asarray(ids, dtype=np.int64)
        if not max_images or max_images >= len(ids):
            return ids
        return ids[data.sample_across_classes(self.labels_N[ids], max_images, seed)]

    def read(self, index: int) -> tuple[object, int, str | None]:
        """``(image, label, None)``, or ``(None, label, problem)`` for an unreadable file."""
        if self.folder is not None:
            return self.folder.read(index)
        image, label = self.dataset[index]
        return image, int(label), None

    def readable(self, ids: np.ndarray) -> np.ndarray:
        """The ``ids`` whose images decode (an in-memory set: all of them)."""
        return ids if self.folder is None else np.asarray(self.folder.readable(ids), dtype=np.int64)


def training_images(run: Run, fraction: float) -> TrainingImages:
    """The run's training images.

    Testbed: the train split (uint8 32 x 32); views and ground truth are the family's
    augmentation at 32 x 32 (:func:`memlib.data.family_views`, :func:`memlib.data.testbed_views`,
    as the testbed models were trained); D' = :func:`memlib.data.testbed_dprime` (``unitmem_images``).
    ImageNet: a per-class sample of ``fraction`` of the folder (all of it is D'), labelled by
    ``class_ids``; views = the family's augmentation; the attack's ground truth =
    :func:`memlib.data.attack_view` (VAR: the centre crop of the 1.125x resize; RAR:
    ``rar_attack_crop``). Nothing is decoded here.
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
        identity = {"testbed_sha256": file_sha256(testbed.path), "views": data.views_identity()}
        return TrainingImages(dataset, views, centre, identity, testbed.train_labels, dprime, testbed)
    sample = data.ImageFolderSample(cfg.data.imagenet_train_dir, fraction=fraction, seed=cfg.run.seed,
                                    strict=cfg.data.strict_images, class_ids=cfg.data.class_ids)
    run.log(sample.summary())
    crop = cfg.attack.rar_attack_crop
    centre = lambda image: data.attack_view(image, family, res, rar_crop=crop)  # noqa: E731
    identity = {"imagenet_sample_sha256": text_sha256(sample.listing()), "fraction": fraction, "views": data.views_identity()}
    return TrainingImages(sample, views, centre, identity, sample.labels(), np.arange(len(sample)))


# ---------------------------------------------------------------------------------------------
# Resumable shards
# ---------------------------------------------------------------------------------------------


def shard_identity(folder: Path, j: int, n_items: int, shard_size: int, settings: dict) -> dict:
    """What binds shard ``j`` to its place: the cache entry and part it belongs to (``folder``
    relative to the results folder, whose name holds the cache key), its index, its items and the
    stage's settings, checked with the record's checksums on load."""
    return {"shard_of": f"{folder.parent.name}/{folder.name}", "shard": j,
            "ids": [j * shard_size, min(n_items, (j + 1) * shard_size)], "params": settings}


def missing_shards(run: Run, folder: Path, n_items: int, what: str, settings: dict) -> list[int]:
    """The shards of ``range(n_items)`` that this rank owns (a contiguous block) and that were not
    finished before; an edited, damaged or foreign shard is named in the log and counts as missing."""
    if n_items == 0:
        raise ValueError(f"{what}: no training images to process (the run's image set is empty: check testbed_file or "
                         "imagenet_train_dir, unitmem_images and max_images)")
    shard_size = run.config.run.shard_size
    mine = list(dist_utils.shard_indices(math.ceil(n_items / shard_size), run.rank, run.world_size))
    missing = []
    for j in mine:
        path = folder / f"shard-{j:05d}"
        if result_exists(path):
            try:
                load_result(path, expect=shard_identity(folder, j, n_items, shard_size, settings))
                continue
            except ResultFileError as err:
                run.log(f"{what} shard {j}: refused ({err}); recomputing")
        missing.append(j)
    run.progress[f"{what} shards"] = f"{len(mine) - len(missing)} of {len(mine)}"
    return missing


def save_shard(run: Run, folder: Path, j: int, n_items: int, tensors: dict, info: dict, what: str,
               settings: dict, started: float) -> None:
    """Write shard ``j`` atomically with its identity and provenance, count it in the run's
    progress (what an interrupted stage reports as kept), log it, and pause (``MEMLIB_SHARD_PAUSE_S``)."""
    shard_size = run.config.run.shard_size
    identity = shard_identity(folder, j, n_items, shard_size, settings)
    with interrupts_held():  # a Ctrl-C during the save lands after it: the shard is kept and counted
        save_result(folder / f"shard-{j:05d}", tensors, {**identity, "info": info, **provenance(settings, run.config.run.seed, started)})
        done, total = run.progress[f"{what} shards"].split(" of ")
        run.progress[f"{what} shards"] = f"{int(done) + 1} of {total}"
    n_shards = math.ceil(n_items / shard_size)
    run.log(f"{what} shard {j + 1}/{n_shards} ({identity['ids'][1] - identity['ids'][0]} items) done in "
            f"{time.time() - started:.1f} s")
    pause = float(os.environ.get("MEMLIB_SHARD_PAUSE_S", "0"))
    if pause:
        time.sleep(pause)


def load_shards(run: Run, folder: Path, n_items: int, settings: dict) -> list:
    """Every shard of ``range(n_items)`` in order, each checked against its identity."""
    shard_size = run.config.run.shard_size
    return [load_result(folder / f"shard-{j:05d}", expect=shard_identity(folder, j, n_items, shard_size, settings))
            for j in range(math.ceil(n_items / shard_size))]


def run_shards(run: Run, folder: Path, n_items: int, compute: Callable[[range], tuple[dict, dict]], what: str,
               settings: dict):
    """Compute the missing shards of ``range(n_items)`` that this rank owns, then (after a
    barrier) load every shard in order. ``compute(ids)`` returns ``(tensors, info)``."""
    shard_size = run.config.run.shard_size
    for j in missing_shards(run, folder, n_items, what, settings):
        ids = range(j * shard_size, min(n_items, (j + 1) * shard_size))
        started = time.time()
        tensors, info = compute(ids)
        save_shard(run, folder, j, n_items, tensors, info, what, settings, started)
    dist_utils.barrier()
    return load_shards(run, folder, n_items, settings)


def stage_result(run: Run, stage: str, settings: dict, compute: Callable[[Path], tuple[dict, dict]], inputs: dict):
    """The stage's result through :func:`memlib.results.cached`: read back when finished
    before, else computed (every rank), written by rank 0, and read by all after a barrier.
    The entry is computed under its lock, held by rank 0 for the whole job: a second run or
    ``torchrun`` job of the same stage waits and reads the result."""
    result = cached(stage, settings, compute, run.cache, inputs=inputs, seed=run.config.run.seed,
                    latest=run.out / stage, writer=run.rank == 0,
                    wait=dist_utils.barrier, log=run.log)
    run.progress[stage] = "result saved"
    return result


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
        dprime = images.readable(images.reduce(images.unitmem_ids, cfg.data.max_images, cfg.run.seed))
        if images.folder is not None and images.folder.unreadable:
            run.log(f"unitmem: D' {images.folder.summary()}")

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
    tokens, and stage A's score of every attacked training image: ``scores_N[i]`` is the score
    of dataset image ``image_ids_N[i]`` (NaN: unreadable)."""

    result: AttackResult
    candidate_tokens_CL: torch.Tensor
    scores_N: torch.Tensor
    image_ids_N: torch.Tensor
    cache_key: str


class GroundTruthViews(torch.utils.data.Dataset):
    """``[i]`` = (the attack's view of training image i (3, res, res), its label, None), or
    (zeros, label, the problem) for an unreadable file: what DataLoader workers decode."""

    def __init__(self, images: TrainingImages, res: int):
        self.images, self.res = images, res

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str | None]:
        image, label, problem = self.images.read(index)
        view = torch.zeros(3, self.res, self.res) if problem is not None else self.images.ground_truth(image)
        return view, label, problem


def _collate_views(items):
    views, labels, problems = zip(*items)
    return torch.stack(views), torch.tensor(labels, dtype=torch.long), list(problems)


def decode_workers(run: Run, images: TrainingImages) -> int:
    """``num_workers`` resolved: ``auto`` is 0 for an in-memory set (the testbed) and otherwise
    the CPUs this process may use, divided among the ranks, less one (the main process), at most 8."""
    workers = run.config.run.num_workers
    if workers != "auto":
        return int(workers)
    if images.folder is None:
        return 0
    return max(0, min(8, len(os.sched_getaffinity(0)) // run.world_size - 1))


def stage_a(run: Run, images: TrainingImages, ids_N: np.ndarray, folder: Path, settings: dict):
    """Stage A streamed: score the training images ``ids_N`` (dataset indices, increasing) in
    resumable shards of ``shard_size``, each rank a contiguous block; the images are decoded in
    ``num_workers`` DataLoader processes while the model runs. A shard keeps the scores of its
    images and the tokens of only its own top ``per_class`` per class; after a barrier the
    shards are merged in order through :class:`memlib.extract.TopPerClass`, so memory holds the
    candidates' tokens and one float per image, whatever the number of images, and the
    candidates equal :func:`memlib.extract.select_candidates` over all scores.
    -> (TopPerClass, scores_N float64 in ``ids_N``'s order, NaN for an unreadable image)."""
    cfg, gen, a = run.config, run.generator(), run.config.attack
    span = None if a.score_span is None else tuple(a.score_span)
    batch, shard_size = cfg.run.batch_size, cfg.run.shard_size
    todo = missing_shards(run, folder, len(ids_N), "attack stage A", settings)
    shard_ids = {j: ids_N[j * shard_size : (j + 1) * shard_size] for j in todo}
    batches = [shard_ids[j][k : k + batch].tolist() for j in todo for k in range(0, len(shard_ids[j]), batch)]
    loader = torch.utils.data.DataLoader(GroundTruthViews(images, gen.image_size), batch_sampler=batches,
                                         num_workers=decode_workers(run, images) if batches else 0,
                                         collate_fn=_collate_views)
    stream = iter(loader)
    for j in todo:
        started, ids = time.time(), shard_ids[j]
        scores, labels, tokens, unreadable = [], [], [], []
        for k in range(0, len(ids), batch):
            views_B3HW, labels_B, problems = next(stream)
            ok_B = torch.tensor([p is None for p in problems])
            for i in np.flatnonzero(~ok_B.numpy()):
                images.folder.skip(int(ids[k + i]), problems[i])  # strict: an error naming the file
                unreadable.append([int(ids[k + i]), problems[i]])
            tokens_BL = torch.zeros(len(ok_B), gen.seq_len, dtype=torch.long)
            scores_B = torch.full((len(ok_B),), float("nan"), dtype=torch.float64)
            if ok_B.any():
                with torch.no_grad():
                    tokens_BL[ok_B] = gen.images_to_tokens(views_B3HW[ok_B].to(gen.device)).cpu()
                with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
                    scores_B[ok_B] = score_images(gen, tokens_BL[ok_B], labels_B[ok_B], span=span, batch_size=batch)
            scores.append(scores_B)
            labels.append(labels_B)
            tokens.append(tokens_BL)
        top = TopPerClass(a.per_class)
        scores_n, labels_n = torch.cat(scores), torch.cat(labels)
        top.add(torch.as_tensor(ids), scores_n, labels_n, torch.cat(tokens))
        top_ids, _, _, top_tokens = top.result()
        tensors = {"image_ids": torch.as_tensor(ids), "labels": labels_n, "scores": scores_n,
                   "top_ids": top_ids, "top_tokens": top_tokens.to(torch.int32)}
        save_shard(run, folder, j, len(ids_N), tensors, {"unreadable": unreadable}, "attack stage A", settings, started)
    dist_utils.barrier()
    top, scores = TopPerClass(a.per_class), []
    for shard in load_shards(run, folder, len(ids_N), settings):
        t = shard.tensors
        where = torch.searchsorted(t["image_ids"], t["top_ids"])  # the shard's candidates among its images
        top.add(t["top_ids"], t["scores"][where], t["labels"][where], t["top_tokens"].long())
        scores.append(t["scores"])
        for index, problem in shard.meta["info"]["unreadable"]:
            images.folder.skip(int(index), problem)
    scores_N = torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)
    _check_every_class_scored(images, ids_N, top)
    return top, scores_N


def _check_every_class_scored(images: TrainingImages, ids_N: np.ndarray, top) -> None:
    """A class of the attacked images none of which could be read is an error naming its folder."""
    missing = sorted(set(images.labels_N[ids_N].tolist()) - set(top.labels_C.tolist()))
    if missing and images.folder is not None:
        sample = images.folder
        names = [sample.classes[sample.class_labels.index(label)] for label in missing]
        raise ValueError(f"{sample.root}: no image of class folder(s) {', '.join(names[:5])} could be read "
                         f"({len(missing)} classes; {sample.summary()})")


def stage_attack(run: Run) -> AttackOutcome:
    """Stage A (score every image, streamed and sharded: :func:`stage_a`), B (candidates), then
    C-D sharded over candidates. ``max_images`` attacks a seeded class-spread sample."""
    cfg, gen = run.config, run.generator()
    a = cfg.attack
    check_prefix_lengths(gen, a.prefix_lengths)  # before stage A scores anything
    images = training_images(run, 1.0)
    settings = {**run.settings("data", "attack"), "images": images.identity}
    inputs = {**run.model_inputs(), **({"sscd": a.sscd_torchscript} if a.similarity == "sscd" else {})}
    span = None if a.score_span is None else tuple(a.score_span)
    batch = cfg.run.batch_size

    def compute(work: Path):
        ids_N = images.reduce(np.arange(len(images)), cfg.data.max_images, cfg.run.seed)
        top, scores_N = stage_a(run, images, ids_N, work / "scores", settings)
        if images.folder is not None and images.folder.unreadable:
            run.log(f"attack: {images.folder.summary()}")
        candidates_C, labels_C, scores_C, tokens_CL = top.result()
        similarity = similarity_fn(run)

        def generate(positions: range):
            pos = torch.arange(positions.start, positions.stop)
            result = run_attack(gen, tokens_CL[pos], labels_C[pos], similarity=similarity, threshold=a.threshold,
                                prefix_lengths=a.prefix_lengths, per_class=a.per_class, span=span, batch_size=batch,
                                candidates=torch.arange(len(pos)))
            result.candidate_ids, result.positions = candidates_C[pos], pos
            result.candidate_scores = scores_C[pos]
            result.num_candidates_total = len(candidates_C)
            return attack_record(result)

        pieces = run_shards(run, work / "candidates", len(candidates_C), generate, "attack stages C-D", settings)
        result = merge_attack_results([attack_from_record(s.tensors, s.meta["info"]) for s in pieces])
        run.log("attack: extracted " + ", ".join(f"{n} tokens: {c}" for n, c in result.counts.items()))
        tensors, meta = attack_record(result)
        read = {"attacked": len(ids_N), "unreadable": int(torch.isnan(scores_N).sum()),
                "classes": images.folder.coverage() if images.folder is not None else "the testbed's classes"}
        return ({**tensors, "candidate_tokens": tokens_CL.to(torch.int32), "scores_N": scores_N,
                 "image_ids_N": torch.as_tensor(ids_N)}, {"attack": meta, "images": read})

    stored = stage_result(run, "attack", settings, compute, inputs)
    tensors = dict(stored.tensors)
    tokens_CL, scores_N, ids_N = tensors.pop("candidate_tokens").long(), tensors.pop("scores_N"), tensors.pop("image_ids_N")
    return AttackOutcome(attack_from_record(tensors, stored.meta["info"]["attack"]), tokens_CL, scores_N, ids_N,
                         stored.meta["cache_key"])


def stage_sweep(run: Run):
    """The intervention sweep on the unedited model's attack candidates (rows spread over ranks)."""
    cfg, gen = run.config, run.generator()
    a, s = cfg.attack, cfg.sweep
    if s.selection != "default" and s.selection not in SELECTIONS[gen.family]:
        raise ValueError(f"selection: got {s.selection!r}; expected 'default' or one of {SELECTIONS[gen.family]} for {gen.family}")
    check_prefix_lengths(gen, a.prefix_lengths)  # before UnitMem and the attack do any work
    unitmem = stage_unitmem(run)
    baseline = stage_attack(run)
    how = None if s.selection == "default" else s.selection
    scores = {"unitmem": unitmem.selection_scores(how), "magnitude": unitmem.selection_scores(how, statistic="magnitude")}
    similarity = similarity_fn(run)
    span = None if a.score_span is None else tuple(a.score_span)
    candidates_C, labels_C = baseline.result.candidate_ids, baseline.result.candidate_labels

    def attack(edited, prefix_lengths):
        result = run_attack(edited, baseline.candidate_tokens_CL, labels_C, similarity=similarity, threshold=a.threshold,
                            prefix_lengths=prefix_lengths, per_class=a.per_class, span=span,
                            batch_size=cfg.run.batch_size, candidates=torch.arange(len(candidates_C)))
        result.candidate_ids = candidates_C[result.candidate_ids]
        return result

    # the rows away from the reported k attack at the reported prefix only (sweep_prefixes: reported)
    reported = (float(s.k_percent if s.k_percent is not None else paper_k_percent(gen.family)), reported_prefix(run)) \
        if s.sweep_prefixes == "reported" else None
    sections = ("data", "unitmem", "attack", "sweep") + (("fid",) if s.sweep_fid else ())
    settings = {**run.settings(*sections), "unitmem_params": unitmem.params, "attack_cache_key": baseline.cache_key,
                "reported": reported}
    identity = sweep_identity(scores, candidates_C, settings)

    def compute(work: Path):
        fid = fid_fn(run) if s.sweep_fid else None
        table = run_sweep(gen, scores, attack, work, identity, k_percents=s.k_percents, modes=s.sweep_modes,
                          seeds=s.random_seeds, prefix_lengths=a.prefix_lengths, reported=reported, fid=fid,
                          fid_modes=s.sweep_fid_modes, rank=run.rank, world_size=run.world_size, log=run.log,
                          on_row=lambda done, total: run.progress.update({"sweep rows": f"{done} of {total}"}))
        tensors = {"selection_scores_KU": scores["unitmem"], "magnitude_scores_KU": scores["magnitude"]}
        return tensors, {"rows": table.to_dict(orient="records"), "identity": identity}

    result = stage_result(run, "sweep", {**settings, "identity": identity}, compute, {})
    table = sweep_table(result.meta["info"]["rows"], s.sweep_modes)
    if run.rank == 0:  # the run's table for the reader, rewritten from the checked result on every call
        csv = table.drop(columns=["extracted_ids", "units_per_block"]).to_csv(index=False).encode()
        atomic_write_bytes(run.out / "sweep.csv", csv)
        run.log(f"sweep: {len(table)} rows -> {run.out / 'sweep.csv'}")
    return table


def fid_setup(run: Run) -> tuple[fid_lib.FeatureExtractor, fid_lib.FeatureStats]:
    """The run's FID features and reference statistics: the testbed classifier's features against
    the family's centre views of the testbed training images ("testbed FID"), or clean-fid's
    Inception against ``fid_reference_npz``: its ``mu``/``sigma`` (``fid_reference: mu-sigma``,
    the ADM evaluator's statistics the paper's FIDs use) or statistics recomputed from its
    ``arr_0`` images (``recompute``). Computed reference statistics are cached under
    ``<cache>/fid-cache`` (:attr:`Run.cache`), bound to their images and extractor."""
    cfg, cache = run.config, run.cache / "fid-cache"
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
        def moments_identity(seed: int, rank: int) -> dict:  # binds a rank's moments to this entry
            return {"moments_of": work.name, "seed": seed, "rank": rank, "world_size": run.world_size}

        extractor, reference = fid_setup(run)
        classes = fid_classes(run)
        results = []
        for seed in f.fid_seeds:
            started = time.time()
            path = work / f"moments-seed{seed}-rank{run.rank}of{run.world_size}"
            try:
                load_result(path, expect=moments_identity(seed, run.rank))  # finished before (a resumed run)
            except ResultFileError:
                moments = fid_lib.sample_moments(gen, extractor, f.fid_samples_per_class, f.sampling_kwargs, seed,
                                                 batch, classes, run.rank, run.world_size, progress=show_progress(run))
                save_result(path, moments.state_dict(), {**moments_identity(seed, run.rank),
                                                         **provenance(settings, cfg.run.seed, started)})
            dist_utils.barrier()
            if run.rank == 0:
                merged = fid_lib.FeatureMoments()
                for r in range(run.world_size):
                    merged.merge(fid_lib.FeatureMoments.from_state_dict(
                        load_result(work / f"moments-seed{seed}-rank{r}of{run.world_size}",
                                    expect=moments_identity(seed, r)).tensors))
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
