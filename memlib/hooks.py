"""Capture module outputs by dotted name, only inside a ``with`` block.

Hooks are GLOBAL state of a module: a hook that outlives its purpose silently changes every
later forward pass. So hooks here exist only inside :func:`capture`, every name is resolved
before any hook is registered (a typo registers nothing), and every hook is removed in
``finally`` (also after an exception).

The reduction runs inside the hook, so a full (B, T, U) activation tensor is never stored:
for UnitMem, ``reduce`` turns fc1's output into per-image means over a few token positions.

Example::

    with capture(model, ["blocks.0.ffn.fc1"], lambda name, out: out.abs().mean(1)) as store:
        model(x)
    store["blocks.0.ffn.fc1"]  # list with one (B, U) tensor per forward call
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

Reduce = Callable[[str, torch.Tensor], Any]


def resolve_modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Map each dotted name to its submodule, raising ``KeyError`` listing every unknown name
    (with a few valid names as a hint) before anything is touched."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        hint = ", ".join(n for n in list(modules)[:8] if n)
        raise KeyError(f"unknown module name(s) {unknown}; the model has e.g. {hint}, ...")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate module names in {list(names)}")
    return {name: modules[name] for name in names}


@contextmanager
def capture(model: nn.Module, names: Sequence[str], reduce: Reduce) -> Iterator[dict[str, list]]:
    """Within the block, every forward call of each named module appends
    ``reduce(name, output)`` to ``store[name]``.

    ``reduce`` receives the module's output tensor (detached use is up to it) and should return
    something small. On exit all hooks are removed, whatever happened inside the block.
    """
    modules = resolve_modules(model, names)
    store: dict[str, list] = {name: [] for name in names}
    handles = []
    try:
        for name, module in modules.items():

            def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor, name: str = name) -> None:
                store[name].append(reduce(name, output))

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()
