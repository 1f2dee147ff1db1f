"""FID with an explicit feature extractor, through clean-fid's helpers (spec/method.md, section 5).

Every score says which features and preprocessing produced it:

- :class:`InceptionFeatures`: clean-fid's Inception-v3 TorchScript (pool3, 2048-d) from a file
  the user supplies (any file name); clean-fid's "clean" protocol (images quantised to uint8,
  resized to 299 x 299 by PIL bicubic per channel in float). ``metric_name = "FID"``;
  comparable to the paper's numbers only with the paper's reference statistics and sample count.
- :class:`TestbedFeatures`: the 128-d penultimate features of the testbed classifier
  (memlib/classifier.py), on uint8-quantised 32 x 32 images without resizing.
  ``metric_name = "testbed FID"``: not comparable to any ImageNet FID.

An extractor follows clean-fid's two plug-in protocols, so clean-fid's own functions accept it:
``extractor.resize`` is a ``custom_fn_resize`` (uint8 H x W x 3 array -> float32 array in
[0, 255]) and ``extractor(batch)`` a ``custom_feat_extractor`` (float (B, 3, h, w) in
[0, 255] -> features (B, D)). Nothing here downloads: clean-fid's download switches are never
used, and a missing weights file is an error naming it.

Reference statistics (:func:`reference_stats_from_npz`): the paper's FIDs are measured by the
ADM evaluator against the ``mu``/``sigma`` stored in its reference batch
(``VIRTUAL_imagenet256_labeled.npz``: statistics of the whole ImageNet training set), so
``mode="mu-sigma"`` (the default) uses those. ``mode="recompute"`` computes statistics from the
file's 10,000 ``arr_0`` images with the extractor instead (cached, see below): a different
reference, and every score records which one it used.

Statistics stream (:class:`FeatureMoments`): each batch's mean and centred outer products are
folded in, in float64, so 50,000 samples never sit in memory at once, and the accumulators of
torchrun ranks merge exactly (to round-off). Generation shards by batch: batch ``b`` of a sample
set has its own seed (:func:`batch_seed`), so a batch's images do not depend on which rank or
how many ranks draw it (:func:`sample_moments`, :func:`fid_from_moments`).

Cached statistics are bound to what produced them: the npz holds the cache key (a hash of the
images and the extractor) and a sha256 of its own content, both checked on load, so a file
changed or copied in from another reference is recomputed, not used. (Without a secret this
detects accidents and stale files, not a forger who also rewrites the hash.)
"""

from __future__ import annotations

import abc
import io
import hashlib
import json
import math
import os
import sys
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import scipy.linalg
import torch
from tqdm import tqdm  # plain text on stderr (tqdm.auto would draw widgets into notebooks)

from memlib.distributed import shard_indices
from memlib.models.generator import Generator, eval_mode
from memlib.results import atomic_write_bytes, file_sha256

INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's / StyleGAN2-ADA's name for its TorchScript Inception
INCEPTION_DIM = 2048
# What the ``mu``/``sigma`` of an ADM reference batch are (guided-diffusion's evaluations/evaluator.py).
ADM_REFERENCE_STATISTICS = "ADM evaluator statistics (TF Inception-v3 2015-12-05 pool_3, 2048-d)"
REFERENCE_MODES = ("mu-sigma", "recompute")  # mode of reference_stats_from_npz


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of the Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64:

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))

    The last trace is computed from eigenvalues rather than ``scipy.linalg.sqrtm`` (pytorch-fid's
    way; the same number, :func:`trace_sqrt_product`): with ``sigma1 = A A^T``, the eigenvalues of
    ``sigma1 sigma2`` are those of the symmetric ``A^T sigma2 A``, so one symmetric eigen-
    decomposition replaces a Schur decomposition (2048-d: seconds instead of minutes on a CPU,
    and a fraction of a second for a covariance of few samples).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not fit: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((sigma1 sigma2)^(1/2)) of two symmetric positive semi-definite matrices.

    With ``sigma1 = A A^T`` (:func:`psd_factor`: A is D x r, r the numerical rank), the
    non-zero eigenvalues of ``sigma1 sigma2`` are those of the r x r ``A^T sigma2 A`` (PSD): the
    trace is the sum of their square roots (negative round-off clipped to 0). A rank-deficient
    covariance (fewer samples than dimensions) needs no ``eps`` on the diagonal.
    """
    A = psd_factor((sigma1 + sigma1.T) / 2)
    M = A.T @ sigma2 @ A
    lam = scipy.linalg.eigvalsh((M + M.T) / 2)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


LOW_RANK_PROBE = 32  # columns of the range finder of psd_factor


def psd_factor(sigma: np.ndarray) -> np.ndarray:
    """A (D, r) with ``sigma = A A^T`` for a symmetric PSD ``sigma``, keeping the eigenvalues
    above round-off (``w > D eps max w``).

    A covariance of few samples (a rehearsal: rank < :data:`LOW_RANK_PROBE`) is factored through
    its range (a seeded Gaussian probe ``sigma G``, orthonormalised, Halko et al. 2011) in
    O(D^2 r); the factor is used only when it reproduces ``sigma`` to ``D eps`` relative
    (Frobenius), else (a full-rank covariance) ``sigma`` is decomposed whole (``eigh``).
    """
    D = len(sigma)
    if not np.isfinite(sigma).all():
        raise ValueError("covariance holds non-finite values")
    tolerance = D * np.finfo(np.float64).eps
    if LOW_RANK_PROBE < D:
        probe = np.random.default_rng(0).standard_normal((D, LOW_RANK_PROBE))
        Q, _ = np.linalg.qr(sigma @ probe)
        w, V = scipy.linalg.eigh(Q.T @ sigma @ Q)
        keep = w > max(float(w.max()), 0.0) * tolerance
        A = (Q @ V[:, keep]) * np.sqrt(w[keep])
        if np.linalg.norm(sigma - A @ A.T) <= tolerance * np.linalg.norm(sigma):
            return A
    w, U = scipy.linalg.eigh(sigma, driver="evd")
    keep = w > max(float(w.max()), 0.0) * tolerance
    return U[:, keep] * np.sqrt(w[keep])


# ---- feature extractors --------------------------------------------------------------------


class FeatureExtractor(abc.ABC):
    """Images -> features, in clean-fid's protocols (see the module docstring)."""

    name: str  # what the features are
    metric_name: str  # the name a score made with these features is reported under
    preprocessing: str  # what happens to an image in [0, 1] before the network
    device: torch.device
    weights_sha256: str  # of the weights file, so a changed file never reuses cached statistics
    # Statistics made elsewhere (FeatureStats.extractor) that these features may be scored
    # against, besides their own identity.
    comparable_statistics: tuple[str, ...] = ()

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

    ``path`` is the TorchScript file (clean-fid's/StyleGAN2-ADA's ``inception-2015-12-05.pt``,
    under any name; get it once by hand, it is never downloaded here) or a folder holding it
    under that name. The network runs as clean-fid's ``InceptionV3W(resize_inside=False)`` does
    (``(x - 128) / 128``, then the file's ``layers``), loaded here from the path itself because
    ``InceptionV3W`` only looks for the fixed file name. TorchScript files are code: load only
    a file from a source you trust.

    Its features may be scored against an ADM reference batch's ``mu``/``sigma``
    (:data:`ADM_REFERENCE_STATISTICS`): the same network, but the ADM evaluator resizes inside
    the TF graph (bilinear) where clean-fid's "clean" mode uses PIL bicubic, so a score is the
    paper's protocol up to that resize, not the ADM evaluator bit for bit.
    """

    name = "clean-fid Inception-v3 pool3 (2048-d)"
    metric_name = "FID"
    preprocessing = "uint8 quantisation; clean-fid 'clean' resize to 299x299 (PIL bicubic per channel, float); (x - 128) / 128"
    comparable_statistics = (ADM_REFERENCE_STATISTICS,)

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        path = Path(path)
        if path.is_dir():
            path = path / INCEPTION_FILE
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights not found: {path} (clean-fid's TorchScript Inception-v3, "
                                    f"{INCEPTION_FILE}; pass the file itself, under any name)")
        self.path = path
        self.device = torch.device(device)
        self.weights_sha256 = file_sha256(path)
        try:
            with warnings.catch_warnings():  # the file is TorchScript, whose loader torch marks deprecated
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
                base = torch.jit.load(str(path), map_location=self.device).eval()
        except RuntimeError as err:
            raise ValueError(f"cannot load {path} as a TorchScript module: {err}") from err
        if not hasattr(base, "layers"):
            raise ValueError(f"{path}: a TorchScript module without the 'layers' of clean-fid's Inception-v3 "
                             f"(expected the file clean-fid calls {INCEPTION_FILE})")
        self.layers = base.layers
        from cleanfid.resize import build_resizer  # clean-fid is imported where used: it loads torchvision (seconds)

        self._resize = build_resizer("clean")

    def resize(self, image_HW3):
        return self._resize(image_HW3)

    def __call__(self, batch_B3hw):
        if tuple(batch_B3hw.shape[2:]) != (299, 299):
            raise ValueError(f"Inception features need 299x299 inputs, got {tuple(batch_B3hw.shape[2:])}")
        with torch.no_grad():
            x = batch_B3hw.to(self.device)
            return self.layers((x - 128) / 128).view(x.shape[0], INCEPTION_DIM)


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
    """Mean (D,) and covariance (D, D) of n feature vectors (float64), whose features, and
    where they come from (``source``: empty for statistics computed here from images)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int  # 0: not recorded (an ADM reference batch's mu/sigma)
    extractor: str  # FeatureExtractor.identity, or ADM_REFERENCE_STATISTICS
    source: str = ""

    def content_sha256(self, key: str = "") -> str:
        """sha256 of everything the file holds: arrays (float64 bytes and shapes), n,
        extractor, source and ``key``."""
        digest = hashlib.sha256()
        for array in (self.mu, self.sigma):
            array = np.ascontiguousarray(array, dtype=np.float64)
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
        digest.update(json.dumps([int(self.n), self.extractor, self.source, key]).encode())
        return digest.hexdigest()

    def save(self, path: str | os.PathLike, key: str = "") -> None:
        """npz (read with ``allow_pickle=False``) holding the statistics, ``key`` and
        :meth:`content_sha256`, written atomically (:func:`memlib.results.atomic_write_bytes`)."""
        buffer = io.BytesIO()
        np.savez(buffer, mu=np.asarray(self.mu, np.float64), sigma=np.asarray(self.sigma, np.float64),
                 n=np.int64(self.n), extractor=np.str_(self.extractor), source=np.str_(self.source),
                 key=np.str_(key), content_sha256=np.str_(self.content_sha256(key)))
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, key: str | None = None) -> "FeatureStats":
        """Read a file written by :meth:`save`. Its recorded content sha256 must match; with
        ``key`` given the file must also have been saved under that key (a cache entry is
        bound to its inputs). ``ValueError`` naming the file otherwise."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature statistics file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = {"mu", "sigma", "n", "extractor"} - set(npz.files)
                if missing:
                    raise ValueError(f"keys {sorted(missing)} missing (has {sorted(npz.files)})")
                stats = cls(mu=npz["mu"].astype(np.float64), sigma=npz["sigma"].astype(np.float64),
                            n=int(npz["n"]), extractor=str(npz["extractor"]),
                            source=str(npz["source"]) if "source" in npz.files else "")
                stored_key = str(npz["key"]) if "key" in npz.files else None
                recorded = str(npz["content_sha256"]) if "content_sha256" in npz.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # also pickled (object) arrays
            raise ValueError(f"{path}: not a feature statistics file ({err})") from err
        if key is not None and (recorded is None or stored_key != key):
            raise ValueError(f"{path}: not bound to cache key {key} (it records {stored_key!r})")
        if recorded is not None and recorded != stats.content_sha256(stored_key or ""):
            raise ValueError(f"{path}: content does not match its recorded sha256 (changed after it was written)")
        return stats


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


def _progress_bar(progress: bool, total: int | None, desc: str):
    return tqdm(total=total, desc=desc, unit="img", disable=not progress, file=sys.stderr, mininterval=2.0)


class FeatureMoments:
    """Streaming mean and covariance of feature vectors, in float64, mergeable (baukit-style).

    Holds ``n``, the mean (D,) and ``m2`` (D, D), the sum of outer products of the deviations
    from the mean. :meth:`add` folds in a batch and :meth:`merge` another accumulator with
    Chan et al.'s pairwise update (``m2 = m2_a + m2_b + d d^T n_a n_b / n``, ``d`` the difference
    of the means), so accumulators over disjoint shards (torchrun ranks) merge into the
    statistics of all their features, to float64 round-off, whatever the split.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean_D: np.ndarray | None = None
        self.m2_DD: np.ndarray | None = None

    def add(self, feats_BD: np.ndarray) -> "FeatureMoments":
        feats_BD = np.asarray(feats_BD, np.float64)
        if len(feats_BD):
            mean = feats_BD.mean(axis=0)
            centred = feats_BD - mean
            self._fold(len(feats_BD), mean, centred.T @ centred)
        return self

    def merge(self, other: "FeatureMoments") -> "FeatureMoments":
        if other.n:
            self._fold(other.n, other.mean_D, other.m2_DD)
        return self

    def _fold(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if self.n == 0:
            self.n, self.mean_D, self.m2_DD = n_b, mean_b.copy(), m2_b.copy()
            return
        if mean_b.shape != self.mean_D.shape:
            raise ValueError(f"features of {mean_b.size} dimensions cannot join features of {self.mean_D.size}")
        n = self.n + n_b
        delta = mean_b - self.mean_D
        self.m2_DD += m2_b + np.outer(delta, delta) * (self.n * n_b / n)
        self.mean_D += delta * (n_b / n)
        self.n = n

    def stats(self, extractor: str) -> "FeatureStats":
        """The mean and (n - 1)-normalised covariance, as :class:`FeatureStats` of ``extractor``."""
        if self.n < 2:
            raise ValueError(f"images: need at least 2 images for a covariance, got {self.n}")
        return FeatureStats(mu=self.mean_D.copy(), sigma=self.m2_DD / (self.n - 1), n=self.n, extractor=extractor)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.n == 0:
            return {"n": torch.tensor(0, dtype=torch.int64)}
        return {"n": torch.tensor(self.n, dtype=torch.int64), "mean_D": torch.from_numpy(self.mean_D),
                "m2_DD": torch.from_numpy(self.m2_DD)}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "FeatureMoments":
        moments = cls()
        n = int(state["n"])
        if n:
            moments.n, moments.mean_D = n, state["mean_D"].double().numpy().copy()
            moments.m2_DD = state["m2_DD"].double().numpy().copy()
        return moments


def feature_moments(extractor: FeatureExtractor, images: torch.Tensor | Iterable[torch.Tensor],
                    batch_size: int = 64, progress: bool = False, total: int | None = None,
                    desc: str = "features") -> FeatureMoments:
    """:class:`FeatureMoments` of the features of ``images`` (see :func:`feature_stats`)."""
    if total is None and isinstance(images, torch.Tensor):
        total = len(images)
    from cleanfid.fid import get_batch_features  # imported where used: it loads torchvision (seconds)

    moments = FeatureMoments()
    with _progress_bar(progress, total, desc) as bar:
        for batch in _batches(images, batch_size):
            moments.add(get_batch_features(clean_fid_batch(batch, extractor), extractor, extractor.device))
            bar.update(len(batch))
    return moments


def feature_stats(extractor: FeatureExtractor, images: torch.Tensor | Iterable[torch.Tensor],
                  batch_size: int = 64, progress: bool = False, total: int | None = None,
                  desc: str = "features") -> FeatureStats:
    """Feature mean and covariance of ``images``: one tensor (N, 3, H, W) or an iterable of
    such batches, in [0, 1] (float) or uint8. Features come from clean-fid's
    ``get_batch_features`` with ``extractor`` as the model, on ``extractor.device``.
    ``progress``: a progress bar on stderr counting images (of ``total``, when known)."""
    return feature_moments(extractor, images, batch_size, progress, total, desc).stats(extractor.identity)


def folder_feature_stats(folder: str | os.PathLike, extractor: FeatureExtractor, batch_size: int = 64,
                         progress: bool = False) -> FeatureStats:
    """Statistics of every image file under ``folder`` (recursively), read and resized by
    clean-fid's own folder pipeline (``get_folder_features`` in mode "clean" with the
    extractor's resize), e.g. for a folder of saved samples or reference images.
    ``progress``: clean-fid's own progress bar."""
    from cleanfid.fid import get_folder_features  # imported where used: it loads torchvision (seconds)

    feats = get_folder_features(str(folder), extractor, num_workers=0, batch_size=batch_size,
                                device=extractor.device, mode="clean", custom_fn_resize=extractor.resize,
                                verbose=progress).astype(np.float64)
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
                           batch_size: int = 64, progress: bool = False) -> FeatureStats:
    """Reference statistics, computed once and then read from
    ``cache_dir/refstats-<reference_key>.npz``; any change to the images or the extractor
    changes the key. The file is bound to its key and content (:meth:`FeatureStats.load`): an
    entry that fails the check (damaged, edited, or copied from another reference) is reported
    with a warning, recomputed and overwritten. ``images`` is a tensor or a list/tuple of
    batches (read twice: to hash, and on a cache miss to compute)."""
    if not isinstance(images, (torch.Tensor, list, tuple)):
        raise TypeError(f"images: expected a tensor or a list/tuple of tensors, got {type(images).__name__} "
                        "(a one-shot iterator cannot be both hashed and computed)")
    key = reference_key(images, extractor)
    path = Path(cache_dir) / f"refstats-{key}.npz"
    if path.is_file():
        try:
            return FeatureStats.load(path, key=key)
        except ValueError as err:
            warnings.warn(f"FID cache entry refused, recomputing it: {err}", stacklevel=2)
    total = len(images) if isinstance(images, torch.Tensor) else sum(len(batch) for batch in images)
    stats = feature_stats(extractor, images, batch_size, progress=progress, total=total, desc="reference features")
    stats.save(path, key=key)
    return stats


def _adm_mu_sigma(npz, path: Path) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ("mu", "sigma") if k not in npz.files]
    if missing:
        raise ValueError(f"fid_reference_npz: {path} has no {missing} (has {sorted(npz.files)}); an ADM reference "
                         "batch stores its statistics there. Use mode 'recompute' to compute them from 'arr_0'")
    try:
        mu, sigma = npz["mu"].astype(np.float64), npz["sigma"].astype(np.float64)
    except ValueError as err:  # pickled (object) arrays, never loaded
        raise ValueError(f"fid_reference_npz: {path}: 'mu'/'sigma' are not plain arrays ({err})") from err
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"fid_reference_npz: {path}: 'mu' {mu.shape} and 'sigma' {sigma.shape}; expected (D,) and "
                         f"(D, D) feature statistics (D = {INCEPTION_DIM} for Inception pool_3)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"fid_reference_npz: {path}: 'mu' or 'sigma' holds non-finite values")
    return mu, sigma


def reference_stats_from_npz(path: str | os.PathLike, extractor: FeatureExtractor, mode: str = "mu-sigma",
                             cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
                             progress: bool = True) -> FeatureStats:
    """Reference statistics from an ADM-style reference batch (``VIRTUAL_imagenet256_labeled.npz``).

    ``mode="mu-sigma"``: the file's ``mu`` (2048,) and ``sigma`` (2048, 2048), the ADM
    evaluator's whole-dataset statistics the paper's FIDs are measured against, used exactly;
    the extractor must declare them comparable (:class:`InceptionFeatures` does).
    ``mode="recompute"``: the statistics of the file's ``arr_0`` images (uint8 (N, H, W, 3))
    under ``extractor``, cached in ``cache_dir`` (not cached when None). ``source`` of the
    result says which, with the file's name and sha256.
    """
    if mode not in REFERENCE_MODES:
        raise ValueError(f"mode: expected one of {REFERENCE_MODES}, got {mode!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fid_reference_npz: reference file not found: {path}")
    if mode == "mu-sigma" and ADM_REFERENCE_STATISTICS not in extractor.comparable_statistics:
        raise ValueError(f"fid reference 'mu-sigma': the 'mu'/'sigma' of {path.name} are {ADM_REFERENCE_STATISTICS}, "
                         f"not comparable with {extractor.identity}; use mode 'recompute'")
    file_sha = file_sha256(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"fid_reference_npz: {path} is not an npz file ({err})") from err
    with npz:
        if mode == "mu-sigma":
            mu, sigma = _adm_mu_sigma(npz, path)
            return FeatureStats(mu=mu, sigma=sigma, n=0, extractor=ADM_REFERENCE_STATISTICS,
                                source=f"'mu'/'sigma' of {path.name} (sha256 {file_sha[:16]}; the ADM evaluator's statistics)")
        if "arr_0" not in npz.files:
            raise ValueError(f"fid_reference_npz: {path} has no 'arr_0' images (has {sorted(npz.files)})")
        try:
            images_NHW3 = npz["arr_0"]
        except ValueError as err:  # pickled (object) arrays, never loaded
            raise ValueError(f"fid_reference_npz: {path}: 'arr_0' is not a plain array ({err})") from err
    if images_NHW3.dtype != np.uint8 or images_NHW3.ndim != 4 or images_NHW3.shape[-1] != 3:
        raise ValueError(f"fid_reference_npz: {path}: 'arr_0' is {images_NHW3.dtype} {images_NHW3.shape}; "
                         "expected uint8 images (N, H, W, 3)")
    batches = [torch.from_numpy(images_NHW3[i : i + 500]).permute(0, 3, 1, 2).contiguous()
               for i in range(0, len(images_NHW3), 500)]
    if cache_dir is None:
        stats = feature_stats(extractor, batches, batch_size, progress=progress, total=len(images_NHW3),
                              desc="reference features")
    else:
        stats = cached_reference_stats(batches, extractor, cache_dir, batch_size, progress=progress)
    return replace(stats, source=f"recomputed from the {len(images_NHW3)} 'arr_0' images of {path.name} "
                                 f"(sha256 {file_sha[:16]})")


# ---- FID of a generator --------------------------------------------------------------------


@dataclass
class FIDResult:
    """A score and the record of how it was made."""

    score: float
    metric_name: str  # "FID" (Inception) or "testbed FID"; "... (K of C classes)" for a class subset
    extractor: str  # FeatureExtractor.identity
    preprocessing: str
    num_samples: int
    num_per_class: int
    seed: int
    batch_size: int
    sampling_kwargs: dict = field(default_factory=dict)
    reference_n: int = 0  # 0: not recorded (an ADM reference batch's mu/sigma)
    seconds: float = 0.0
    reference: str = ""  # the reference statistics: their extractor, and source when given
    classes: list[int] | None = None  # the classes sampled; None: all of them
    num_classes: int = 0  # the generator's number of classes

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def rehearsal_classes(num_classes: int, k: int, seed: int) -> list[int]:
    """A seeded choice of ``k`` of ``num_classes`` class ids, sorted, for a rehearsal FID."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise ValueError(f"k: expected an integer in 1..{num_classes}, got {k!r}")
    return sorted(np.random.default_rng(seed).choice(num_classes, size=k, replace=False).tolist())


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch`` of the sample set of ``seed`` (numpy's SeedSequence of the
    pair: distinct, well-mixed seeds for every (seed, batch))."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_labels(num_classes: int, num_per_class: int, classes: Sequence[int] | None = None) -> torch.Tensor:
    """The labels of a sample set: ``num_per_class`` of every class of ``classes`` (default: all),
    in label order."""
    class_ids = torch.arange(num_classes) if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
    return class_ids.repeat_interleave(num_per_class)


def generated_images(gen: Generator, num_per_class: int, sampling_kwargs: dict, seed: int,
                     batch_size: int, classes: Sequence[int] | None = None,
                     batches: Iterable[int] | None = None) -> Iterable[torch.Tensor]:
    """Class-conditional samples, ``num_per_class`` for every class in ``classes`` (default:
    all, in label order), in batches of ``batch_size`` images in [0, 1]. Batch ``b`` is drawn
    with a ``torch.Generator`` seeded with :func:`batch_seed` ``(seed, b)``, so it depends on
    (seed, batch_size, classes, b) only; ``batches``: draw only these batch indices (a rank's
    shard), in the given order (default: all)."""
    labels = sample_labels(gen.num_classes, num_per_class, classes)
    n_batches = math.ceil(len(labels) / batch_size)
    with torch.no_grad(), eval_mode(gen.transformer, gen.tokenizer):
        for b in range(n_batches) if batches is None else batches:
            rng = torch.Generator(device=gen.device).manual_seed(batch_seed(seed, b))
            tokens = gen.sample(labels[b * batch_size : (b + 1) * batch_size].to(gen.device), generator=rng, **sampling_kwargs)
            yield gen.tokens_to_images(tokens).cpu()


def _checked_classes(classes: Sequence[int] | None, num_classes: int) -> list[int] | None:
    if classes is None:
        return None
    ids = list(classes)
    if (not ids or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in ids)
            or len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) >= num_classes):
        raise ValueError(f"classes: expected distinct class ids in 0..{num_classes - 1}, got {ids[:10]!r}")
    return sorted(int(c) for c in ids)


def _check_num_per_class(num_per_class: int) -> None:
    if isinstance(num_per_class, bool) or not isinstance(num_per_class, int) or num_per_class < 1:
        raise ValueError(f"num_per_class: expected a positive integer, got {num_per_class!r}")


def sample_moments(gen: Generator, extractor: FeatureExtractor, num_per_class: int,
                   sampling_kwargs: dict | None = None, seed: int = 0, batch_size: int = 64,
                   classes: Sequence[int] | None = None, rank: int = 0, world_size: int = 1,
                   progress: bool = False) -> FeatureMoments:
    """:class:`FeatureMoments` of the features of this rank's share of a sample set
    (:func:`generated_images`): the contiguous block of batches
    :func:`memlib.distributed.shard_indices` gives ``rank`` of ``world_size``. Merging the
    ranks' moments (:meth:`FeatureMoments.merge`, in any order) gives the moments of the whole
    set. ``progress``: a progress bar on stderr over this rank's samples."""
    _check_num_per_class(num_per_class)
    classes = _checked_classes(classes, gen.num_classes)
    n_samples = len(sample_labels(gen.num_classes, num_per_class, classes))
    batches = shard_indices(math.ceil(n_samples / batch_size), rank, world_size)
    total = sum(min(batch_size, n_samples - b * batch_size) for b in batches)
    desc = "FID samples" + (f" (rank {rank}/{world_size})" if world_size > 1 else "")
    images = generated_images(gen, num_per_class, dict(sampling_kwargs or {}), seed, batch_size, classes, batches)
    return feature_moments(extractor, images, progress=progress, total=total, desc=desc)


def fid_from_moments(moments: FeatureMoments, extractor: FeatureExtractor, reference_stats: FeatureStats,
                     num_per_class: int, num_classes: int, sampling_kwargs: dict | None = None, seed: int = 0,
                     batch_size: int = 64, classes: Sequence[int] | None = None, seconds: float = 0.0) -> FIDResult:
    """The score of the (merged) sample moments against ``reference_stats``, with its record.
    ``classes`` not None (a rehearsal subset): ``metric_name`` says "K of C classes", since the
    score is not comparable with a full-class FID."""
    if reference_stats.extractor not in (extractor.identity, *extractor.comparable_statistics):
        raise ValueError(f"reference statistics were made with {reference_stats.extractor!r}, "
                         f"but the extractor is {extractor.identity!r}")
    classes = _checked_classes(classes, num_classes)
    stats = moments.stats(extractor.identity)
    score = frechet_distance(stats.mu, stats.sigma, reference_stats.mu, reference_stats.sigma)
    metric_name = extractor.metric_name if classes is None else (
        f"{extractor.metric_name} ({len(classes)} of {num_classes} classes)")
    reference = reference_stats.extractor + (f"; {reference_stats.source}" if reference_stats.source else "")
    return FIDResult(
        score=score, metric_name=metric_name, extractor=extractor.identity,
        preprocessing=extractor.preprocessing, num_samples=stats.n, num_per_class=num_per_class, seed=seed,
        batch_size=batch_size, sampling_kwargs=dict(sampling_kwargs or {}), reference_n=reference_stats.n,
        seconds=round(seconds, 3), reference=reference, classes=classes, num_classes=num_classes,
    )


def fid_of_generator(gen: Generator, extractor: FeatureExtractor, reference_stats: FeatureStats,
                     num_per_class: int, sampling_kwargs: dict | None = None, seed: int = 0,
                     batch_size: int = 64, classes: Sequence[int] | None = None,
                     progress: bool = True) -> FIDResult:
    """Sample ``num_per_class`` images of every class with ``gen.sample(**sampling_kwargs)``
    and score them against ``reference_stats`` (from the same extractor, or statistics it
    declares comparable, such as an ADM reference batch's for Inception), in this process.

    ``classes``: sample only these class ids (a rehearsal; :func:`rehearsal_classes` draws
    some): the result's ``metric_name`` then says "K of C classes". ``progress``: a progress
    bar on stderr over the samples. Across torchrun ranks: :func:`sample_moments` on every
    rank, then :func:`fid_from_moments` of the merged moments.
    """
    if reference_stats.extractor not in (extractor.identity, *extractor.comparable_statistics):
        raise ValueError(f"reference statistics were made with {reference_stats.extractor!r}, "
                         f"but the extractor is {extractor.identity!r}")
    started = time.perf_counter()
    moments = sample_moments(gen, extractor, num_per_class, sampling_kwargs, seed, batch_size, classes,
                             progress=progress)
    return fid_from_moments(moments, extractor, reference_stats, num_per_class, gen.num_classes, sampling_kwargs,
                            seed, batch_size, classes, seconds=time.perf_counter() - started)
