"""Reading checkpoint files safely and loading them strictly, with errors a user can act on.

Only two formats are read: ``.safetensors`` and torch pickles opened with
``torch.load(weights_only=True)``, which refuses any pickle that would construct arbitrary
objects (and so run code hidden in the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model it was loaded into."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` state dict from ``.safetensors`` or ``.pth``/``.bin``/``.pt``.

    Raises :class:`CheckpointError` naming the file for a missing, truncated, corrupt or
    unsafe file, or one that does not hold a flat mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path), device="cpu")
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except Exception as err:  # the underlying libraries raise many types; name the file once
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            " (expected a .safetensors file or a torch state dict loadable with weights_only=True)"
        ) from err
    if isinstance(state_dict, dict) and "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a flat mapping of names to tensors")
    return state_dict


def _first(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return f"{len(names)} ({shown}{', ...' if len(names) > n else ''})"


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, config: object) -> None:
    """Copy ``state_dict`` into ``module`` requiring identical names and shapes.

    On any mismatch raises one :class:`CheckpointError` listing the missing, unexpected and
    wrong-shaped keys (the first few of each, with counts) and the config that was tried.
    Tensors are cast to the dtype of the module's own tensor (fp16 files load into fp32 models).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"checkpoint {source} does not fit the model built from config {config}:\n"
            f"  missing keys: {_first(missing) if missing else 0}\n"
            f"  unexpected keys: {_first(unexpected) if unexpected else 0}\n"
            f"  wrong-shaped keys: {_first(wrong_shape) if wrong_shape else 0}"
        )
    cast = {k: v.to(dtype=expected[k].dtype) for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True, assign=any(t.is_meta for t in expected.values()))
