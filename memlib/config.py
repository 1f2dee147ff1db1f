"""The run config: every setting of a run, its default, its check and its meaning, in one place.

A run is configured by one flat YAML file (``notebooks/params/*.yaml``) or keyword overrides;
:func:`load_config` / :func:`make_config` read it once into a frozen :class:`RunConfig` with one
section per concern::

    run      seed, device, results_dir, cache_dir, batch_size, shard_size, amp, num_workers
    model    model, model_overrides, checkpoint, tokenizer_checkpoint
    data     dataset, testbed_file, imagenet_train_dir, class_ids, strict_images, max_images
    unitmem  unitmem_fraction, unitmem_images, n_views, rar_views, activation, unitmem_pooled
    attack   similarity, sscd_torchscript, threshold, prefix_lengths, per_class, score_span, rar_attack_crop
    sweep    selection, k_percent, k_percents, sweep_modes, random_seeds, sweep_prefixes, sweep_fid,
             sweep_fid_modes
    fid      fid_feature, fid_samples_per_class, fid_classes, fid_seeds, fid_reference, inception_torchscript, fid_reference_npz,
             classifier_checkpoint, sampling_kwargs
    book     reported_prefix, images_per_class, benchmark_results   (read by the pages; the sweep reads only
             the model's reported prefix, which its cache key then holds)

Keys are unique across sections, so the files stay flat and ``config.attack.threshold`` is the
file's ``threshold``. Every problem of a file is reported in ONE ``ValueError``, a line per key
naming the value found and what was expected; a key of no section is an error (a typo guard).
Relative paths are taken relative to ``base_dir`` (the repository root by default) and made
absolute; a path not given is ``None``.

A stage's cache key is built from the sections it reads (:meth:`RunConfig.sections`), so, for
example, changing an FID setting never invalidates a UnitMem result.

This module does not build models: the model name is checked against the registry's names, and
the testbed pair (an empty ``model``) is resolved into one config per model by
:func:`model_configs`, which also fills in the paper's k% for an unset ``k_percent``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PAPER_NUMBERS_FILE = REPO_ROOT / "book" / "paper_numbers.yaml"
TESTBED_MODELS = {"var": "var-testbed", "rar": "rar-testbed"}
TESTBED_CHECKPOINTS = REPO_ROOT / "data" / "checkpoints"

SWEEP_MODES = ("unitmem-half", "random-half", "unitmem-zero", "per-block-half", "magnitude-half")
SELECTIONS = ("default", "mean", "mean-from-s1", "max", "pooled", "predicts-last", "last", "all")
FID_REFERENCES = ("mu-sigma", "recompute")
RAR_VIEWS = ("ten-crop", "random")
CLASS_IDS = ("wnid", "sorted")  # memlib.data.ImageFolderSample's class_ids
RAR_ATTACK_CROPS = ("resize-centre", "ten-crop-centre")  # memlib.data.attack_view's rar_crop
TEN_CROP_VIEWS = 10


# ---- checks (each returns True when the value is acceptable) ----------------------------------


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _boolean(x: Any) -> bool:
    return isinstance(x, bool)


def _positive_int(x: Any) -> bool:
    return _int(x) and x > 0


def _nonneg_int(x: Any) -> bool:
    return _int(x) and x >= 0


def _string(x: Any) -> bool:
    return isinstance(x, str)


def _mapping(x: Any) -> bool:
    return isinstance(x, dict)


def _percent_list(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(_number(k) and 0 <= k <= 100 for k in x) and len(set(x)) == len(x)


def _nonneg_int_list(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(_nonneg_int(n) for n in x) and len(set(x)) == len(x)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda x: x in choices


def _subset_of(*choices: str) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, list) and bool(x) and all(c in choices for c in x) and len(set(x)) == len(x)


def _model_name(x: Any) -> bool:
    from .models.registry import list_configs  # names only: nothing is built

    return x == "" or (isinstance(x, str) and x in list_configs())


def _device(x: Any) -> bool:
    return isinstance(x, str) and (x in ("auto", "cpu", "cuda") or (x.startswith("cuda:") and x[5:].isdigit()))


def _span(x: Any) -> bool:
    return x is None or (isinstance(x, list) and len(x) == 2 and all(_nonneg_int(v) for v in x) and x[0] < x[1])


def setting(default: Any, check: Callable[[Any], bool], expected: str, meaning: str, kind: str = "value"):
    """A config field: its default, its check, what the check expects (for the error message),
    its meaning (for the README table) and its kind: ``"file"`` / ``"dir"`` (a path that must
    exist when given), ``"path"`` (any path) or ``"value"``."""
    metadata = {"check": check, "expected": expected, "meaning": meaning, "kind": kind}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# ---- the sections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSection:
    seed: int = setting(0, _nonneg_int, "an integer >= 0", "seeds every random choice")
    device: str = setting("auto", _device, "'auto', 'cpu', 'cuda' or 'cuda:N'",
                          "torch device of the models (`auto`: CUDA when available)")
    results_dir: str = setting("results", lambda x: isinstance(x, str) and x != "", "a folder path",
                               "folder of result files, figures and summaries", kind="path")
    cache_dir: str | None = setting(None, _string, "a folder path (empty: results_dir)",
                                    "folder of the stages' cached results (`<stage>-<key>/`, named by their settings); "
                                    "empty: `results_dir`. A run with its own `results_dir` reuses another run's "
                                    "stage results by pointing here (the exercise runs do)", kind="path")
    batch_size: int = setting(64, _positive_int, "a positive integer (rows per forward pass)", "rows per forward pass")
    shard_size: int = setting(256, _positive_int, "a positive integer (images or candidates per resumable shard)",
                              "images or candidates per resumable shard")
    amp: Any = setting("auto", lambda x: x == "auto" or _boolean(x), "'auto' (bf16 on CUDA), true or false",
                       "bf16 autocast (`auto`: on CUDA only; its agreement with fp32 is measured in benchmarks/results.json, `bf16/...`)")
    num_workers: Any = setting("auto", lambda x: x == "auto" or _nonneg_int(x), "'auto' or an integer >= 0",
                               "processes that decode the attack's training images while the model runs (`0`: in the main process; "
                               "`auto`: 0 for the in-memory testbed, else the CPUs per rank less one, at most 8); no result depends on it")


@dataclass(frozen=True)
class ModelSection:
    model: str = setting("", _model_name, "a model name of memlib's registry, or '' for the testbed pair",
                         "name in memlib's model registry; empty: the testbed pair `var-testbed`, `rar-testbed`")
    model_overrides: dict = setting({}, _mapping, "a mapping of config fields to values", "model config fields to replace (testing)")
    checkpoint: str | None = setting(None, _string, "an existing file", "the generator's weights file", kind="file")
    tokenizer_checkpoint: str | None = setting(None, _string, "an existing file", "the tokenizer's weights file", kind="file")


@dataclass(frozen=True)
class DataSection:
    dataset: str = setting("testbed", _one_of("testbed", "imagenet"), "'testbed' or 'imagenet'", "the training images")
    testbed_file: str | None = setting(None, _string, "an existing file (empty: data/ of this repository)",
                                       "the testbed `.npz`; empty: the shipped `data/fashion_mnist_testbed.npz`", kind="file")
    imagenet_train_dir: str | None = setting(None, _string, "an existing folder <dir>/<class>/<image>",
                                             "ImageNet-1k train folder `<dir>/<wnid>/<image>.JPEG`", kind="dir")
    class_ids: str = setting("wnid", _one_of(*CLASS_IDS), "'wnid' or 'sorted'",
                             "class ids of an image folder: `wnid` (the official ImageNet-1k index of each folder's wnid; another folder name is an error) "
                             "or `sorted` (positions of the sorted folder names, for other data)")
    strict_images: bool = setting(False, _boolean, "true (an unreadable file in the image folder is an error) or false (skipped and counted)",
                                  "an unreadable image file is an error (`true`) or skipped and counted")
    max_images: int = setting(0, _nonneg_int, "an integer >= 0 (0: no limit)",
                              "at most N images for UnitMem's D' and the attack, a seeded sample spread across classes (`0`: all)")


@dataclass(frozen=True)
class UnitMemSection:
    unitmem_fraction: float = setting(0.01, lambda x: _number(x) and 0 < x <= 1, "a fraction in (0, 1] of every class",
                                      "share of every ImageNet class in D' (the paper: 1%)")
    unitmem_images: int = setting(0, _nonneg_int, "an integer >= 0 (0: every training image)",
                                  "testbed D': every planted and control image plus a class-spread sample of the others, this many in all (`0`: all)")
    n_views: int = setting(10, _positive_int, "a positive integer", "augmented views per image")
    rar_views: str = setting("random", _one_of(*RAR_VIEWS), "'ten-crop' (exactly 10 views) or 'random'",
                             "RAR's views: `ten-crop` (the ten crops, `n_views` 10) or `random` (random crop + flip)")
    activation: str = setting("post", _one_of("post", "pre"), "'post' (|GELU(fc1)|) or 'pre' (|fc1|)",
                              "`post`: \\|GELU(fc1)\\|, `pre`: \\|fc1\\|")
    unitmem_pooled: bool = setting(False, _boolean, "true or false", "also collect the activation pooled over all positions")


@dataclass(frozen=True)
class AttackSection:
    similarity: str = setting("pixel", _one_of("pixel", "sscd"), "'pixel' (testbed) or 'sscd'",
                              "copy decision: `pixel` (testbed, not SSCD) or `sscd`")
    sscd_torchscript: str | None = setting(None, _string, "an existing TorchScript file",
                                           "`sscd_disc_mixup.torchscript.pt` (trusted code)", kind="file")
    threshold: float = setting(0.75, lambda x: _number(x) and 0 < x <= 1, "a similarity threshold in (0, 1]",
                               "extracted when the similarity exceeds it")
    prefix_lengths: list = setting([0, 1, 5, 14, 30], _nonneg_int_list, "a non-empty list of distinct integers >= 0",
                                   "prefix lengths (tokens); each model uses those it accepts (VAR: scale boundaries)")
    per_class: int = setting(5, _positive_int, "a positive integer", "attack candidates per class")
    score_span: list | None = setting(None, _span, "null (the full sequence) or [start, stop] token positions",
                                      "stage-A token positions `[start, stop]`; null: the whole sequence")
    rar_attack_crop: str = setting("resize-centre", _one_of(*RAR_ATTACK_CROPS), "'resize-centre' or 'ten-crop-centre'",
                                   "the RAR image of a folder the attack tokenizes: `resize-centre` (the attack paper's: resize the shorter side "
                                   "to res, centre crop) or `ten-crop-centre` (the centre crop of RAR's 1.1x ADM crop); the testbed's are its centre views")


@dataclass(frozen=True)
class SweepSection:
    selection: str = setting("default", _one_of(*SELECTIONS), f"one of {', '.join(SELECTIONS)}",
                             "ranking score (`default`: VAR mean over scales, RAR position T-2, which predicts the last token)")
    k_percent: float | None = setting(None, lambda x: x is None or (_number(x) and 0 < x <= 100),
                                      "null (the paper's k% of the family) or a percentage with 0 < k <= 100",
                                      "the k% the pages report; null: the paper's (VAR 10, RAR 5)")
    k_percents: list = setting([0, 1, 2, 5, 10, 20], _percent_list, "a non-empty list of distinct percentages 0 <= k <= 100",
                               "the k% of fc1 units the sweep edits (`0`: unedited)")
    sweep_modes: list = setting(list(SWEEP_MODES), _subset_of(*SWEEP_MODES), f"a non-empty list from {', '.join(SWEEP_MODES)}",
                                "edits of the sweep")
    random_seeds: list = setting([0, 1, 2], lambda x: _nonneg_int_list(x) and len(x) >= 3,
                                 "a list of >= 3 distinct integers >= 0", "seeds of the random-unit control")
    sweep_prefixes: str = setting("reported", _one_of("reported", "all"), "'reported' or 'all'",
                                  "prefix lengths of the sweep's attacks: `reported` (the unedited model and the rows at the "
                                  "reported k at every `prefix_lengths`, the other rows at the reported prefix, the one count "
                                  "the pages read there) or `all` (every row at every prefix length)")
    sweep_fid: bool = setting(False, _boolean, "true or false", "measure FID in the sweep (the unedited model and the rows of `sweep_fid_modes`)")
    sweep_fid_modes: list = setting(["unitmem-half"], _subset_of(*SWEEP_MODES), f"a non-empty list from {', '.join(SWEEP_MODES)}",
                                    "the sweep modes whose rows get FID (with `sweep_fid`)")


@dataclass(frozen=True)
class FidSection:
    fid_feature: str = setting("testbed", _one_of("testbed", "inception"), "'testbed' (the testbed classifier) or 'inception'",
                               "`testbed` (the testbed classifier; not FID in the paper's sense) or `inception`")
    fid_samples_per_class: int = setting(50, _positive_int, "a positive integer", "class-conditional samples per class")
    fid_classes: int = setting(0, _nonneg_int, "an integer >= 0 (0: every class)",
                               "sample only this many classes, a seeded choice (a rehearsal; its metric says \"K of C classes\"; `0`: all)")
    fid_seeds: list = setting([0], lambda x: _nonneg_int_list(x), "a non-empty list of distinct integers >= 0",
                              "sampling seeds of FID (each a full set of samples; the reported FID is their mean, before/after differences are paired by seed)")
    fid_reference: str = setting("mu-sigma", _one_of(*FID_REFERENCES), "'mu-sigma' or 'recompute'",
                                 "Inception FID's reference: the `mu`/`sigma` of `fid_reference_npz` (the ADM evaluator's, as the paper) or recomputed from its `arr_0` images")
    inception_torchscript: str | None = setting(None, _string, "an existing file inception-2015-12-05.pt (clean-fid TorchScript)",
                                                "clean-fid's `inception-2015-12-05.pt`", kind="file")
    fid_reference_npz: str | None = setting(None, _string, "an existing .npz file",
                                            "the ADM ImageNet 256 reference batch (`mu`, `sigma`, `arr_0`)", kind="file")
    classifier_checkpoint: str | None = setting(None, _string, "an existing file (memlib.classifier)",
                                                "the testbed FID's classifier", kind="file")
    sampling_kwargs: dict = setting({}, _mapping, "a mapping of Generator.sample keywords (empty: the family's defaults)",
                                    "`Generator.sample` keywords (`{}`: the family's defaults)")


@dataclass(frozen=True)
class BookSection:
    reported_prefix: dict = setting({}, lambda x: _mapping(x) and all(k in ("var", "rar") and _nonneg_int(v) for k, v in x.items()),
                                    "a mapping of 'var'/'rar' to one of prefix_lengths",
                                    "the prefix (tokens) whose count the pages report, by family; missing: the longest of `prefix_lengths` the model accepts")
    images_per_class: int = setting(8, _positive_int, "a positive integer", "columns of the image grids of the pages")
    benchmark_results: str | None = setting(None, _string, "an existing file written by benchmarks/run_all.py",
                                            "the benchmark results file the Performance page shows", kind="file")


SECTIONS: dict[str, type] = {
    "run": RunSection, "model": ModelSection, "data": DataSection, "unitmem": UnitMemSection,
    "attack": AttackSection, "sweep": SweepSection, "fid": FidSection, "book": BookSection,
}
SECTION_OF: dict[str, str] = {f.name: name for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
"""Flat key -> its section."""
KEYS: tuple[str, ...] = tuple(SECTION_OF)


def location_kinds() -> dict[str, str]:
    """The settings that name a file (``"file"``) or a folder (``"dir"``) by its path."""
    return {f.name: f.metadata["kind"] for section in SECTIONS.values() for f in dataclasses.fields(section)
            if f.metadata.get("kind") in ("file", "dir")}


@dataclass(frozen=True)
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    unitmem: UnitMemSection = field(default_factory=UnitMemSection)
    attack: AttackSection = field(default_factory=AttackSection)
    sweep: SweepSection = field(default_factory=SweepSection)
    fid: FidSection = field(default_factory=FidSection)
    book: BookSection = field(default_factory=BookSection)

    def sections(self, *names: str) -> dict[str, dict]:
        """The named sections as plain dicts (what a stage's cache key and provenance hold)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in names}

    def flat(self) -> dict[str, Any]:
        """Every key and its value, as in a parameter file."""
        return {key: value for section in self.sections(*SECTIONS).values() for key, value in section.items()}

    def replace(self, **values: Any) -> "RunConfig":
        """A copy with flat keys replaced, validated again (paths already absolute stay so)."""
        return make_config({**self.flat(), **values}, base_dir=REPO_ROOT, source="config")


# ---- building and validating -------------------------------------------------------------------


def make_config(values: Mapping[str, Any] | None = None, base_dir: str | os.PathLike = REPO_ROOT,
                source: str = "parameters", stage: str | None = None, **overrides: Any) -> RunConfig:
    """The validated config of flat ``values`` and keyword ``overrides`` (the overrides win),
    defaults filled in. Raises one ``ValueError`` listing every problem, with ``stage`` also
    every key that stage needs and is not given (:func:`require`; for the testbed pair, an
    empty ``model``, the keys other than its model and checkpoints)."""
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise ValueError(f"{source}: expected a mapping of parameter names to values, got {type(values).__name__}")
    values = {**values, **overrides}
    problems = [f"{key}: unknown parameter (known: {', '.join(sorted(KEYS))})" for key in values if key not in SECTION_OF]
    sections = {}
    for name, cls in SECTIONS.items():
        checked = {}
        for f in dataclasses.fields(cls):
            value = values.get(f.name, f.default_factory() if f.default is dataclasses.MISSING else f.default)
            problem, value = _check(f, value, Path(base_dir))
            if problem:
                problems.append(problem)
            checked[f.name] = value
        sections[name] = checked
    problems += _cross_checks(sections)
    if stage is not None and stage in REQUIRED:
        flat = {key: value for section in sections.values() for key, value in section.items()}
        testbed_pair = not flat["model"] and flat["dataset"] == "testbed"
        named = {problem.split(":", 1)[0] for problem in problems}
        problems += [line for key, line in _missing(flat, stage)
                     if key not in named and not (testbed_pair and key in REQUIRED[stage])]
    if problems:
        raise ValueError(f"invalid {source}:\n  " + "\n  ".join(problems))
    return RunConfig(**{name: SECTIONS[name](**checked) for name, checked in sections.items()})


def _check(f: dataclasses.Field, value: Any, base_dir: Path) -> tuple[str | None, Any]:
    """(problem or None, the value with a given path made absolute and a path not given None)."""
    meta = f.metadata
    if value in (None, "") and (meta["kind"] in ("file", "dir") or (meta["kind"] == "path" and f.default is None)):
        return None, None  # a path not given (results_dir, whose default is a folder, must be given)
    if not meta["check"](value):
        return f"{f.name}: got {value!r}; expected {_expected(f)}", value
    if meta["kind"] in ("file", "dir", "path"):
        path = Path(value) if Path(value).is_absolute() else base_dir / value
        if (meta["kind"] == "file" and not path.is_file()) or (meta["kind"] == "dir" and not path.is_dir()):
            found = "a folder" if path.is_dir() else "a file" if path.exists() else "not found"
            return f"{f.name}: got {value!r}; expected {meta['expected']} ({found}: {path})", value
        return None, str(path)
    return None, value


def _expected(f: dataclasses.Field) -> str:
    if f.name == "model":
        from .models.registry import list_configs

        return "a model name of memlib's registry: " + ", ".join(list_configs()) + " (or '' for the testbed pair)"
    return f.metadata["expected"]


def _cross_checks(sections: dict[str, dict]) -> list[str]:
    """Problems that involve two keys."""
    problems = []
    if sections["data"]["dataset"] == "imagenet" and not sections["data"]["imagenet_train_dir"]:
        problems.append("imagenet_train_dir: got ''; expected an existing folder when dataset is 'imagenet'")
    if sections["attack"]["similarity"] == "sscd" and not sections["attack"]["sscd_torchscript"]:
        problems.append("sscd_torchscript: got ''; expected an existing TorchScript file when similarity is 'sscd'")
    unitmem = sections["unitmem"]
    if unitmem["rar_views"] == "ten-crop" and unitmem["n_views"] != TEN_CROP_VIEWS:
        problems.append(f"n_views: got {unitmem['n_views']!r}; expected {TEN_CROP_VIEWS} when rar_views is 'ten-crop'")
    attack, book = sections["attack"], sections["book"]
    if isinstance(book["reported_prefix"], dict) and isinstance(attack["prefix_lengths"], list):
        for family, n in book["reported_prefix"].items():
            if n not in attack["prefix_lengths"]:
                problems.append(f"reported_prefix: got {family}: {n!r}; expected one of prefix_lengths {attack['prefix_lengths']}")
    if sections["sweep"]["selection"] == "pooled" and not unitmem["unitmem_pooled"]:
        problems.append("selection: got 'pooled'; it needs unitmem_pooled: true")
    return problems


def _read_yaml(path: Path) -> Any:
    """The one place a parameter file is parsed: :func:`memlib.yamlsafe.load_yaml` (YAML 1.2
    core schema; a duplicate key, a non-UTF-8 or invalid file is one error naming file and line)."""
    from .yamlsafe import load_yaml

    return load_yaml(path)


def load_config(path: str | os.PathLike, base_dir: str | os.PathLike = REPO_ROOT, stage: str | None = None,
                **overrides: Any) -> RunConfig:
    """Read a flat YAML parameter file and :func:`make_config` it (keyword ``overrides`` win;
    with ``stage``, also the keys it needs)."""
    path = Path(path) if Path(path).is_absolute() else Path(base_dir) / path
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    raw = _read_yaml(path)
    return make_config({} if raw is None else raw, base_dir=base_dir, source=str(path), stage=stage, **overrides)


def page_config(params_file: str | os.PathLike, **page_values: Any) -> RunConfig:
    """A notebook's config: the run's parameter file with the settings its ``parameters`` cell
    declares, where ``None`` means "the file's value" (papermill's ``-p`` sets the others)."""
    return load_config(params_file, **{key: value for key, value in page_values.items() if value is not None})


# ---- what a stage needs ------------------------------------------------------------------------

REQUIRED: dict[str, tuple[str, ...]] = {
    "unitmem": ("model", "checkpoint", "tokenizer_checkpoint"),
    "attack": ("model", "checkpoint", "tokenizer_checkpoint"),
    "sweep": ("model", "checkpoint", "tokenizer_checkpoint"),
    "fid": ("model", "checkpoint", "tokenizer_checkpoint"),
}


def required_keys(flat: Mapping[str, Any], stage: str) -> tuple[str, ...]:
    """The keys ``stage`` needs (``flat``: a config's :meth:`RunConfig.flat` values):
    ``REQUIRED[stage]``, plus the FID files when it measures FID."""
    keys = REQUIRED[stage]
    if stage == "fid" or (stage == "sweep" and flat["sweep_fid"]):
        keys += ("inception_torchscript", "fid_reference_npz") if flat["fid_feature"] == "inception" else ("classifier_checkpoint",)
    return keys


def _missing(flat: Mapping[str, Any], stage: str) -> list[tuple[str, str]]:
    """(key, problem line) of every key ``stage`` needs that is not given."""
    fields = {f.name: f for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    return [(key, f"{key}: got ''; expected {_expected(fields[key])}")
            for key in required_keys(flat, stage) if flat[key] in ("", None)]


def require(config: RunConfig, stage: str, source: str = "parameters") -> None:
    """Raise one ``ValueError`` naming every key ``stage`` needs that is not given."""
    if stage not in REQUIRED:
        raise ValueError(f"stage: got {stage!r}; expected one of {', '.join(REQUIRED)}")
    missing = _missing(config.flat(), stage)
    if missing:
        raise ValueError(f"invalid {source} for stage {stage!r}:\n  " + "\n  ".join(line for _, line in missing))


# ---- the run's models --------------------------------------------------------------------------


def model_configs(config: RunConfig, stage: str) -> dict[str, RunConfig]:
    """The run's models by family, each with its own config, checked for ``stage``.

    A ``model`` name gives that one model. An empty ``model`` on the testbed gives the testbed
    pair (:data:`TESTBED_MODELS`) with the checkpoints shipped in data/checkpoints, each with its
    own results folder ``results_dir/<name>`` (and cache folder ``cache_dir/<name>`` when
    ``cache_dir`` is given). An unset ``k_percent`` becomes the paper's k% of
    the model's family, so what a page reports is what its provenance records.
    """
    from .models.registry import get_config  # a config dataclass, not a model

    if config.model.model:
        family = get_config(config.model.model).family
        configs = {family: config}
    elif config.data.dataset != "testbed" or config.model.checkpoint or config.model.tokenizer_checkpoint:
        raise ValueError("model: got ''; expected a model name of memlib's registry (an empty model means the "
                         "testbed pair, which needs dataset 'testbed' and empty checkpoint paths)")
    else:
        configs = {}
        for family, name in TESTBED_MODELS.items():
            try:
                configs[family] = config.replace(
                    model=name, checkpoint=str(TESTBED_CHECKPOINTS / f"{name}.safetensors"),
                    tokenizer_checkpoint=str(TESTBED_CHECKPOINTS / f"{name}-tokenizer.safetensors"),
                    results_dir=str(Path(config.run.results_dir) / name),
                    cache_dir=str(Path(config.run.cache_dir) / name) if config.run.cache_dir else None)
            except ValueError as err:
                raise ValueError(f"{err}\n  (the testbed checkpoints are made by `make checkpoints`)") from err
    for family, model_config in configs.items():
        require(model_config, stage)
        k = model_config.sweep.k_percent
        configs[family] = model_config.replace(k_percent=float(paper_k_percent(family) if k is None else k))
    return configs


def paper_numbers() -> dict:
    """The paper's numbers (book/paper_numbers.yaml, the one file that holds them)."""
    return _read_yaml(PAPER_NUMBERS_FILE)


def paper_k_percent(family: str) -> float:
    """The paper's share of halved units for the family (VAR-d30: 10%, RAR-XXL: 5%)."""
    models = paper_numbers()["models"].values()
    return next(m["k_percent"] for m in models if m["family"] == family and "k_percent" in m)


# ---- the README's table ------------------------------------------------------------------------


def parameter_table() -> str:
    """The Markdown table of every key (section, key, default, meaning) that README.md holds."""
    lines = ["| section | parameter | default | meaning |", "|---|---|---|---|"]
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            shown = "empty" if default in (None, "") else f"`{yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}`"
            lines.append(f"| {name} | `{f.name}` | {shown} | {f.metadata['meaning']} |")
    return "\n".join(lines)
