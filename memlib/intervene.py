"""Choose fc1 units and scale their incoming weights (the paper's mitigation), restorably.

A unit is one output row of one block's fc1 (VAR ``blocks.{i}.ffn.fc1``, RAR
``blocks.{i}.mlp.fc1``). Units are addressed as (block index, unit index) pairs in a
``units_M2`` LongTensor; block i means the i-th name of the generator's ``fc1_names()``.

The paper halves ``fc1.weight[u, :]`` for the top-k% units by UnitMem; the bias and fc2 stay
as they are. Every edit saves the original rows and copies them back on restore (never
divides), so restoring is bit-exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .hooks import resolve_modules

MODES = ("global", "per-block", "random")


def count_for_percent(k_percent: float, total: int) -> int:
    """Number of units in the top ``k_percent`` % of ``total`` (rounded half up)."""
    if not 0 <= k_percent <= 100:
        raise ValueError(f"k_percent must be in [0, 100], got {k_percent}")
    return int(k_percent * total / 100 + 0.5)


def select_units(scores_KU: torch.Tensor, k_percent: float, mode: str = "global", seed: int = 0) -> torch.Tensor:
    """Units to edit, as (M, 2) rows of (block, unit), in rank order.

    - ``global``: the top k% of all K x U units by score (the paper's choice);
    - ``per-block``: the top k% within each block;
    - ``random``: a uniformly random k% of all units (the control), seeded.

    Ties are broken by the lower flat index (block-major), so the choice is deterministic.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if scores_KU.dim() != 2:
        raise ValueError(f"scores must have shape (blocks, units), got {tuple(scores_KU.shape)}")
    if mode != "random" and not torch.isfinite(scores_KU).all():
        raise ValueError("scores contain NaN or inf")
    num_blocks, num_units = scores_KU.shape
    if mode == "global":
        flat = scores_KU.reshape(-1)
        order = torch.sort(flat, descending=True, stable=True).indices
        chosen = order[: count_for_percent(k_percent, flat.numel())]
    elif mode == "per-block":
        m = count_for_percent(k_percent, num_units)
        order_KU = torch.sort(scores_KU, dim=1, descending=True, stable=True).indices[:, :m]
        chosen = (order_KU + num_units * torch.arange(num_blocks).unsqueeze(1)).reshape(-1)
    else:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(num_blocks * num_units, generator=generator)
        chosen = order[: count_for_percent(k_percent, num_blocks * num_units)]
    return torch.stack([chosen // num_units, chosen % num_units], dim=1)


@dataclass
class EditRecord:
    """What :func:`scale_fc1_rows_` changed: enough to describe the edit and to undo it."""

    fc1_names: list[str]
    units_M2: torch.Tensor
    factor: float
    scale_bias: bool
    saved_weight_rows: dict[str, torch.Tensor] = field(repr=False)
    saved_bias_rows: dict[str, torch.Tensor] = field(repr=False)
    _modules: dict[str, nn.Linear] = field(repr=False)

    def restore(self) -> None:
        """Copy the saved original rows back (bit-exact)."""
        with torch.no_grad():
            for name, rows in self._rows_per_block().items():
                module = self._modules[name]
                module.weight[rows] = self.saved_weight_rows[name]
                if self.scale_bias:
                    module.bias[rows] = self.saved_bias_rows[name]

    def _rows_per_block(self) -> dict[str, torch.Tensor]:
        return rows_per_block(self.fc1_names, self.units_M2)

    def summary(self) -> dict:
        per_block = {name: int(rows.numel()) for name, rows in self._rows_per_block().items()}
        return {"factor": self.factor, "scale_bias": self.scale_bias, "units": int(self.units_M2.shape[0]), "per_block": per_block}


def rows_per_block(fc1_names: Sequence[str], units_M2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Group (block, unit) pairs by block name -> sorted unit indices (blocks without units omitted)."""
    out = {}
    for block, name in enumerate(fc1_names):
        rows = units_M2[units_M2[:, 0] == block, 1]
        if rows.numel():
            out[name] = torch.sort(rows).values
    return out


def scale_fc1_rows_(
    model: nn.Module,
    fc1_names: Sequence[str],
    units_M2: torch.Tensor,
    factor: float = 0.5,
    scale_bias: bool = False,
) -> EditRecord:
    """Multiply ``fc1.weight[u, :]`` (and ``fc1.bias[u]`` if ``scale_bias``) by ``factor`` for
    every chosen unit, in place. Returns the record needed to restore the model exactly."""
    fc1_names = list(fc1_names)
    modules = resolve_modules(model, fc1_names)
    units_M2 = torch.as_tensor(units_M2, dtype=torch.int64).reshape(-1, 2).cpu()
    for name, module in modules.items():
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{name} is a {type(module).__name__}, expected nn.Linear")
    if units_M2.numel():
        bad_block = (units_M2[:, 0] < 0) | (units_M2[:, 0] >= len(fc1_names))
        if bad_block.any():
            raise ValueError(f"block index {int(units_M2[bad_block][0, 0])} out of range for {len(fc1_names)} blocks")
    plan = rows_per_block(fc1_names, units_M2)
    for name, rows in plan.items():
        out_features = modules[name].out_features
        if rows.min() < 0 or rows.max() >= out_features:
            raise ValueError(f"unit index out of range [0, {out_features}) in {name}")
        if scale_bias and modules[name].bias is None:
            raise ValueError(f"scale_bias=True but {name} has no bias")
    saved_weight = {name: modules[name].weight[rows].detach().clone() for name, rows in plan.items()}
    saved_bias = {name: modules[name].bias[rows].detach().clone() for name, rows in plan.items() if scale_bias}
    record = EditRecord(fc1_names, units_M2, float(factor), scale_bias, saved_weight, saved_bias, modules)
    with torch.no_grad():
        for name, rows in plan.items():
            module = modules[name]
            module.weight[rows] = saved_weight[name] * factor
            if scale_bias:
                module.bias[rows] = saved_bias[name] * factor
    return record


@contextmanager
def scaled_fc1_rows(
    model: nn.Module,
    fc1_names: Sequence[str],
    units_M2: torch.Tensor,
    factor: float = 0.5,
    scale_bias: bool = False,
) -> Iterator[EditRecord]:
    """:func:`scale_fc1_rows_` for the duration of a ``with`` block; the original rows are
    restored bit-exactly on exit, also after an exception."""
    record = scale_fc1_rows_(model, fc1_names, units_M2, factor, scale_bias)
    try:
        yield record
    finally:
        record.restore()
