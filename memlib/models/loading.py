"""Reading checkpoint files safely and loading them strictly, with errors a user can act on.

Only two formats are read: ``.safetensors`` and torch pickles opened with
``torch.load(weights_only=True)``, which refuses any pickle that would construct arbitrary
objects (and so run code hidden in the file). torch's own message for such a file recommends
loading it unsafely; it is replaced by one that does not (:func:`_read_failure`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model it was loaded into."""


_UNSAFE_ADVICE = re.compile(r"weights_only|safe_globals|trust|file an issue|documentation of torch.load", re.IGNORECASE)


def _read_failure(err: Exception) -> str:
    """What went wrong reading a checkpoint, in one line that never advises an unsafe load
    (torch's weights-only refusal suggests ``weights_only=False`` or allowlisting the class)."""
    text = str(err)
    if not re.search(r"[Ww]eights[ _]only|safe_globals", text):
        return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a pickled Python object ({found.group(1)}) besides tensors, which memlib never "
                "unpickles (unpickling can run code)")
    detail = " ".join(line.strip() for line in text.splitlines() if line.strip() and not _UNSAFE_ADVICE.search(line))
    return f"not a torch file of tensors only ({detail.removeprefix('WeightsUnpickler error:').strip() or 'refused'})"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` state dict from ``.safetensors`` or ``.pth``/``.bin``/``.pt``.

    Raises :class:`CheckpointError` naming the file for a missing, truncated, corrupt or
    unsafe file, a folder, or a file that does not hold a flat mapping of tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; expected a .safetensors, .pth, .pt or .bin file "
                              "(for a downloaded model folder, name the weights file inside it)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path), device="cpu")
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except Exception as err:  # the underlying libraries raise many types; name the file once
        failure = _read_failure(err)
        unsafe_advice = _UNSAFE_ADVICE.search(str(err)) is not None  # not even in a --traceback
        raise CheckpointError(
            f"cannot read checkpoint {path}: {failure} (expected a .safetensors file or a torch file of tensors only)"
        ) from (None if unsafe_advice else err)
    if isinstance(state_dict, dict) and "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a flat mapping of names to tensors")
    return state_dict


def dtype_kind(dtype: torch.dtype) -> str:
    """'bool', 'integer', 'float' or 'complex': tensors of one kind never load into another."""
    if dtype == torch.bool:
        return "bool"
    if dtype.is_floating_point:
        return "float"
    return "complex" if dtype.is_complex else "integer"


def _first(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return f"{len(names)} ({shown}{', ...' if len(names) > n else ''})"


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, config: object) -> None:
    """Copy ``state_dict`` into ``module`` requiring identical names and shapes.

    On any mismatch raises one :class:`CheckpointError` listing the missing, unexpected and
    wrong-shaped keys (the first few of each, with counts) and the config that was tried.
    Tensors are cast to the dtype of the module's own tensor when both are of one
    :func:`dtype_kind` (fp16 files load into fp32 models, int32 into int64); integer tensors into a
    float model, float into integer or bool, are refused naming the keys.
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
    wrong_kind = [f"{k} {state_dict[k].dtype} vs model {expected[k].dtype}"
                  for k in expected if dtype_kind(state_dict[k].dtype) != dtype_kind(expected[k].dtype)]
    if wrong_kind:
        raise CheckpointError(
            f"checkpoint {source} holds tensors of another kind than the model built from config {config} "
            f"(integer, float and bool values do not convert into each other): {_first(wrong_kind)}"
        )
    cast = {k: v.to(dtype=expected[k].dtype) for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True, assign=any(t.is_meta for t in expected.values()))
