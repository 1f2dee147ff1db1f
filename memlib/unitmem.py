r"""UnitMem (Wang et al. 2024, Eq. 7) as a streaming accumulator, plus a dense reference.

For a unit u and training images x_1 .. x_N, let mu_u(x_i) be the unit's mean activation on
image i (over the chosen token positions and the augmented views). Then

.. math::

    \mathrm{UnitMem}(u) = \frac{\mu_{max} - \mu_{rest}}{\mu_{max} + \mu_{rest} + \epsilon},
    \qquad \mu_{max} = \max_i \mu_u(x_i),

and mu_rest is the mean (default) or the median of the other N - 1 values. With non-negative
activations (|GELU(fc1)|, the default reading) the score lies in [0, 1]: 0 when every image
drives the unit equally, 1 when exactly one image does.

The mean version streams: per unit keep the running sum, max and argmax of mu over images in
float64, then mu_rest = (sum - max) / (N - 1). Memory is O(units), independent of N, and two
accumulators over disjoint image shards merge exactly (max and argmax exactly; sums up to
float64 rounding). Ties for the max go to the smallest image id, so the result does not
depend on image order, batch size or sharding.

Shapes: ``S`` is the accumulator's unit shape, e.g. (G, K, U) = (position groups, blocks,
units per block); ``N`` is images in a batch.
"""

from __future__ import annotations

import math

import torch

_ID_NONE = -1


class UnitMemAccumulator:
    """Running sum, max and argmax of per-image means, for every unit of shape ``shape``."""

    def __init__(self, shape: tuple[int, ...] | torch.Size, eps: float = 1e-12):
        self.shape = tuple(int(s) for s in shape)
        self.eps = float(eps)
        self.n = 0
        self.sum = torch.zeros(self.shape, dtype=torch.float64)
        self.max = torch.full(self.shape, -math.inf, dtype=torch.float64)
        self.argmax = torch.full(self.shape, _ID_NONE, dtype=torch.int64)

    def add(self, mu_NS: torch.Tensor, image_ids_N: torch.Tensor) -> None:
        """Add the per-image means of a batch; ``image_ids_N`` must be unique over all images
        ever added to this accumulator and to any accumulator it is merged with."""
        if tuple(mu_NS.shape[1:]) != self.shape:
            raise ValueError(f"per-image means have unit shape {tuple(mu_NS.shape[1:])}, expected {self.shape}")
        image_ids_N = torch.as_tensor(image_ids_N, dtype=torch.int64).reshape(-1).cpu()
        if image_ids_N.numel() != mu_NS.shape[0]:
            raise ValueError(f"{image_ids_N.numel()} image ids for {mu_NS.shape[0]} images")
        if mu_NS.shape[0] == 0:
            return
        mu_NS = mu_NS.detach().to(device="cpu", dtype=torch.float64)
        batch_sum = mu_NS.sum(dim=0)
        if not torch.isfinite(batch_sum).all():  # a NaN or inf in any image makes its unit's sum one
            raise ValueError("per-image means contain NaN or inf")
        if bool((image_ids_N[1:] < image_ids_N[:-1]).any()):  # so that argmax's first maximum is the smallest id
            order = torch.argsort(image_ids_N)
            mu_NS, image_ids_N = mu_NS[order], image_ids_N[order]
        batch_max, batch_pos = mu_NS.max(dim=0)  # first occurrence on ties
        self.sum += batch_sum
        self.n += mu_NS.shape[0]
        self._combine(batch_max, image_ids_N[batch_pos])

    def _combine(self, other_max: torch.Tensor, other_argmax: torch.Tensor) -> None:
        wins = (other_max > self.max) | ((other_max == self.max) & (other_argmax < self.argmax))
        self.max = torch.where(wins, other_max, self.max)
        self.argmax = torch.where(wins, other_argmax, self.argmax)

    def merge(self, other: "UnitMemAccumulator") -> "UnitMemAccumulator":
        """Fold ``other`` (built on a disjoint image shard) into this accumulator; returns self."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge accumulators of unit shapes {self.shape} and {other.shape}")
        self.sum += other.sum
        self.n += other.n
        self._combine(other.max, other.argmax)
        return self

    def mu_rest(self) -> torch.Tensor:
        """Mean of mu over the N - 1 images other than the argmax image."""
        if self.n < 2:
            raise ValueError(f"UnitMem needs at least 2 images, got N = {self.n}")
        return (self.sum - self.max) / (self.n - 1)

    def scores(self) -> torch.Tensor:
        """UnitMem per unit (float64, shape ``shape``)."""
        return unitmem_from_max_rest(self.max, self.mu_rest(), self.eps)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "n": torch.tensor(self.n, dtype=torch.int64),
            "eps": torch.tensor(self.eps, dtype=torch.float64),
            "sum": self.sum.clone(),
            "max": self.max.clone(),
            "argmax": self.argmax.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = {"n", "eps", "sum", "max", "argmax"} - set(state)
        if missing:
            raise KeyError(f"UnitMem state lacks {sorted(missing)}")
        for key in ("sum", "max", "argmax"):
            if tuple(state[key].shape) != self.shape:
                raise ValueError(f"UnitMem state {key!r} has shape {tuple(state[key].shape)}, expected {self.shape}")
        self.n = int(state["n"])
        self.eps = float(state["eps"])
        self.sum = state["sum"].to(torch.float64).clone()
        self.max = state["max"].to(torch.float64).clone()
        self.argmax = state["argmax"].to(torch.int64).clone()

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "UnitMemAccumulator":
        acc = cls(tuple(state["sum"].shape))
        acc.load_state_dict(state)
        return acc


def unitmem_from_max_rest(mu_max: torch.Tensor, mu_rest: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(mu_max - mu_rest) / (mu_max + mu_rest + eps)."""
    return (mu_max - mu_rest) / (mu_max + mu_rest + eps)


def unitmem_dense(mu_NU: torch.Tensor, rest: str = "mean", eps: float = 1e-12) -> torch.Tensor:
    """Reference UnitMem from all per-image means ``mu_NU`` (N images by any unit shape).

    ``rest="mean"``: mean of the other N - 1 values (Eq. 7, what the accumulator streams);
    ``rest="median"``: their median, averaging the two middle values when N - 1 is even (the
    SSL code's choice; needs every per-image value, so only for small N). The argmax image is
    the smallest index among ties, as in the accumulator.
    """
    if rest not in ("mean", "median"):
        raise ValueError(f"rest must be 'mean' or 'median', got {rest!r}")
    n = mu_NU.shape[0]
    if n < 2:
        raise ValueError(f"UnitMem needs at least 2 images, got N = {n}")
    mu_NU = mu_NU.to(torch.float64)
    mu_max, argmax = mu_NU.max(dim=0)
    others = torch.ones_like(mu_NU, dtype=torch.bool).scatter_(0, argmax.unsqueeze(0), False)
    mu_others = mu_NU.movedim(0, -1)[others.movedim(0, -1)].reshape(*mu_NU.shape[1:], n - 1)
    if rest == "mean":
        mu_rest = mu_others.mean(dim=-1)
    else:
        mu_rest = mu_others.quantile(0.5, dim=-1)
    return unitmem_from_max_rest(mu_max, mu_rest, eps)
