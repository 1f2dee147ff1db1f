"""FID with an explicit feature extractor, through clean-fid's helpers (spec/method.md, section 5).

Every score says which features and preprocessing produced it:

- :class:`InceptionFeatures`: clean-fid's Inception-v3 TorchScript (pool3, 2048-d) from a file
  the user supplies; clean-fid's "clean" protocol (images quantised to uint8, resized to
  299 x 299 by PIL bicubic per channel in float). ``metric_name = "FID"``; comparable to the
  paper's numbers only with the paper's reference batch and sample count.
- :class:`TestbedFeatures`: the 128-d penultimate features of the testbed classifier
  (memlib/classifier.py), on uint8-quantised 32 x 32 images without resizing.
  ``metric_name = "testbed FID"``: not comparable to any ImageNet FID.

An extractor follows clean-fid's two plug-in protocols, so clean-fid's own functions accept it:
``extractor.resize`` is a ``custom_fn_resize`` (uint8 H x W x 3 array -> float32 array in
[0, 255]) and ``extractor(batch)`` a ``custom_feat_extractor`` (float (B, 3, h, w) in
[0, 255] -> features (B, D)). Nothing here downloads: clean-fid's download switches are never
used, and a missing weights file is an error naming it.

Statistics stream: features are summed batch by batch in float64 (shifted by the first
batch's mean for accuracy), so 50,000 samples never sit in memory at once.
"""

from __future__ import annotations

import abc
import io
import hashlib
import json
import os
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.linalg
import torch
from cleanfid.fid import get_batch_features, get_folder_features
from cleanfid.resize import build_resizer

from memlib.models.generator import Generator, eval_mode
from memlib.results import atomic_write_bytes, file_sha256

INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's / StyleGAN2-ADA's TorchScript Inception


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance of the Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64:

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    The matrix square root is ``scipy.linalg.sqrtm``. If it is not finite (a singular
    product), ``eps`` is added to both diagonals and it is recomputed; a small imaginary part
    from round-off is dropped, a large one (diagonal imaginary part > 1e-3) raises ValueError.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not fit: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# ---- feature extractors --------------------------------------------------------------------


class FeatureExtractor(abc.ABC):
    """Images -> features, in clean-fid's protocols (see the module docstring)."""

    name: str  # what the features are
    metric_name: str  # the name a score made with these features is reported under
    preprocessing: str  # what happens to an image in [0, 1] before the network
    device: torch.device
    weights_sha256: str  # of the weights file, so a changed file never reuses cached statistics

    @property
    def identity(self) -> str:
        return f"{self.name} [weights sha256 {self.weights_sha256[:16]}]"

    @abc.abstractmethod
    def resize(self, image_HW3: np.ndarray) -> np.ndarray:
        """clean-fid's ``custom_fn_resize``: uint8 (H, W, 3) -> float32 (h, w, 3) in [0, 255]."""

    @abc.abstractmethod
    def __call__(self, batch_B3hw: torch.Tensor) -> torch.Tensor:
        """clean-fid's ``custom_feat_extractor``: float (B, 3, h, w) in [0, 255] -> (B, D)."""


class InceptionFeatures(FeatureExtractor):
    """clean-fid's Inception-v3 (the TorchScript port of the TF 2015-12-05 graph), pool3 2048-d.

    ``folder`` must hold ``inception-2015-12-05.pt`` (clean-fid's/StyleGAN2-ADA's file; get it
    once by hand, it is never downloaded here). TorchScript files are code: load only a file
    from a source you trust.
    """

    name = "clean-fid Inception-v3 pool3 (2048-d)"
    metric_name = "FID"
    preprocessing = "uint8 quantisation; clean-fid 'clean' resize to 299x299 (PIL bicubic per channel, float); (x - 128) / 128"

    def __init__(self, folder: str | os.PathLike, device: str | torch.device = "cpu"):
        from cleanfid.inception_torchscript import InceptionV3W

        path = Path(folder) / INCEPTION_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception weights not found: {path} (clean-fid's {INCEPTION_FILE}; place it in {folder})"
            )
        self.device = torch.device(device)
        self.weights_sha256 = file_sha256(path)
        with warnings.catch_warnings():  # the file is TorchScript, whose loader torch marks deprecated
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
            self.model = InceptionV3W(str(folder), download=False, resize_inside=False).to(self.device).eval()
        self._resize = build_resizer("clean")

    def resize(self, image_HW3):
        return self._resize(image_HW3)

    def __call__(self, batch_B3hw):
        with torch.no_grad():
            return self.model(batch_B3hw.to(self.device))


class TestbedFeatures(FeatureExtractor):
    """Penultimate (128-d) features of the testbed classifier ``path`` (memlib/classifier.py)."""

    __test__ = False  # not a pytest class
    name = "testbed classifier penultimate (128-d)"
    metric_name = "testbed FID"
    preprocessing = "uint8 quantisation; no resize (32x32); x / 255"

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        from memlib.classifier import load_classifier

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"testbed classifier weights not found: {path}")
        self.device = torch.device(device)
        self.weights_sha256 = file_sha256(path)
        self.model = load_classifier(path, self.device)
        self.image_size = self.model.config.image_size

    def resize(self, image_HW3):
        if image_HW3.shape[:2] != (self.image_size, self.image_size):
            raise ValueError(f"testbed features need {self.image_size}x{self.image_size} images, got {image_HW3.shape[:2]}")
        return image_HW3.astype(np.float32)

    def __call__(self, batch_B3hw):
        with torch.no_grad():
            return self.model.features(batch_B3hw.to(self.device, torch.float32) / 255.0)


# ---- statistics ----------------------------------------------------------------------------


@dataclass
class FeatureStats:
    """Mean (D,) and covariance (D, D) of n feature vectors (float64), and whose features."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    extractor: str  # FeatureExtractor.identity

    def save(self, path: str | os.PathLike) -> None:
        """npz (read with ``allow_pickle=False``), written atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, mu=self.mu, sigma=self.sigma, n=np.int64(self.n), extractor=np.str_(self.extractor))
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature statistics file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = {"mu", "sigma", "n", "extractor"} - set(npz.files)
                if missing:
                    raise ValueError(f"keys {sorted(missing)} missing (has {sorted(npz.files)})")
                return cls(mu=npz["mu"].astype(np.float64), sigma=npz["sigma"].astype(np.float64),
                           n=int(npz["n"]), extractor=str(npz["extractor"]))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # also pickled (object) arrays
            raise ValueError(f"{path}: not a feature statistics file ({err})") from err


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        return (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    return images


def clean_fid_batch(images_B3HW: torch.Tensor, extractor: FeatureExtractor) -> torch.Tensor:
    """Images in [0, 1] (float) or uint8 -> what clean-fid feeds its extractor: quantised to
    uint8 (as if saved to PNG), ``extractor.resize`` per image -> float32 (B, 3, h, w) in [0, 255]."""
    if images_B3HW.ndim != 4 or images_B3HW.shape[1] != 3:
        raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images_B3HW.shape)}")
    if images_B3HW.dtype != torch.uint8:
        images_B3HW = (images_B3HW.detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8)
    arrays = images_B3HW.cpu().permute(0, 2, 3, 1).numpy()
    return torch.from_numpy(np.stack([extractor.resize(a) for a in arrays]).transpose(0, 3, 1, 2).copy())


def feature_stats(extractor: FeatureExtractor, images: torch.Tensor | Iterable[torch.Tensor],
                  batch_size: int = 64) -> FeatureStats:
    """Feature mean and covariance of ``images``: one tensor (N, 3, H, W) or an iterable of
    such batches, in [0, 1] (float) or uint8. Features come from clean-fid's
    ``get_batch_features`` with ``extractor`` as the model, on ``extractor.device``."""
    n, shift, sum_D, outer_DD = 0, None, None, None
    for batch in _batches(images, batch_size):
        feats = get_batch_features(clean_fid_batch(batch, extractor), extractor, extractor.device).astype(np.float64)
        if shift is None:
            shift = feats.mean(axis=0)
            sum_D, outer_DD = np.zeros_like(shift), np.zeros((shift.size, shift.size))
        centred = feats - shift
        sum_D += centred.sum(axis=0)
        outer_DD += centred.T @ centred
        n += len(feats)
    if n < 2:
        raise ValueError(f"images: need at least 2 images for a covariance, got {n}")
    mean_D = sum_D / n
    sigma = (outer_DD - n * np.outer(mean_D, mean_D)) / (n - 1)
    return FeatureStats(mu=shift + mean_D, sigma=sigma, n=n, extractor=extractor.identity)


def folder_feature_stats(folder: str | os.PathLike, extractor: FeatureExtractor, batch_size: int = 64) -> FeatureStats:
    """Statistics of every image file under ``folder`` (recursively), read and resized by
    clean-fid's own folder pipeline (``get_folder_features`` in mode "clean" with the
    extractor's resize), e.g. for a folder of saved samples or reference images."""
    feats = get_folder_features(str(folder), extractor, num_workers=0, batch_size=batch_size,
                                device=extractor.device, mode="clean", custom_fn_resize=extractor.resize,
                                verbose=False).astype(np.float64)
    if len(feats) < 2:
        raise ValueError(f"{folder}: need at least 2 images, found {len(feats)}")
    return FeatureStats(mu=feats.mean(axis=0), sigma=np.cov(feats, rowvar=False), n=len(feats),
                        extractor=extractor.identity)


def reference_key(images: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
                  extractor: FeatureExtractor) -> str:
    """sha256 (first 24 hex digits) of the extractor's identity and the uint8-quantised
    images as the extractor sees them (shape and bytes of every batch)."""
    digest = hashlib.sha256(extractor.identity.encode())
    for batch in ([images] if isinstance(images, torch.Tensor) else images):
        quantised = batch if batch.dtype == torch.uint8 else (batch.detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8)
        digest.update(str(tuple(quantised.shape)).encode())
        digest.update(quantised.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cached_reference_stats(images: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
                           extractor: FeatureExtractor, cache_dir: str | os.PathLike,
                           batch_size: int = 64) -> FeatureStats:
    """Reference statistics, computed once and then read from
    ``cache_dir/refstats-<reference_key>.npz``; any change to the images or the extractor
    changes the key. ``images`` is a tensor or a list/tuple of batches (read twice: to hash,
    and on a cache miss to compute)."""
    if not isinstance(images, (torch.Tensor, list, tuple)):
        raise TypeError(f"images: expected a tensor or a list/tuple of tensors, got {type(images).__name__} "
                        "(a one-shot iterator cannot be both hashed and computed)")
    path = Path(cache_dir) / f"refstats-{reference_key(images, extractor)}.npz"
    if path.is_file():
        try:
            return FeatureStats.load(path)
        except ValueError:
            pass  # a damaged cache entry: recompute and overwrite it below
    stats = feature_stats(extractor, images, batch_size)
    stats.save(path)
    return stats


# ---- FID of a generator --------------------------------------------------------------------


@dataclass
class FIDResult:
    """A score and the record of how it was made."""

    score: float
    metric_name: str  # "FID" (Inception) or "testbed FID" (the testbed classifier)
    extractor: str  # FeatureExtractor.identity
    preprocessing: str
    num_samples: int
    num_per_class: int
    seed: int
    batch_size: int
    sampling_kwargs: dict = field(default_factory=dict)
    reference_n: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def generated_images(gen: Generator, num_per_class: int, sampling_kwargs: dict, seed: int,
                     batch_size: int) -> Iterable[torch.Tensor]:
    """Class-conditional samples, ``num_per_class`` for every class in label order, in
    batches of images in [0, 1]. One ``torch.Generator`` seeded with ``seed`` drives all
    batches, so the samples depend on (seed, batch_size)."""
    labels = torch.arange(gen.num_classes).repeat_interleave(num_per_class)
    rng = torch.Generator(device=gen.device).manual_seed(seed)
    with torch.no_grad(), eval_mode(gen.transformer, gen.tokenizer):
        for i in range(0, len(labels), batch_size):
            tokens = gen.sample(labels[i : i + batch_size].to(gen.device), generator=rng, **sampling_kwargs)
            yield gen.tokens_to_images(tokens).cpu()


def fid_of_generator(gen: Generator, extractor: FeatureExtractor, reference_stats: FeatureStats,
                     num_per_class: int, sampling_kwargs: dict | None = None, seed: int = 0,
                     batch_size: int = 64) -> FIDResult:
    """Sample ``num_per_class`` images of every class with ``gen.sample(**sampling_kwargs)``
    and score them against ``reference_stats`` (which must come from the same extractor)."""
    if reference_stats.extractor != extractor.identity:
        raise ValueError(f"reference statistics were made with {reference_stats.extractor!r}, "
                         f"but the extractor is {extractor.identity!r}")
    if isinstance(num_per_class, bool) or not isinstance(num_per_class, int) or num_per_class < 1:
        raise ValueError(f"num_per_class: expected a positive integer, got {num_per_class!r}")
    sampling_kwargs = dict(sampling_kwargs or {})
    started = time.perf_counter()
    stats = feature_stats(extractor, generated_images(gen, num_per_class, sampling_kwargs, seed, batch_size))
    score = frechet_distance(stats.mu, stats.sigma, reference_stats.mu, reference_stats.sigma)
    return FIDResult(
        score=score, metric_name=extractor.metric_name, extractor=extractor.identity,
        preprocessing=extractor.preprocessing, num_samples=stats.n, num_per_class=num_per_class, seed=seed,
        batch_size=batch_size, sampling_kwargs=sampling_kwargs, reference_n=reference_stats.n,
        seconds=round(time.perf_counter() - started, 3),
    )
