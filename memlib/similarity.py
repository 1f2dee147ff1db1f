"""Copy-detection similarity of two images: the attack's stage D (spec/method.md, section 4).

Two back-ends behind one small interface, both taking images in [0, 1] of shape (B, 3, H, W):

- :class:`SSCDSimilarity`, the paper's measure: cosine similarity of SSCD descriptors
  (``sscd_disc_mixup`` TorchScript file supplied by the user; threshold 0.75).
- :class:`PixelSimilarity`, the testbed's measure: ``1 - mean |a - b|`` over grayscale pixels.
  It is NOT SSCD; testbed numbers made with it are labelled as pixel-space numbers.

``sim(a, b)`` compares image ``i`` of ``a`` with image ``i`` of ``b`` -> (B,);
``sim.pairwise(a, b)`` compares every image of ``a`` with every image of ``b`` -> (Na, Nb).

:func:`source_and_nearest_other` measures a set of generations against their own sources and
against the nearest other training image; :func:`calibrate_threshold` turns those two samples
into a documented decision threshold.
"""

from __future__ import annotations

import abc
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name}: expected images of shape (B, 3, H, W) in [0, 1], got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor in [0, 1], got dtype {images.dtype}")


class Similarity(abc.ABC):
    """Image-pair similarity; larger means more alike, identical images give the maximum 1."""

    name: str

    def __call__(self, images_a_B3HW: torch.Tensor, images_b_B3HW: torch.Tensor) -> torch.Tensor:
        """Similarity of ``a[i]`` and ``b[i]`` for every i -> float32 (B,) on the CPU."""
        _check_images(images_a_B3HW, "images_a_B3HW")
        _check_images(images_b_B3HW, "images_b_B3HW")
        if images_a_B3HW.shape != images_b_B3HW.shape:
            raise ValueError(
                f"images_a_B3HW {tuple(images_a_B3HW.shape)} and images_b_B3HW {tuple(images_b_B3HW.shape)} "
                "must have the same shape"
            )
        with torch.no_grad():
            return self._paired(images_a_B3HW, images_b_B3HW).float().cpu()

    def pairwise(self, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Similarity of every ``a[i]`` with every ``b[j]`` -> float32 (Na, Nb) on the CPU."""
        _check_images(images_a, "images_a")
        _check_images(images_b, "images_b")
        with torch.no_grad():
            rows = [self._pairwise(images_a[i : i + batch_size], images_b).float().cpu()
                    for i in range(0, len(images_a), batch_size)]
        return torch.cat(rows) if rows else torch.zeros(0, len(images_b))

    @abc.abstractmethod
    def _paired(self, a_B3HW: torch.Tensor, b_B3HW: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _pairwise(self, a_A3HW: torch.Tensor, b_B3HW: torch.Tensor) -> torch.Tensor: ...


class PixelSimilarity(Similarity):
    """The testbed's copy measure: ``1 - mean |gray(a) - gray(b)|`` with pixels in [0, 1].

    ``gray`` is the mean of the three channels (the testbed images are gray copied to RGB).
    The value lies in [0, 1] and is exactly 1 for identical images.

    Why this measure: on the testbed's Fashion-MNIST images, a copy decoded from tokens
    differs from its source in a few token patches. Simulating that (5-30% of the 4x4 patches
    replaced by another image's), the mean absolute difference separated "the source" from "the
    nearest other training image" better than the correlation of mean-centred pixels or an RMSE
    measure (balanced accuracy 0.97 / 0.93 / 0.85 at 5 / 10 / 20% corrupted patches, against
    0.82 / 0.74 / 0.66 for correlation): the L1 distance is less swayed by a few badly wrong
    patches. Blank backgrounds make every pair look alike to some degree, so useful
    thresholds are high (about 0.95); calibrate with :func:`calibrate_threshold`.
    """

    name = "pixel (1 - mean abs. difference, gray)"

    @staticmethod
    def _gray_flat(images_B3HW: torch.Tensor) -> torch.Tensor:
        return images_B3HW.double().mean(dim=1).flatten(1)  # (B, H*W)

    def _paired(self, a_B3HW, b_B3HW):
        a_BP, b_BP = self._gray_flat(a_B3HW), self._gray_flat(b_B3HW.to(a_B3HW.device))
        return 1.0 - (a_BP - b_BP).abs().mean(dim=1)

    def _pairwise(self, a_A3HW, b_B3HW):
        a_AP, b_BP = self._gray_flat(a_A3HW), self._gray_flat(b_B3HW.to(a_A3HW.device))
        if a_AP.shape[1] != b_BP.shape[1]:
            raise ValueError(f"image sizes differ: {tuple(a_A3HW.shape[2:])} vs {tuple(b_B3HW.shape[2:])}")
        return 1.0 - torch.cdist(a_AP, b_BP, p=1) / a_AP.shape[1]


class SSCDSimilarity(Similarity):
    """Cosine similarity of SSCD copy-detection descriptors (Pizzi et al. 2022).

    ``path`` is a TorchScript file, e.g. ``sscd_disc_mixup.torchscript.pt`` from the SSCD
    repository (facebookresearch/sscd-copy-detection). **A TorchScript file is code**: loading
    it runs whatever it contains, so only load files from a source you trust.

    Protocol (the attack paper's): images in [0, 1] resized to 320 x 320 (bilinear, antialias),
    normalised with the ImageNet mean/std, descriptor L2-normalised, cosine similarity. The
    model's output must be finite and of shape (B, ``descriptor_dim``) (512 for
    ``sscd_disc_mixup``), else ``ValueError`` naming the file.
    """

    name = "SSCD cosine"

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu",
                 descriptor_dim: int = 512, input_size: int = 320):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"SSCD TorchScript file not found: {self.path} (expected e.g. sscd_disc_mixup.torchscript.pt)"
            )
        self.device = torch.device(device)
        self.descriptor_dim = descriptor_dim
        self.input_size = input_size
        try:
            with warnings.catch_warnings():  # SSCD ships only as TorchScript, whose loader torch marks deprecated
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
                self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except RuntimeError as err:
            raise ValueError(f"cannot load {self.path} as a TorchScript module: {err}") from err
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def descriptors(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        """L2-normalised descriptors (B, D) on the model's device."""
        x = images_B3HW.to(self.device, torch.float32)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        out = self.model((x - self._mean) / self._std)
        expected = (x.shape[0], self.descriptor_dim)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"SSCD model {self.path} returned {got}; expected descriptors of shape {expected}")
        if not torch.isfinite(out).all():
            raise ValueError(f"SSCD model {self.path} returned non-finite descriptors")
        return F.normalize(out.float(), dim=1)

    def _paired(self, a_B3HW, b_B3HW):
        return (self.descriptors(a_B3HW) * self.descriptors(b_B3HW)).sum(dim=1)

    def _pairwise(self, a_A3HW, b_B3HW):
        return self.descriptors(a_A3HW) @ self.descriptors(b_B3HW).T

    def pairwise(self, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """As :meth:`Similarity.pairwise`, computing every descriptor once."""
        _check_images(images_a, "images_a")
        _check_images(images_b, "images_b")
        with torch.no_grad():
            desc_a, desc_b = (torch.cat([self.descriptors(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
                              for x in (images_a, images_b))
            return (desc_a @ desc_b.T).float().cpu()


def source_and_nearest_other(similarity: Similarity, generated_C3HW: torch.Tensor, source_ids_C: torch.Tensor,
                             training_images_N3HW: torch.Tensor, batch_size: int = 256
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two samples :func:`calibrate_threshold` needs: for each generation ``c``, its
    similarity to its own source ``training_images[source_ids[c]]`` and to the most similar
    OTHER training image -> (sims_to_source (C,), sims_to_nearest_other (C,), nearest_other_ids (C,))."""
    source_ids_C = torch.as_tensor(source_ids_C, dtype=torch.long)
    if source_ids_C.shape != (len(generated_C3HW),):
        raise ValueError(f"source_ids: expected shape ({len(generated_C3HW)},), got {tuple(source_ids_C.shape)}")
    sims_CN = similarity.pairwise(generated_C3HW, training_images_N3HW, batch_size=batch_size)
    rows = torch.arange(len(source_ids_C))
    to_source = sims_CN[rows, source_ids_C].clone()
    sims_CN[rows, source_ids_C] = -float("inf")
    to_other, other_ids = sims_CN.max(dim=1)
    return to_source, to_other, other_ids


def make_similarity(name: str, **kwargs) -> Similarity:
    """``"sscd"`` -> :class:`SSCDSimilarity` (``path``, ``device``, ...); ``"pixel"`` ->
    :class:`PixelSimilarity` (no arguments)."""
    factories = {"sscd": SSCDSimilarity, "pixel": PixelSimilarity}
    if name not in factories:
        raise ValueError(f"unknown similarity {name!r}; expected one of {sorted(factories)}")
    return factories[name](**kwargs)


@dataclass(frozen=True)
class CalibratedThreshold:
    """A decision threshold (extracted when similarity > threshold) and the numbers behind it."""

    threshold: float
    rule: str  # "balanced_accuracy" or "max_fpr"
    true_positive_rate: float  # fraction of source similarities above the threshold
    false_positive_rate: float  # fraction of nearest-other similarities above the threshold
    balanced_accuracy: float
    n_source: int
    n_other: int
    max_fpr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_threshold(sims_to_source: torch.Tensor, sims_to_nearest_other: torch.Tensor, *,
                        rule: str = "balanced_accuracy", max_fpr: float = 0.01) -> CalibratedThreshold:
    """Choose the threshold separating "a generation vs its own source" (positives) from "the
    same generation vs the nearest other training image" (negatives).

    Candidate thresholds are the midpoints between consecutive distinct observed values (and
    one below the smallest / above the largest value). Rules:

    - ``"balanced_accuracy"`` (default): the candidate maximising (TPR + 1 - FPR) / 2; ties go
      to the smallest such threshold.
    - ``"max_fpr"``: the smallest candidate whose false-positive rate is at most ``max_fpr``.
    """
    pos = torch.as_tensor(sims_to_source, dtype=torch.float64).flatten()
    neg = torch.as_tensor(sims_to_nearest_other, dtype=torch.float64).flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(f"need at least one value in each sample, got {pos.numel()} source and {neg.numel()} other")
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise ValueError("similarities must be finite")
    values = torch.cat([pos, neg]).unique()  # sorted
    candidates = torch.cat([values[:1] - 1.0, (values[1:] + values[:-1]) / 2, values[-1:] + 1.0])
    tpr = (pos[None, :] > candidates[:, None]).double().mean(dim=1)
    fpr = (neg[None, :] > candidates[:, None]).double().mean(dim=1)
    balanced = (tpr + 1.0 - fpr) / 2
    if rule == "balanced_accuracy":
        best = int(torch.argmax(balanced))  # first maximum = smallest threshold
    elif rule == "max_fpr":
        if not 0.0 <= max_fpr <= 1.0:
            raise ValueError(f"max_fpr: expected a rate in [0, 1], got {max_fpr!r}")
        best = int(torch.nonzero(fpr <= max_fpr)[0])
    else:
        raise ValueError(f"rule: expected 'balanced_accuracy' or 'max_fpr', got {rule!r}")
    return CalibratedThreshold(
        threshold=float(candidates[best]), rule=rule,
        true_positive_rate=float(tpr[best]), false_positive_rate=float(fpr[best]),
        balanced_accuracy=float(balanced[best]), n_source=pos.numel(), n_other=neg.numel(),
        max_fpr=max_fpr if rule == "max_fpr" else None,
    )
