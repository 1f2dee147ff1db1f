"""Parameters of a run: read a YAML file, fill defaults, check every value against one table.

The table :data:`SPECS` lists every key with its default, a check and what the check expects.
:func:`load_params` reports ALL problems of a file in ONE ``ValueError``, each line naming the
key, the value found and what was expected. Keys not in the table are an error too (a typo
guard). Relative paths are taken relative to ``base_dir`` (the repository root by default, as
in the notebooks' parameter files); an empty string means "not given".

Which keys a stage needs (``REQUIRED``) is checked by :func:`require`, so a testbed run does
not have to name an SSCD file it never uses.

Notebooks check the values of their ``parameters`` cell with one call, before any work::

    params = validate_params({"seed": seed, "results_dir": results_dir, ...}, stage="attack")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

SWEEP_MODES = ("unitmem-half", "random-half", "unitmem-zero", "per-block-half", "magnitude-half")
SELECTIONS = ("default", "mean", "mean-from-s1", "max", "pooled", "predicts-last", "last", "all")


@dataclass(frozen=True)
class Spec:
    default: Any
    check: Callable[[Any], bool]
    expected: str
    kind: str = "value"  # "file" / "dir": a path that must exist when given; "path": any path


# ---- checks (each returns True when the value is acceptable) ----------------------------------


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def boolean(x: Any) -> bool:
    return isinstance(x, bool)


def positive_int(x: Any) -> bool:
    return _int(x) and x > 0


def nonneg_int(x: Any) -> bool:
    return _int(x) and x >= 0


def percent(x: Any) -> bool:
    return _number(x) and 0 < x <= 100


def percent_list(x: Any) -> bool:
    """Sweep percents: 0 (the unedited baseline) to 100, no duplicates."""
    return isinstance(x, list) and bool(x) and all(_number(k) and 0 <= k <= 100 for k in x) and len(set(x)) == len(x)


def nonneg_int_list(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(nonneg_int(n) for n in x) and len(set(x)) == len(x)


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda x: x in choices


def subset_of(*choices: str) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, list) and bool(x) and all(c in choices for c in x) and len(set(x)) == len(x)


def model_name(x: Any) -> bool:
    from .models.registry import list_configs

    return isinstance(x, str) and x in list_configs()


def device(x: Any) -> bool:
    return isinstance(x, str) and (x in ("auto", "cpu", "cuda") or (x.startswith("cuda:") and x[5:].isdigit()))


def span(x: Any) -> bool:
    return x is None or (isinstance(x, list) and len(x) == 2 and all(nonneg_int(v) for v in x) and x[0] < x[1])


def _known_models() -> str:
    from .models.registry import list_configs

    return "a model name of memlib's registry: " + ", ".join(list_configs())


# ---- the table ---------------------------------------------------------------------------------

SPECS: dict[str, Spec] = {
    # run
    "seed": Spec(0, nonneg_int, "an integer >= 0"),
    "device": Spec("auto", device, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "results_dir": Spec("results", lambda x: isinstance(x, str) and x != "", "a folder path", kind="path"),
    "images_per_class": Spec(8, positive_int, "a positive integer"),
    "batch_size": Spec(64, positive_int, "a positive integer (rows per forward pass)"),
    "shard_size": Spec(256, positive_int, "a positive integer (images or candidates per resumable shard)"),
    "amp": Spec("auto", lambda x: x == "auto" or boolean(x), "'auto' (bf16 on CUDA), true or false"),
    # model
    "model": Spec("", model_name, "see below"),
    "model_overrides": Spec({}, lambda x: isinstance(x, dict), "a mapping of config fields to values"),
    "checkpoint": Spec("", lambda x: isinstance(x, str), "an existing file", kind="file"),
    "tokenizer_checkpoint": Spec("", lambda x: isinstance(x, str), "an existing file", kind="file"),
    # data
    "dataset": Spec("testbed", one_of("testbed", "imagenet"), "'testbed' or 'imagenet'"),
    "testbed_file": Spec("", lambda x: isinstance(x, str), "an existing file (empty: data/ of this repository)", kind="file"),
    "imagenet_train_dir": Spec("", lambda x: isinstance(x, str), "an existing folder <dir>/<class>/<image>", kind="dir"),
    "strict_images": Spec(False, boolean, "true (an unreadable file in the image folder is an error) or false (skipped and counted)"),
    "unitmem_fraction": Spec(0.01, lambda x: _number(x) and 0 < x <= 1, "a fraction in (0, 1] of every class"),
    "max_images": Spec(0, nonneg_int, "an integer >= 0 (0: no limit)"),
    # UnitMem
    "n_views": Spec(10, positive_int, "a positive integer"),
    "activation": Spec("post", one_of("post", "pre"), "'post' (|GELU(fc1)|) or 'pre' (|fc1|)"),
    "unitmem_pooled": Spec(False, boolean, "true or false"),
    "selection": Spec("default", one_of(*SELECTIONS), f"one of {', '.join(SELECTIONS)}"),
    "k_percent": Spec(10, percent, "a percentage with 0 < k <= 100"),
    # attack
    "similarity": Spec("pixel", one_of("pixel", "sscd"), "'pixel' (testbed) or 'sscd'"),
    "sscd_torchscript": Spec("", lambda x: isinstance(x, str), "an existing TorchScript file", kind="file"),
    "threshold": Spec(0.75, lambda x: _number(x) and 0 < x <= 1, "a similarity threshold in (0, 1]"),
    "prefix_lengths": Spec([0, 1, 5, 14, 30], nonneg_int_list, "a non-empty list of distinct integers >= 0"),
    "per_class": Spec(5, positive_int, "a positive integer"),
    "score_span": Spec(None, span, "null (the full sequence) or [start, stop] token positions"),
    # sweep
    "k_percents": Spec([0, 1, 2, 5, 10, 20], percent_list, "a non-empty list of distinct percentages 0 <= k <= 100"),
    "sweep_modes": Spec(list(SWEEP_MODES), subset_of(*SWEEP_MODES), f"a non-empty list from {', '.join(SWEEP_MODES)}"),
    "random_seeds": Spec([0, 1, 2], lambda x: nonneg_int_list(x) and len(x) >= 3, "a list of >= 3 distinct integers >= 0"),
    "sweep_fid": Spec(False, boolean, "true or false"),
    # FID
    "fid_feature": Spec("testbed", one_of("testbed", "inception"), "'testbed' (the testbed classifier) or 'inception'"),
    "fid_samples_per_class": Spec(50, positive_int, "a positive integer"),
    "inception_torchscript": Spec("", lambda x: isinstance(x, str), "an existing file inception-2015-12-05.pt (clean-fid TorchScript)", kind="file"),
    "fid_reference_npz": Spec("", lambda x: isinstance(x, str), "an existing .npz file", kind="file"),
    "classifier_checkpoint": Spec("", lambda x: isinstance(x, str), "an existing file (memlib.classifier)", kind="file"),
    "sampling_kwargs": Spec({}, lambda x: isinstance(x, dict), "a mapping of Generator.sample keywords (empty: the family's defaults)"),
    # the Performance page
    "benchmark_results": Spec("", lambda x: isinstance(x, str), "an existing file written by benchmarks/run_all.py", kind="file"),
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "unitmem": ("model", "checkpoint", "tokenizer_checkpoint"),
    "attack": ("model", "checkpoint", "tokenizer_checkpoint"),
    "sweep": ("model", "checkpoint", "tokenizer_checkpoint"),
    "fid": ("model", "checkpoint", "tokenizer_checkpoint"),
}


def validate(params: Mapping[str, Any], base_dir: str | os.PathLike = REPO_ROOT, source: str = "parameters") -> dict:
    """Defaults filled in, paths made absolute (relative to ``base_dir``), every value checked.
    ``None`` for a file or folder means "not given", as ``""`` does.
    Raises one ``ValueError`` listing every problem; returns the complete parameter dict."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: expected a mapping of parameter names to values, got {type(params).__name__}")
    problems = []
    for key in params:
        if key not in SPECS:
            problems.append(f"{key}: unknown parameter (known: {', '.join(sorted(SPECS))})")
    out = {}
    for key, spec in SPECS.items():
        value = params.get(key, spec.default)
        if spec.kind in ("file", "dir") and value is None:
            value = ""
        if key == "model" and value == "":
            out[key] = value
            continue
        if not spec.check(value):
            expected = _known_models() if key == "model" else spec.expected
            problems.append(f"{key}: got {value!r}; expected {expected}")
            continue
        if spec.kind in ("file", "dir", "path") and value != "":
            path = Path(value) if Path(value).is_absolute() else Path(base_dir) / value
            if spec.kind == "file" and not path.is_file():
                problems.append(f"{key}: got {value!r}; expected {spec.expected} (not found: {path})")
                continue
            if spec.kind == "dir" and not path.is_dir():
                problems.append(f"{key}: got {value!r}; expected {spec.expected} (not found: {path})")
                continue
            value = str(path)
        out[key] = value
    if out.get("dataset") == "imagenet" and not out.get("imagenet_train_dir"):
        problems.append("imagenet_train_dir: got ''; expected an existing folder when dataset is 'imagenet'")
    if out.get("similarity") == "sscd" and not out.get("sscd_torchscript"):
        problems.append("sscd_torchscript: got ''; expected an existing TorchScript file when similarity is 'sscd'")
    if problems:
        raise ValueError(f"invalid {source}:\n  " + "\n  ".join(problems))
    return out


def required_keys(params: Mapping[str, Any], stage: str) -> tuple[str, ...]:
    """The keys ``stage`` needs: ``REQUIRED[stage]``, plus the FID files when it measures FID."""
    keys = REQUIRED.get(stage, ())
    if stage == "fid" or (stage == "sweep" and params.get("sweep_fid")):
        if params.get("fid_feature") == "inception":
            keys += ("inception_torchscript", "fid_reference_npz")
        else:
            keys += ("classifier_checkpoint",)
    return keys


def require(params: Mapping[str, Any], stage: str, source: str = "parameters") -> None:
    """Raise one ``ValueError`` naming every key ``stage`` needs that is empty."""
    missing = [key for key in required_keys(params, stage) if params.get(key) in ("", None)]
    if missing:
        lines = [f"{key}: got {params.get(key)!r}; expected {SPECS[key].expected if key != 'model' else _known_models()}"
                 for key in missing]
        raise ValueError(f"invalid {source} for stage {stage!r}:\n  " + "\n  ".join(lines))


def validate_params(values: Mapping[str, Any], stage: str | None = None,
                    base_dir: str | os.PathLike = REPO_ROOT, source: str = "notebook parameters") -> dict:
    """The notebooks' check of their ``parameters`` cell: :func:`validate` the given values and,
    for a ``stage`` (a key of :data:`REQUIRED`), :func:`require` the keys it needs. Raises one
    ``ValueError`` naming every bad parameter, its value and what was expected; returns the
    complete parameter dict (defaults filled in, paths absolute, ``""`` for a path not given)."""
    if stage is not None and stage not in REQUIRED:
        raise ValueError(f"stage: got {stage!r}; expected None or one of {', '.join(REQUIRED)}")
    params = validate(values, base_dir, source=source)
    if stage is not None:
        require(params, stage, source=source)
    return params


def load_params(path: str | os.PathLike, base_dir: str | os.PathLike = REPO_ROOT, stage: str | None = None) -> dict:
    """Read a YAML parameter file, :func:`validate` it and, for a stage, :func:`require` its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    params = validate({} if raw is None else raw, base_dir, source=str(path))
    if stage is not None:
        require(params, stage, source=str(path))
    return params


# ---------------------------------------------------------------------------------------------
# The run's models, as the notebooks see them
# ---------------------------------------------------------------------------------------------

TESTBED_MODELS = {"var": "var-testbed", "rar": "rar-testbed"}
PAPER_NUMBERS_FILE = REPO_ROOT / "book" / "paper_numbers.yaml"


def run_models(values: Mapping[str, Any], stage: str, *, filter_prefixes: bool = False) -> dict[str, dict]:
    """The run's models by family, each with its parameters validated for ``stage``.

    A ``model`` name gives that one model. An empty ``model`` on the testbed gives the testbed
    pair (``TESTBED_MODELS``) with the checkpoints shipped in data/checkpoints, each with its
    own results folder. With ``filter_prefixes`` each model keeps only the ``prefix_lengths``
    it accepts (VAR: scale boundaries), and none accepted is an error naming the parameter.
    """
    from .models.registry import build_generator, get_config

    values = {key: value for key, value in values.items() if value is not None}
    params = validate_params(values)
    if params["model"]:
        models = {get_config(params["model"]).family: validate_params(values, stage)}
    elif params["dataset"] != "testbed" or params["checkpoint"] or params["tokenizer_checkpoint"]:
        raise ValueError("model: got ''; expected a model name of memlib's registry (an empty model means the "
                         "testbed pair, which needs dataset 'testbed' and empty checkpoint paths)")
    else:
        folder, models = REPO_ROOT / "data" / "checkpoints", {}
        for family, name in TESTBED_MODELS.items():
            try:
                models[family] = validate_params({**values, "model": name,
                                                  "checkpoint": str(folder / f"{name}.safetensors"),
                                                  "tokenizer_checkpoint": str(folder / f"{name}-tokenizer.safetensors"),
                                                  "results_dir": str(Path(params["results_dir"]) / name)}, stage)
            except ValueError as err:
                raise ValueError(f"{err}\n  (the testbed checkpoints are made by `make checkpoints`)") from err
    if filter_prefixes:
        for p in models.values():
            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in p["model_overrides"].items()}
            valid = build_generator(get_config(p["model"], **overrides), device="meta").valid_prefix_lengths()
            usable = [n for n in p["prefix_lengths"] if n in valid]
            if not usable:
                raise ValueError(f"prefix_lengths: got {p['prefix_lengths']}; {p['model']} accepts none of them "
                                 f"(valid: {valid[:12]}{' ...' if len(valid) > 12 else ''})")
            p["prefix_lengths"] = usable
    return models


def paper_numbers() -> dict:
    """The paper's numbers (book/paper_numbers.yaml, the one file that holds them)."""
    return yaml.safe_load(PAPER_NUMBERS_FILE.read_text(encoding="utf-8"))


def paper_k_percent(family: str) -> float:
    """The paper's share of halved units for the family (VAR-d30: 10%, RAR-XXL: 5%)."""
    models = paper_numbers()["models"].values()
    return next(m["k_percent"] for m in models if m["family"] == family and "k_percent" in m)
