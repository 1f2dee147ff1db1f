"""Images for the two ways of running the project, and each model family's augmentations.

1. The testbed: a Fashion-MNIST subset shipped in ``data/`` (built by
   ``scripts/prepare_testbed_data.py``; see ``data/README.md``), checksum-verified on load.
2. Full scale: an ImageNet-style folder ``root/<class_folder>/<image>`` from which a
   fraction of every class is sampled uniformly (the paper: 1% of ImageNet-1k train).
3. Augmented views per family (spec/method.md, section 2), each drawn from a
   ``torch.Generator`` passed explicitly, so a seed fixes every view.

The testbed trains and measures WITHOUT augmentation: planted memorization needs the planted
images to be repeated exactly, so the testbed's "views" are the image itself
(:func:`identity_views`).

Shapes: N images, H x W pixels; images for the models are float (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from .results import file_sha256

# ---------------------------------------------------------------------------------------------
# 1. The testbed
# ---------------------------------------------------------------------------------------------

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TESTBED_FILE = "fashion_mnist_testbed.npz"
PROVENANCE_FILE = "PROVENANCE.json"
DEFAULT_DUPLICATION = 20  # how often each planted image is seen per epoch (testbed knob, testbed-notes lesson 4)

_TESTBED_KEYS = {  # key -> (dtype, number of dimensions)
    "train_images": (np.uint8, 3),
    "train_labels": (np.uint8, 1),
    "train_source_indices": (np.int32, 1),
    "heldout_images": (np.uint8, 3),
    "heldout_labels": (np.uint8, 1),
    "heldout_source_indices": (np.int32, 1),
    "planted_ids": (np.int32, 1),
    "class_names": (np.str_, 1),
}


@dataclass(frozen=True)
class TestbedData:
    """The testbed set. ``*_images`` are uint8 (N, 32, 32) gray, ``*_labels`` int64 (N,) in
    ``0 .. num_classes - 1``; ``planted_ids`` are positions in the train split;
    ``*_source_indices`` are positions in the official Fashion-MNIST train/test files."""

    train_images: np.ndarray
    train_labels: np.ndarray
    train_source_indices: np.ndarray
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    heldout_source_indices: np.ndarray
    planted_ids: np.ndarray
    class_names: tuple[str, ...]
    path: Path

    __test__ = False  # not a pytest test class despite the name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def is_planted(self) -> np.ndarray:
        """Boolean mask over the train split."""
        mask = np.zeros(len(self.train_labels), dtype=bool)
        mask[self.planted_ids] = True
        return mask


def load_testbed(path: str | os.PathLike | None = None) -> TestbedData:
    """Load the testbed npz (default: ``data/fashion_mnist_testbed.npz`` of this repository).

    The file's sha256 must equal the one recorded in ``PROVENANCE.json`` beside it; every key
    must be present with the expected dtype and number of dimensions. Raises ``ValueError``
    (``FileNotFoundError`` for a missing file) naming the file or key otherwise.
    """
    path = Path(path) if path is not None else DATA_DIR / TESTBED_FILE
    provenance_path = path.with_name(PROVENANCE_FILE)
    for required in (path, provenance_path):
        if not required.is_file():
            raise FileNotFoundError(f"testbed file not found: {required}")
    try:
        expected_sha = json.loads(provenance_path.read_text(encoding="utf-8"))["output"]["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{provenance_path}: expected JSON with output.sha256 ({type(err).__name__}: {err})") from err
    actual_sha = file_sha256(path)
    if actual_sha != expected_sha:
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {actual_sha}, but {provenance_path} records {expected_sha} "
            "(a corrupted or modified file; rebuild it with scripts/prepare_testbed_data.py or restore it from git)"
        )

    with np.load(path, allow_pickle=False) as npz:
        arrays = {}
        for key, (dtype, ndim) in _TESTBED_KEYS.items():
            if key not in npz.files:
                raise ValueError(f"{path}: key {key!r} missing (has {sorted(npz.files)})")
            array = npz[key]
            if not np.issubdtype(array.dtype, dtype) or array.ndim != ndim:
                raise ValueError(
                    f"{path}: key {key!r} has dtype {array.dtype} and shape {array.shape}; "
                    f"expected {np.dtype(dtype).name} with {ndim} dimensions"
                )
            arrays[key] = array
    for split in ("train", "heldout"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise ValueError(f"{path}: {split}_images and {split}_labels differ in length")
    planted = arrays["planted_ids"].astype(np.int64)
    if planted.size and (planted.min() < 0 or planted.max() >= len(arrays["train_labels"])):
        raise ValueError(f"{path}: key 'planted_ids' holds positions outside the train split")
    return TestbedData(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        train_source_indices=arrays["train_source_indices"].astype(np.int64),
        heldout_images=arrays["heldout_images"],
        heldout_labels=arrays["heldout_labels"].astype(np.int64),
        heldout_source_indices=arrays["heldout_source_indices"].astype(np.int64),
        planted_ids=planted,
        class_names=tuple(str(name) for name in arrays["class_names"]),
        path=path,
    )


def to_float_images(images_NHW: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 gray images (N, H, W) -> float32 (N, 3, H, W) in [0, 1], gray copied to 3 channels
    (the models take RGB)."""
    images = torch.as_tensor(images_NHW)
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(f"images_NHW: expected uint8 (N, H, W), got {images.dtype} {tuple(images.shape)}")
    return (images.float() / 255.0).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def training_indices(data: TestbedData, duplication: int = DEFAULT_DUPLICATION) -> np.ndarray:
    """Positions in the train split making up one training epoch: every training image once,
    and each planted image ``duplication`` times in total (so ``N + P * (duplication - 1)``
    entries for P planted images). Sorted; shuffling (seeded) is the trainer's job."""
    if isinstance(duplication, bool) or not isinstance(duplication, (int, np.integer)) or duplication < 1:
        raise ValueError(f"duplication: expected an integer >= 1, got {duplication!r}")
    extra = np.repeat(data.planted_ids, int(duplication) - 1)
    return np.sort(np.concatenate([np.arange(len(data.train_labels)), extra]))


# ---------------------------------------------------------------------------------------------
# 2. ImageNet-style folders
# ---------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderSample:
    """A seeded, per-class uniform sample of ``root/<class_folder>/<image>``.

    Classes are the sub-folders of ``root`` in sorted order (for ImageNet: the synset ids
    ``n01440764`` .. in the standard label order), label = position in that order. From each
    class ``max(1, round(fraction * n_class))`` files are drawn without replacement with
    ``numpy.random.default_rng(seed)``; the paper uses ``fraction=0.01`` of the training set.

    Files that are not images (by extension) or that PIL cannot open are skipped and counted
    (``skipped``, a list of ``(path, reason)``; :meth:`summary`); a non-image file is found when
    listing, an unreadable or truncated image only when it is sampled (every sampled file is
    decoded once, JPEGs at 1/8 size). With ``strict=True`` the first such file raises
    ``ValueError`` naming it. A class folder without image files is always an error.

    Items are ``(PIL RGB image, label)``; apply the family's views (:func:`var_view`,
    :func:`rar_ten_crop`, ...) to the image.
    """

    def __init__(self, root: str | os.PathLike, fraction: float = 0.01, seed: int = 0, strict: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder root not found: {self.root}")
        if not (0.0 < fraction <= 1.0):
            raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
        self.fraction, self.seed, self.strict = fraction, seed, strict
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"{self.root}: no class folders found (expected root/<class_folder>/<image>)")
        self.skipped: list[tuple[Path, str]] = []
        self.samples: list[tuple[Path, int]] = []
        rng = np.random.default_rng(seed)
        for label, name in enumerate(self.classes):
            files = self._list_images(self.root / name)
            n_take = max(1, round(fraction * len(files)))
            chosen = sorted(rng.choice(len(files), size=n_take, replace=False))
            for i in chosen:
                if self._readable(files[i]):
                    self.samples.append((files[i], label))

    def _skip(self, path: Path, reason: str) -> None:
        if self.strict:
            raise ValueError(f"{path}: {reason} (strict=True)")
        self.skipped.append((path, reason))

    def _list_images(self, folder: Path) -> list[Path]:
        files = []
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
            else:
                self._skip(path, "not an image file (extension)")
        if not files:
            raise ValueError(f"class folder {folder} holds no image files")
        return files

    def _readable(self, path: Path) -> bool:
        try:  # a full decode: verify() passes truncated JPEGs; draft() makes a JPEG decode at 1/8 size
            with Image.open(path) as image:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            self._skip(path, f"unreadable image ({type(err).__name__})")
            return False
        return True

    def summary(self) -> str:
        per_class = np.bincount([label for _, label in self.samples], minlength=len(self.classes))
        text = (
            f"{len(self.samples)} images from {len(self.classes)} classes of {self.root} "
            f"(fraction {self.fraction}, seed {self.seed}; per class {per_class.min()}..{per_class.max()}); "
            f"{len(self.skipped)} files skipped"
        )
        if self.skipped:
            text += ": " + "; ".join(f"{path.name} ({reason})" for path, reason in self.skipped[:5])
            text += ", ..." if len(self.skipped) > 5 else ""
        return text

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB"), label
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{path}: unreadable image ({type(err).__name__}: {err}); was it changed after listing?") from err


# ---------------------------------------------------------------------------------------------
# 3. Augmented views (spec/method.md, section 2)
# ---------------------------------------------------------------------------------------------


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 (3, H, W) in [0, 1]."""
    return TF.to_dtype(TF.pil_to_tensor(image.convert("RGB")), torch.float32, scale=True)


def _crop_origin(size: int, crop: int, generator: torch.Generator | None) -> int:
    """Top-left offset of a crop: uniform when a generator is given, centred otherwise."""
    if generator is None:
        return int(round((size - crop) / 2.0))
    return int(torch.randint(0, size - crop + 1, (1,), generator=generator))


def var_view(image: Image.Image, res: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """VAR's training view: resize the shorter side to ``round(1.125 * res)`` with LANCZOS,
    then a random ``res`` crop (the centre crop when ``generator`` is None) -> (3, res, res)."""
    short = round(1.125 * res)
    width, height = image.size
    scale = short / min(width, height)
    resized = image.convert("RGB").resize(
        (max(short, round(width * scale)), max(short, round(height * scale))), Image.LANCZOS
    )
    top = _crop_origin(resized.height, res, generator)
    left = _crop_origin(resized.width, res, generator)
    return _to_tensor(resized.crop((left, top, left + res, top + res)))


def center_crop_arr(image: Image.Image, size: int) -> Image.Image:
    """ADM's centre crop (used by LlamaGen/RAR pre-tokenization): halve with BOX while the
    shorter side is >= 2 * size, resize the shorter side to ``size`` with BICUBIC, crop the centre."""
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def rar_ten_crop(image: Image.Image, res: int) -> torch.Tensor:
    """RAR's ten-crop views: the ``int(1.1 * res)`` centre crop, then torchvision's ten crop of
    size ``res`` (four corners and centre, and the same of the flipped image) -> (10, 3, res, res)."""
    base = _to_tensor(center_crop_arr(image, int(1.1 * res)))
    return torch.stack(TF.ten_crop(base, [res, res]))


def rar_random_view(image: Image.Image, res: int, generator: torch.Generator) -> torch.Tensor:
    """RAR's alternative view: a random ``res`` crop of the ``int(1.1 * res)`` centre crop,
    flipped horizontally with probability 1/2 -> (3, res, res)."""
    base = _to_tensor(center_crop_arr(image, int(1.1 * res)))
    top = _crop_origin(base.shape[1], res, generator)
    left = _crop_origin(base.shape[2], res, generator)
    view = base[:, top : top + res, left : left + res]
    return view.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else view


def testbed_views(image_3HW: torch.Tensor, family: str, n_views: int, generator: torch.Generator) -> torch.Tensor:
    """UnitMem's views of one testbed training image for the ``family``'s model: the image
    itself, ``n_views`` times (the testbed trains without augmentation) -> (n_views, 3, H, W)."""
    return image_3HW.unsqueeze(0).expand(n_views, *image_3HW.shape).clone()


def family_views(
    image: Image.Image, family: str, res: int, n_views: int, generator: torch.Generator | None,
    rar_views: str = "random",
) -> torch.Tensor:
    """``n_views`` augmented views of one image for UnitMem (spec/method.md 2.1) -> (A, 3, res, res).

    VAR: :func:`var_view` with ``generator`` (``None``: every view is the centre crop). RAR:
    ``rar_views="ten-crop"`` the ten-crop views (deterministic, ``n_views`` must be 10);
    ``"random"`` :func:`rar_random_view`, which needs a generator.
    """
    if n_views < 1:
        raise ValueError(f"n_views: expected >= 1, got {n_views}")
    if family == "var":
        return torch.stack([var_view(image, res, generator) for _ in range(n_views)])
    if family == "rar" and rar_views == "ten-crop":
        if n_views != 10:
            raise ValueError(f"n_views: got {n_views}; RAR's ten-crop views are exactly 10")
        return rar_ten_crop(image, res)
    if family == "rar" and rar_views == "random":
        if generator is None:
            raise ValueError("generator: RAR random views need a torch.Generator (or rar_views='ten-crop')")
        return torch.stack([rar_random_view(image, res, generator) for _ in range(n_views)])
    if family == "rar":
        raise ValueError(f"rar_views: expected 'ten-crop' or 'random', got {rar_views!r}")
    raise ValueError(f"family: expected 'var' or 'rar', got {family!r}")
