"""Named model configs and the one entry point that builds and loads generators.

Each family module (``var``, ``rar``) exports ``CONFIGS: dict[str, <Family>Config]`` and a
``Generator`` subclass whose constructor is ``(config, device)``; each config carries
``family``. The testbed's configs live in ``memlib.models.testbed`` beside the official ones.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from . import rar, testbed, var
from .generator import Generator
from .loading import load_strict, read_state_dict

_FAMILIES = {"var": var.VARGenerator, "rar": rar.RARGenerator}


def _all_configs() -> dict:
    return {**var.CONFIGS, **rar.CONFIGS, **testbed.CONFIGS}


def list_configs() -> list[str]:
    """Names accepted by :func:`get_config`, :func:`build_generator` and :func:`load_generator`."""
    return sorted(_all_configs())


def get_config(name: str, **overrides):
    """The named config, with any field replaced by ``overrides`` (every size is settable)."""
    configs = _all_configs()
    if name not in configs:
        raise ValueError(f"unknown model name {name!r}; expected one of {', '.join(sorted(configs))}")
    config = configs[name]
    unknown = set(overrides) - {f.name for f in dataclasses.fields(config)}
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)} for {name!r}")
    return dataclasses.replace(config, **overrides)


def build_generator(config, device: str | torch.device = "cpu") -> Generator:
    """Build a generator from a config object or a registered name. ``device="meta"`` allocates
    nothing (for shape checks of billion-parameter configs)."""
    if isinstance(config, str):
        config = get_config(config)
    return _FAMILIES[config.family](config, device=device)


def load_generator(
    name_or_config,
    weights: str | os.PathLike,
    tokenizer_weights: str | os.PathLike,
    device: str | torch.device = "cpu",
) -> Generator:
    """Build the named generator and load both checkpoint files strictly, then ``eval()``.

    ``weights`` is the transformer's file (``var_d30.pth``, ``rar_xxl.bin``, a testbed
    ``.safetensors``) and ``tokenizer_weights`` the tokenizer's (``vae_ch160v4096z32.pth``,
    ``maskgit-vqgan-imagenet-f16-256.bin``). Files are read with ``weights_only=True`` or as
    safetensors; a mismatch raises :class:`~memlib.models.loading.CheckpointError`.
    """
    config = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    generator = build_generator(config, device="meta")
    load_strict(generator.transformer, read_state_dict(weights), source=str(weights), config=config)
    tokenizer_sd = generator.adapt_tokenizer_state_dict(read_state_dict(tokenizer_weights))
    load_strict(generator.tokenizer, tokenizer_sd, source=str(tokenizer_weights), config=config)
    generator.after_load()
    return generator.to(device).eval()
