"""UnitMem of every fc1 unit over a set of training images, for any :class:`Generator`
(spec/method.md, section 2).

For each image x_i: A views (the family's training augmentation; the testbed's is the image
itself), each tokenized and run teacher-forced (eval, no label dropout, no grad) with a hook on
every block's fc1 activation: the output of the GELU after fc1 ("post", the default) or of
fc1 itself ("pre"). Inside the hook, that output (B, T, U) becomes per-group means of its
absolute value over each position group's positions, so only (B, G, U) per block leaves the
hook. Averaged over the A views this is mu(x_i) with shape
(G, K, U), streamed into one :class:`UnitMemAccumulator` whose image ids are dataset indices.

Shapes: N images, A views per image, R = rows of one forward batch (images x views),
G position groups (VAR: one per scale; RAR: "all", "last" and "predicts-last"), K blocks, U fc1
units per block.

Selection score, one number per unit (K, U) for the intervention (:meth:`UnitMemResult.selection_scores`):

- VAR: ``"mean"`` (default) mean over scales of the per-scale UnitMem; ``"mean-from-s1"`` the
  same without scale 0 (whose input is the class label alone, so its score is class
  selectivity); ``"max"`` max over scales; ``"pooled"`` UnitMem of the activation pooled over
  all positions (collect with ``pooled=True``, which adds a group ``"all"``).
- RAR: ``"predicts-last"`` (default) the position T-2 whose output predicts the last image
  token; ``"last"`` the last input position T-1 (its output predicts nothing: the model never
  uses what it computes there); ``"all"`` the mean over all positions.

The same aggregations of the units' mean activation (``statistic="magnitude"``) give the
magnitude baseline of the intervention: large units, whatever their selectivity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .hooks import capture
from .models.generator import Generator, PositionGroup, check_finite_logits, eval_mode
from .unitmem import UnitMemAccumulator

ACTIVATIONS = ("post", "pre")
SELECTIONS = {"var": ("mean", "mean-from-s1", "max", "pooled"), "rar": ("predicts-last", "last", "all")}
DEFAULT_SELECTION = {"var": "mean", "rar": "predicts-last"}
STATISTICS = ("unitmem", "magnitude")
POOLED_GROUP = "all"

ViewFn = Callable[[Any, int, torch.Generator], torch.Tensor]
"""``views(image, n_views, generator) -> (n_views, 3, H, W)`` float in [0, 1]: one image's
augmented views (:func:`memlib.data.testbed_views`, :func:`memlib.data.family_views`)."""


def view_generator(seed: int, image_id: int) -> torch.Generator:
    """The random stream of one image's views: fixed by (seed, image id), so views do not
    depend on batch size, order or sharding."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(image_id))


# ---------------------------------------------------------------------------------------------
# Per-image means
# ---------------------------------------------------------------------------------------------


def collection_groups(gen: Generator, pooled: bool = False) -> list[PositionGroup]:
    """The generator's position groups, plus ``"all"`` (every position the groups cover) when
    ``pooled`` and the family has none."""
    groups = list(gen.position_groups())
    if pooled and POOLED_GROUP not in [g.name for g in groups]:
        groups.append(PositionGroup(POOLED_GROUP, min(g.start for g in groups), max(g.stop for g in groups)))
    return groups


def hooked_names(gen: Generator, activation: str) -> list[str]:
    """The modules whose output is the studied activation of every block, in depth order:
    the GELU after fc1 for ``"post"``, fc1 for ``"pre"``."""
    if activation == "post":
        return gen.fc1_activation_names()
    if activation == "pre":
        return gen.fc1_names()
    raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")


CPU_CHUNK_BYTES = 4 << 20
"""On CPU the hook reduces a few rows at a time, so each chunk's absolute values stay in cache
between being written and being averaged (measured on the testbed VAR, two cores: the hooks'
added time fell from about 10% of the bare forward to 6-8%)."""


def group_means_reducer(groups: Sequence[PositionGroup]):
    """The hook's reduction: activations (R, T, U) -> per-group means of |activation| (R, G, U)
    float32 (computed in float32 also under bf16 autocast).

    All group means come from one matrix product with a (G, T) averaging matrix, one pass over
    the activations instead of one per group. The absolute values go into a float32 buffer
    reused from call to call (the activation itself flows on into fc2 and must stay
    unchanged). On CPU the rows go through in chunks of about :data:`CPU_CHUNK_BYTES`; on an
    accelerator in one piece (fewer kernel launches)."""
    averaging_GT: dict[tuple[int, torch.device], torch.Tensor] = {}
    abs_buffer: list[torch.Tensor] = []  # at most one float32 tensor, kept while chunks fit in it

    def averaging_matrix(num_positions: int, device: torch.device) -> torch.Tensor:
        key = (num_positions, device)
        if key not in averaging_GT:
            weights_GT = torch.zeros(len(groups), num_positions, device=device)
            for g, group in enumerate(groups):
                weights_GT[g, group.start : group.stop] = 1.0 / group.size
            averaging_GT[key] = weights_GT
        return averaging_GT[key]

    def buffer_like(chunk_rTU: torch.Tensor) -> torch.Tensor:
        """A float32 tensor of the chunk's shape: a view of the kept buffer when it fits."""
        rows, T, U = chunk_rTU.shape
        held = abs_buffer[0] if abs_buffer else None
        if held is None or held.shape[1:] != (T, U) or held.shape[0] < rows or held.device != chunk_rTU.device:
            abs_buffer[:] = [torch.empty(rows, T, U, device=chunk_rTU.device)]
        return abs_buffer[0][:rows]

    def reduce(name: str, out_RTU: torch.Tensor) -> torch.Tensor:
        out_RTU = out_RTU.detach()
        R, T, U = out_RTU.shape
        rows = max(1, CPU_CHUNK_BYTES // (T * U * 4)) if out_RTU.device.type == "cpu" else R
        weights_GT = averaging_matrix(T, out_RTU.device)
        means_RGU = torch.empty(R, len(groups), U, device=out_RTU.device)
        with torch.autocast(out_RTU.device.type, enabled=False):  # the hook runs inside the forward's autocast
            for start in range(0, R, rows):
                chunk_rTU = out_RTU[start : start + rows]
                abs_rTU = buffer_like(chunk_rTU).copy_(chunk_rTU).abs_()  # copy_ also casts bf16 to float32
                torch.matmul(weights_GT, abs_rTU, out=means_RGU[start : start + rows])
        if not torch.isfinite(means_RGU).all():
            raise ValueError(f"non-finite fc1 activations (NaN or inf) in block {name}")
        return means_RGU

    return reduce


def view_means(
    gen: Generator,
    views_R3HW: torch.Tensor,
    labels_R: torch.Tensor,
    groups: Sequence[PositionGroup],
    activation: str = "post",
    batch_size: int = 64,
    amp: bool = False,
) -> torch.Tensor:
    """Per-view group means for every block -> (R, G, K, U) float32 on the generator's device.

    Tokenization runs in float32; only the teacher-forced forward runs under bf16 autocast
    when ``amp``. The transformer is put in eval mode and its previous mode restored after.
    """
    names = hooked_names(gen, activation)
    device = gen.device
    reduce = group_means_reducer(groups)
    with eval_mode(gen.transformer, gen.tokenizer), torch.no_grad(), capture(gen.transformer, names, reduce) as store:
        n_calls = 0
        for start in range(0, views_R3HW.shape[0], batch_size):
            views = views_R3HW[start : start + batch_size].to(device)
            labels = labels_R[start : start + batch_size].to(device)
            tokens_BL = gen.images_to_tokens(views)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits_BLV = gen.teacher_forced_logits(tokens_BL, labels)
            check_finite_logits(gen, logits_BLV, f"views {start}..{start + len(views) - 1}")
            n_calls += 1
    for name in names:
        if len(store[name]) != n_calls:
            raise RuntimeError(f"{name} ran {len(store[name])} times in {n_calls} forward passes; expected once each")
    return torch.stack([torch.cat(store[name]) for name in names], dim=2)


def image_means(
    gen: Generator,
    dataset: Sequence,
    image_ids: Sequence[int],
    groups: Sequence[PositionGroup],
    *,
    n_views: int,
    views: ViewFn,
    activation: str,
    batch_size: int,
    seed: int,
    amp: bool,
) -> torch.Tensor:
    """mu for the given dataset indices: the mean over A views -> (N, G, K, U) float64 (CPU).
    ``dataset[i]`` is ``(image, label)``; ``views`` turns the image into its ``n_views`` views."""
    view_list, labels = [], []
    for image_id in image_ids:
        image, label = dataset[int(image_id)]
        generator = view_generator(seed, int(image_id))
        view_list.append(views(image, n_views, generator))
        labels.extend([int(label)] * n_views)
    means_RGKU = view_means(
        gen, torch.cat(view_list), torch.tensor(labels), groups, activation, batch_size, amp
    )
    return means_RGKU.reshape(len(image_ids), n_views, *means_RGKU.shape[1:]).double().mean(dim=1).cpu()


# ---------------------------------------------------------------------------------------------
# The accumulator over a dataset, and its result
# ---------------------------------------------------------------------------------------------


def accumulate_unitmem(
    gen: Generator,
    dataset: Sequence,
    image_ids: Sequence[int],
    *,
    n_views: int,
    views: ViewFn,
    activation: str = "post",
    pooled: bool = False,
    batch_size: int = 64,
    seed: int = 0,
    amp: bool | None = None,
) -> UnitMemAccumulator:
    """Stream mu of the images ``dataset[i]`` for ``i`` in ``image_ids`` into one accumulator of
    unit shape (G, K, U). ``amp=None``: bf16 autocast exactly when the generator is on CUDA.
    ``batch_size`` counts forward rows (images x views); a batch holds whole images."""
    if n_views < 1:
        raise ValueError(f"n_views: expected an integer >= 1, got {n_views!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    amp = gen.device.type == "cuda" if amp is None else amp
    groups = collection_groups(gen, pooled)
    names = gen.fc1_names()
    units = fc1_width(gen)
    acc = UnitMemAccumulator((len(groups), len(names), units))
    images_per_batch = max(1, batch_size // n_views)
    image_ids = [int(i) for i in image_ids]
    for start in range(0, len(image_ids), images_per_batch):
        ids = image_ids[start : start + images_per_batch]
        mu_NGKU = image_means(
            gen, dataset, ids, groups,
            n_views=n_views, views=views, activation=activation, batch_size=batch_size, seed=seed, amp=amp,
        )
        acc.add(mu_NGKU, torch.tensor(ids))
    return acc


def fc1_width(gen: Generator) -> int:
    """U, the number of fc1 units per block (the same in every block, or a clear error)."""
    modules = dict(gen.transformer.named_modules())
    widths = {modules[name].out_features for name in gen.fc1_names()}
    if len(widths) != 1:
        raise ValueError(f"fc1 layers differ in width {sorted(widths)}; UnitMem needs one (K, U) grid")
    return widths.pop()


@dataclass
class UnitMemResult:
    """UnitMem of every (group, block, unit), held as the accumulator state (exactly mergeable).

    ``scores_GKU`` (float64) and ``argmax_GKU`` (dataset index of the image with the largest
    mu) are read out of ``state``; ``group_names[g]`` and ``fc1_names[k]`` label the axes.
    """

    state: dict[str, torch.Tensor]
    group_names: list[str]
    fc1_names: list[str]
    family: str
    params: dict = field(default_factory=dict)

    @property
    def accumulator(self) -> UnitMemAccumulator:
        return UnitMemAccumulator.from_state_dict(self.state)

    @property
    def n_images(self) -> int:
        return int(self.state["n"])

    @property
    def scores_GKU(self) -> torch.Tensor:
        return self.accumulator.scores()

    @property
    def argmax_GKU(self) -> torch.Tensor:
        return self.state["argmax"].clone()

    def group(self, name: str) -> torch.Tensor:
        """UnitMem (K, U) of one position group."""
        if name not in self.group_names:
            raise ValueError(f"position group {name!r} not collected; have {self.group_names}")
        return self.scores_GKU[self.group_names.index(name)]

    @property
    def mean_activation_GKU(self) -> torch.Tensor:
        """Mean over images of mu (float64): how strongly each unit fires on average."""
        return self.state["sum"] / max(1, self.n_images)

    def selection_scores(self, how: str | None = None, statistic: str = "unitmem") -> torch.Tensor:
        """One score per unit (K, U) for ranking (module docstring); ``None`` = the family default.
        ``statistic``: ``"unitmem"`` or ``"magnitude"`` (the mean activation, aggregated alike)."""
        how = DEFAULT_SELECTION[self.family] if how is None else how
        if how not in SELECTIONS[self.family]:
            raise ValueError(f"selection for {self.family}: expected one of {SELECTIONS[self.family]}, got {how!r}")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic: expected one of {STATISTICS}, got {statistic!r}")
        values_GKU = self.scores_GKU if statistic == "unitmem" else self.mean_activation_GKU
        if how in ("mean", "mean-from-s1", "max"):
            scales = [i for i, name in enumerate(self.group_names) if name != POOLED_GROUP]
            per_scale_SKU = values_GKU[scales[1:] if how == "mean-from-s1" else scales]
            return per_scale_SKU.max(dim=0).values if how == "max" else per_scale_SKU.mean(dim=0)
        if how == "pooled":
            if POOLED_GROUP not in self.group_names:
                raise ValueError("selection 'pooled' needs UnitMem collected with pooled=True (group 'all')")
        name = POOLED_GROUP if how == "pooled" else how
        if name not in self.group_names:
            raise ValueError(f"position group {name!r} not collected; have {self.group_names}")
        return values_GKU[self.group_names.index(name)]

    # ---- storage (memlib.results) -----------------------------------------------------------
    def to_record(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata) for :func:`memlib.results.save_result`."""
        tensors = {f"state.{key}": value for key, value in self.state.items()}
        if self.n_images >= 2:
            tensors["scores_GKU"] = self.scores_GKU
        meta = {
            "kind": "unitmem",
            "group_names": self.group_names,
            "fc1_names": self.fc1_names,
            "family": self.family,
            "n_images": self.n_images,
            "unitmem_params": self.params,
        }
        return tensors, meta

    @classmethod
    def from_record(cls, tensors: dict[str, torch.Tensor], meta: dict) -> "UnitMemResult":
        if meta.get("kind") != "unitmem":
            raise ValueError(f"not a UnitMem result record (kind {meta.get('kind')!r})")
        state = {key.removeprefix("state."): value for key, value in tensors.items() if key.startswith("state.")}
        return cls(state, list(meta["group_names"]), list(meta["fc1_names"]), meta["family"], dict(meta["unitmem_params"]))
