"""The paper's measurement protocol, in one place: the settings that make a run's numbers
comparable to the paper's, and which of them a run does not meet.

    PAPER_PROTOCOL            every setting that defines the protocol, with the paper's value
    protocol_mismatches(cfg)  the settings of a run's config that differ, [] when none does

The paper's values come from spec/method.md: one of the paper's models (book/paper_numbers.yaml)
at its official size, the whole ImageNet-1k train set, D' = 1% of every class with 10 views of
the family's augmentation (RAR: the ten crops) and |GELU(fc1)|; the extraction attack of
Kowalczuk et al. (stage A over VAR's last scale or RAR's last 99 tokens, 5 candidates per class,
prefixes 0, 1, 5, 14, 30 tokens with the count at 30, SSCD cosine > 0.75); FID with Inception
on 50 samples of every class against the ADM reference batch's ``mu``/``sigma``, with each
family's official sampling settings (VAR: cfg 1.5, top-k 900, top-p 0.96; RAR: the model's own
guidance, power and temperature). A setting outside this list (batch size, shard size, device,
seed, paths) does not change what is measured.

The reproduction page calls a run comparable to the paper only when
``protocol_mismatches(config)`` is empty, and names each entry otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import RunConfig, paper_numbers

PAPER_PREFIXES = [0, 1, 5, 14, 30]
PAPER_REPORTED_PREFIX = 30
RAR_SCORED_TOKENS = 99  # stage A over RAR's last 99 tokens
VAR_FID_SAMPLING = {"cfg": 1.5, "top_k": 900, "top_p": 0.96}


@dataclass(frozen=True)
class Mismatch:
    """One protocol setting a run does not meet: its key, the run's value and the paper's."""

    key: str
    value: Any
    paper: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.value!r} (the paper: {self.paper!r})"


@dataclass(frozen=True)
class ProtocolSetting:
    """A setting of the protocol: ``value(config, model)`` reads it from a run's config (and the
    registry config of its model, overrides applied), ``paper(official)`` gives the paper's value
    for the official registry config of the run's model name."""

    key: str
    value: Callable[[RunConfig, Any], Any]
    paper: Callable[[Any], Any]
    meaning: str


def _flat(key: str) -> Callable[[RunConfig, Any], Any]:
    return lambda config, model: config.flat()[key]


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda official: value


def _score_span(official) -> list[int]:
    if official.family == "var":  # the last scale
        return [official.seq_len - official.patch_nums[-1] ** 2, official.seq_len]
    return [official.image_seq_len - RAR_SCORED_TOKENS, official.image_seq_len]


def _sampling(config: RunConfig, model) -> dict:
    """The sampling settings FID runs with: the family's defaults, then ``sampling_kwargs``."""
    if model.family == "var":
        defaults = {"cfg": 1.5, "top_k": 0, "top_p": 0.0}  # VARGenerator.sample's defaults
    else:
        defaults = {"guidance_scale": model.guidance_scale, "guidance_scale_pow": model.guidance_scale_pow,
                    "temperature": model.temperature}
    return {**defaults, **config.fid.sampling_kwargs}


def _paper_sampling(official) -> dict:
    if official.family == "var":
        return dict(VAR_FID_SAMPLING)
    return {"guidance_scale": official.guidance_scale, "guidance_scale_pow": official.guidance_scale_pow,
            "temperature": official.temperature}


def _reported_prefix(config: RunConfig, model) -> int:
    return int(config.book.reported_prefix.get(model.family, max(config.attack.prefix_lengths)))


PAPER_PROTOCOL: tuple[ProtocolSetting, ...] = (
    ProtocolSetting("model", lambda c, m: c.model.model, lambda official: sorted(paper_numbers()["models"]),
                    "one of the paper's models"),
    ProtocolSetting("model_overrides", _flat("model_overrides"), _constant({}), "the model at its official size"),
    ProtocolSetting("dataset", _flat("dataset"), _constant("imagenet"), "the ImageNet-1k train set"),
    ProtocolSetting("max_images", _flat("max_images"), _constant(0), "every training image"),
    ProtocolSetting("unitmem_fraction", _flat("unitmem_fraction"), _constant(0.01), "D' = 1% of every class"),
    ProtocolSetting("n_views", _flat("n_views"), _constant(10), "10 augmented views per image"),
    ProtocolSetting("rar_views", _flat("rar_views"), _constant("ten-crop"), "RAR: the ten-crop views"),
    ProtocolSetting("activation", _flat("activation"), _constant("post"), "UnitMem of |GELU(fc1)|"),
    ProtocolSetting("similarity", _flat("similarity"), _constant("sscd"), "SSCD copy detection"),
    ProtocolSetting("threshold", _flat("threshold"), _constant(0.75), "extracted above SSCD cosine 0.75"),
    ProtocolSetting("per_class", _flat("per_class"), _constant(5), "5 candidates per class"),
    ProtocolSetting("score_span", _flat("score_span"), _score_span, "stage A: VAR's last scale, RAR's last 99 tokens"),
    ProtocolSetting("prefix_lengths", _flat("prefix_lengths"), _constant(PAPER_PREFIXES), "prefixes of 0, 1, 5, 14, 30 tokens"),
    ProtocolSetting("reported_prefix", _reported_prefix, _constant(PAPER_REPORTED_PREFIX), "the count at a 30-token prefix"),
    ProtocolSetting("fid_feature", _flat("fid_feature"), _constant("inception"), "Inception-v3 features"),
    ProtocolSetting("fid_reference", _flat("fid_reference"), _constant("mu-sigma"), "the ADM reference batch's mu/sigma"),
    ProtocolSetting("fid_samples_per_class", _flat("fid_samples_per_class"), _constant(50), "50 samples per class (50,000)"),
    ProtocolSetting("fid_classes", _flat("fid_classes"), _constant(0), "samples of every class"),
    ProtocolSetting("sampling_kwargs", _sampling, _paper_sampling, "the family's official FID sampling settings"),
)
"""Every setting that defines the paper's protocol (module docstring)."""


def protocol_mismatches(config: RunConfig) -> list[Mismatch]:
    """The settings of ``config`` (one model's run, ``config.model.model`` set) that differ from
    the paper's protocol (:data:`PAPER_PROTOCOL`), in its order; [] when the run follows it.
    ``rar_views`` counts for RAR models only. A model the paper did not run (the testbed's)
    fails ``model``; its other settings are compared with the paper's for its family."""
    from .models.registry import get_config

    if not config.model.model:
        raise ValueError("model: got ''; protocol_mismatches compares one model's run (stages.make_runs gives them)")
    official = get_config(config.model.model)
    model = get_config(config.model.model, **{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in config.model.model_overrides.items()})
    mismatches = []
    for setting in PAPER_PROTOCOL:
        if setting.key == "rar_views" and model.family != "rar":
            continue
        value, paper = setting.value(config, model), setting.paper(official)
        if not (value in paper if setting.key == "model" else _same(value, paper)):
            mismatches.append(Mismatch(setting.key, value, paper))
    return mismatches


def _same(value: Any, paper: Any) -> bool:
    """Equal, numbers as numbers (900 == 900.0, True != 1), also inside lists and dicts."""
    if isinstance(paper, dict):
        return isinstance(value, dict) and value.keys() == paper.keys() and all(_same(value[k], paper[k]) for k in paper)
    if isinstance(paper, (list, tuple)):
        return isinstance(value, (list, tuple)) and len(value) == len(paper) and all(map(_same, value, paper))
    return isinstance(value, bool) == isinstance(paper, bool) and value == paper
