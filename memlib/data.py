"""Images for the two ways of running the project, and each model family's augmentations.

1. The testbed: a Fashion-MNIST subset shipped in ``data/`` (built by
   ``scripts/prepare_testbed_data.py``; see ``data/README.md``), checksum-verified on load.
2. Full scale: an ImageNet-style folder ``root/<wnid>/<image>`` from which a fraction of
   every class is sampled uniformly (the paper: 1% of ImageNet-1k train), labelled by the
   official ImageNet-1k index of each wnid; :func:`sample_across_classes` reduces a sample to
   N items spread across its classes.
3. Augmented views per family (spec/method.md, section 2), each drawn from a
   ``torch.Generator`` passed explicitly, so a seed fixes every view.

The testbed trains and measures WITH its family's augmentation, as the paper's models do
(:func:`testbed_views`): VAR's random crop of the 1.125x resize, RAR's random crop of the 1.1x
resize with a horizontal flip. UnitMem averages ten such views per image, and the attack uses
the family's centre view.

Shapes: N images, H x W pixels; images for the models are float (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .results import file_sha256

# ---------------------------------------------------------------------------------------------
# 1. The testbed
# ---------------------------------------------------------------------------------------------

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TESTBED_FILE = "fashion_mnist_testbed.npz"
PROVENANCE_FILE = "PROVENANCE.json"

_TESTBED_KEYS = {  # key -> (dtype, number of dimensions)
    "train_images": (np.uint8, 3),
    "train_labels": (np.uint8, 1),
    "train_source_indices": (np.int32, 1),
    "heldout_images": (np.uint8, 3),
    "heldout_labels": (np.uint8, 1),
    "heldout_source_indices": (np.int32, 1),
    "planted_ids": (np.int32, 1),
    "control_ids": (np.int32, 1),
    "train_copies": (np.uint8, 1),
    "class_names": (np.str_, 1),
}


@dataclass(frozen=True)
class TestbedData:
    """The testbed set. ``*_images`` are uint8 (N, 32, 32) gray, ``*_labels`` int64 (N,) in
    ``0 .. num_classes - 1``; ``planted_ids`` (the duplicated images) and ``control_ids`` (images
    chosen by the same rule, seen once) are positions in the train split; ``train_copies`` (N,)
    is how often each training image is seen per epoch (its duplication level; 1 for all but
    the planted images); ``*_source_indices`` are positions in the official Fashion-MNIST
    train/test files."""

    train_images: np.ndarray
    train_labels: np.ndarray
    train_source_indices: np.ndarray
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    heldout_source_indices: np.ndarray
    planted_ids: np.ndarray
    control_ids: np.ndarray
    train_copies: np.ndarray
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

    def is_control(self) -> np.ndarray:
        """Boolean mask over the train split: the never-duplicated control group."""
        mask = np.zeros(len(self.train_labels), dtype=bool)
        mask[self.control_ids] = True
        return mask

    @property
    def levels(self) -> tuple[int, ...]:
        """The planted duplication levels (copies per epoch), ascending."""
        return tuple(int(c) for c in np.unique(self.train_copies[self.planted_ids]))

    def groups(self) -> dict[str, np.ndarray]:
        """Train-split positions by group, in dose order: ``control`` (seen once, chosen like the
        planted images), then ``2x``, ``4x``, ... (planted at that many copies per epoch)."""
        out = {"control": np.sort(self.control_ids)}
        for level in self.levels:
            out[f"{level}x"] = np.sort(self.planted_ids[self.train_copies[self.planted_ids] == level])
        return out


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
    n_train = len(arrays["train_labels"])
    for key in ("planted_ids", "control_ids"):
        ids = arrays[key]
        if ids.size and (ids.min() < 0 or ids.max() >= n_train):
            raise ValueError(f"{path}: key {key!r} holds positions outside the train split")
    planted, control, copies = (arrays[k].astype(np.int64) for k in ("planted_ids", "control_ids", "train_copies"))
    if len(copies) != n_train or copies.min() < 1:
        raise ValueError(f"{path}: key 'train_copies' must hold one count >= 1 per training image")
    is_dup = copies > 1
    if set(np.flatnonzero(is_dup).tolist()) != set(planted.tolist()) or is_dup[control].any():
        raise ValueError(f"{path}: keys 'planted_ids' and 'train_copies' disagree (planted = the images with copies > 1)")
    if len(arrays["class_names"]) != int(arrays["train_labels"].max()) + 1:
        raise ValueError(
            f"{path}: key 'class_names' holds {len(arrays['class_names'])} names for labels "
            f"0..{int(arrays['train_labels'].max())}"
        )
    return TestbedData(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        train_source_indices=arrays["train_source_indices"].astype(np.int64),
        heldout_images=arrays["heldout_images"],
        heldout_labels=arrays["heldout_labels"].astype(np.int64),
        heldout_source_indices=arrays["heldout_source_indices"].astype(np.int64),
        planted_ids=planted,
        control_ids=control,
        train_copies=copies,
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


def training_indices(data: TestbedData) -> np.ndarray:
    """Positions in the train split making up one training epoch: image i ``train_copies[i]``
    times (once for all but the planted images). Sorted; shuffling (seeded) is the trainer's job."""
    return np.repeat(np.arange(len(data.train_labels)), data.train_copies)


def testbed_dprime(data: TestbedData, n_images: int, seed: int) -> np.ndarray:
    """D' for UnitMem on the testbed: every planted and control image, filled up to ``n_images``
    with ordinary training images spread across classes (:func:`sample_across_classes`,
    seeded); ``n_images`` 0 or >= the split: every training image. Sorted train positions."""
    n_train = len(data.train_labels)
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 0:
        raise ValueError(f"unitmem_images: expected an integer >= 0 (0: all), got {n_images!r}")
    if n_images == 0 or n_images >= n_train:
        return np.arange(n_train, dtype=np.int64)
    special = np.union1d(data.planted_ids, data.control_ids)
    if n_images < len(special):
        raise ValueError(f"unitmem_images: got {n_images}; D' must hold the {len(special)} planted and control images")
    ordinary = np.setdiff1d(np.arange(n_train), special)
    if n_images == len(special):
        return special.astype(np.int64)
    fill = ordinary[sample_across_classes(data.train_labels[ordinary], n_images - len(special), seed)]
    return np.sort(np.concatenate([special, fill])).astype(np.int64)


def testbed_views(images_NHW: np.ndarray, family: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The family's training view of each testbed image -> float32 (N, 3, H, W) in [0, 1].

    The testbed images are ``H x W`` already, so the views are those of full scale at
    ``res = H``: VAR :func:`var_view` (random crop of the 1.125x LANCZOS resize), RAR
    :func:`rar_random_view` (random crop of the ``int(1.1 * res)`` resize, flipped with
    probability 1/2). With ``generator=None`` every view is the family's centre view (no flip):
    what the attack, stage A and the held-out loss see.
    """
    images = np.asarray(images_NHW)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images_NHW: expected uint8 (N, H, W), got {images.dtype} {images.shape}")
    res = images.shape[1]
    if family == "var":
        view = lambda image: var_view(image, res, generator)  # noqa: E731
    elif family == "rar":
        view = lambda image: rar_random_view(image, res, generator)  # noqa: E731
    else:
        raise ValueError(f"family: expected 'var' or 'rar', got {family!r}")
    return torch.stack([view(Image.fromarray(image, mode="L")) for image in images])


# ---------------------------------------------------------------------------------------------
# 2. ImageNet-style folders
# ---------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")  # 16-bit gray: scaled to 8 bits, not clipped
RGB_CONVERTIBLE_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def mode_problem(mode: str) -> str | None:
    """Why an image of PIL mode ``mode`` cannot become 8-bit RGB faithfully, or None when it can.
    ``.convert("RGB")`` clips 32-bit integer ('I') and float ('F') pixels to 0..255, which turns
    most of an image white or black, so those are refused."""
    if mode in RGB_CONVERTIBLE_MODES or mode in SIXTEEN_BIT_MODES:
        return None
    if mode == "I":
        return "32-bit integer pixels (mode 'I') of unknown bit depth; save it as 8- or 16-bit"
    if mode == "F":
        return "floating-point pixels (mode 'F') of unknown range; save it as 8- or 16-bit"
    return f"PIL mode {mode!r} has no faithful 8-bit RGB conversion"


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of an image whose mode passes :func:`mode_problem`: 16-bit gray is scaled,
    ``round(v * 255 / 65535)`` (0 -> 0, 65535 -> 255), every other mode by PIL's ``convert``."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.uint32)
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    return image.convert("RGB")

# The 1000 ImageNet-1k wnids in official index order, byte-identical to timm 1.0.31's
# timm/data/_info/imagenet_synsets.txt (provenance: imagenet_wnids.provenance.json beside it).
IMAGENET_WNIDS_FILE = Path(__file__).resolve().with_name("imagenet_wnids.txt")
IMAGENET_WNIDS_SHA256 = "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"
CLASS_IDS = ("wnid", "sorted")  # how ImageFolderSample labels its class folders


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The ImageNet-1k wnids: entry ``i`` is the class with official index ``i`` (0
    ``n01440764`` tench, 217 ``n02102040`` English springer, 999 ``n15075141`` toilet tissue).
    Read from ``memlib/imagenet_wnids.txt``, whose sha256 must match the recorded one."""
    actual = file_sha256(IMAGENET_WNIDS_FILE)
    if actual != IMAGENET_WNIDS_SHA256:
        raise ValueError(f"{IMAGENET_WNIDS_FILE}: sha256 {actual}, expected {IMAGENET_WNIDS_SHA256} "
                         "(a modified file; restore it from git)")
    return tuple(IMAGENET_WNIDS_FILE.read_text(encoding="ascii").split())


def sample_across_classes(labels: np.ndarray | list[int], n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` of the items with these ``labels``, spread across classes: classes are
    visited round-robin in a seeded random order, one item per class per round (each class's
    items in a seeded random order), and a class whose items run out drops out. So every class
    gets ``n // K`` or one more item while it has them, and with ``n < K`` classes the ``n``
    classes are a seeded random choice, not the first ones. ``n >= len(labels)``: every
    position. Deterministic in (labels, n, seed); returns sorted int64 positions."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels: expected a 1-d array of integer class labels, got dtype {labels.dtype} shape {labels.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    class_turn = np.empty(len(labels), dtype=np.int64)  # the class's place in the visiting order
    round_index = np.empty(len(labels), dtype=np.int64)  # the round in which the item is taken
    for turn, label in enumerate(rng.permutation(classes)):
        members = rng.permutation(np.flatnonzero(labels == label))
        class_turn[members] = turn
        round_index[members] = np.arange(len(members))
    order = np.lexsort((class_turn, round_index))  # by round, then by the class's turn
    return np.sort(order[:n]).astype(np.int64)


class ImageFolderSample:
    """A seeded, per-class uniform sample of ``root/<class_folder>/<image>``, listed without
    decoding a single image.

    Classes are the sub-folders of ``root``. With ``class_ids="wnid"`` (the default) every
    folder must be named by an ImageNet-1k wnid (``n01440764``, ...) and its label is that
    wnid's official index (:func:`imagenet_wnids`), so a folder holding only some classes still
    feeds the model the right class ids; a folder with another name is an error naming it.
    ``class_ids="sorted"`` (for folders of other classes) labels the sorted folder names
    ``0 .. K-1``. ``class_labels`` holds the label of each of ``classes`` (sorted folder
    names), and :meth:`summary` says which classes the folder covers. From each
    class ``max(1, round(fraction * n_class))`` files are drawn without replacement with
    ``numpy.random.default_rng(seed)``; the paper uses ``fraction=0.01`` of the training set.

    Listing reads names and sizes only: files that are not images (by extension) and broken
    symbolic links are skipped and counted then (``skipped``, a list of ``(path, reason)``). A
    file PIL cannot decode, an image whose mode has no faithful 8-bit RGB conversion
    (:func:`mode_problem`: 32-bit integer or float pixels) or a decompression bomb (more than
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels) is found when it is read: :meth:`read` returns the
    problem, :meth:`readable` checks given positions (JPEGs decoded at 1/8 size) and
    :meth:`skip` records one (a stage that reads in worker processes reports them here), so
    every image is decoded only when a stage needs it, after its cache check. With
    ``strict=True`` the first such file raises ``ValueError`` naming it. A class folder without
    image files is an error when listing; one none of whose checked files is readable, when
    checking. ``unreadable`` holds the positions found unreadable so far.

    Items are ``(PIL RGB image, label)`` (16-bit gray scaled to 8 bits, :func:`to_rgb`); apply the
    family's views (:func:`var_view`, :func:`rar_ten_crop`, ...) to the image.
    """

    def __init__(self, root: str | os.PathLike, fraction: float = 0.01, seed: int = 0, strict: bool = False,
                 class_ids: str = "wnid"):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"image folder root {self.root} is a file; expected a folder root/<class_folder>/<image>")
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder root not found: {self.root}")
        if not (0.0 < fraction <= 1.0):
            raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
        if class_ids not in CLASS_IDS:
            raise ValueError(f"class_ids: expected one of {CLASS_IDS}, got {class_ids!r}")
        self.fraction, self.seed, self.strict, self.class_ids = fraction, seed, strict, class_ids
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"{self.root}: no class folders found (expected root/<class_folder>/<image>)")
        self.class_labels = self._class_labels()
        self.skipped: list[tuple[Path, str]] = []
        self.unreadable: set[int] = set()
        self.samples: list[tuple[Path, int]] = []
        rng = np.random.default_rng(seed)
        for label, name in zip(self.class_labels, self.classes):
            files = self._list_images(self.root / name)
            n_take = max(1, round(fraction * len(files)))
            self.samples.extend((files[i], label) for i in sorted(rng.choice(len(files), size=n_take, replace=False)))

    def _class_labels(self) -> tuple[int, ...]:
        if self.class_ids == "sorted":
            return tuple(range(len(self.classes)))
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        unknown = [name for name in self.classes if name not in index]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ValueError(
                f"{self.root}: class folder(s) {shown} are not ImageNet-1k wnids (class_ids='wnid' expects "
                "folders named like n01440764; for a folder of other classes use class_ids='sorted', which "
                "labels the sorted folder names 0..K-1)"
            )
        return tuple(index[name] for name in self.classes)

    def _record(self, path: Path, reason: str) -> None:
        if self.strict:
            raise ValueError(f"{path}: {reason} (strict=True)")
        self.skipped.append((path, reason))

    def skip(self, index: int, reason: str) -> None:
        """Record that the image at position ``index`` is unreadable for ``reason`` (raises
        ``ValueError`` naming the file with ``strict=True``)."""
        if index not in self.unreadable:
            self._record(self.samples[index][0], reason)
            self.unreadable.add(index)

    def _list_images(self, folder: Path) -> list[Path]:
        files = []
        for path in sorted(folder.iterdir()):
            if path.is_symlink() and not path.exists():
                self._record(path, "broken symbolic link")
                continue
            if not path.is_file():
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
            else:
                self._record(path, "not an image file (extension)")
        if not files:
            raise ValueError(f"class folder {folder} holds no image files")
        return files

    def read(self, index: int, draft: bool = False) -> tuple[Image.Image | None, int, str | None]:
        """``(RGB image, label, None)``, or ``(None, label, problem)`` when the file cannot be
        read faithfully. ``draft``: a JPEG is decoded at 1/8 size (a cheaper check)."""
        path, label = self.samples[index]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    problem = mode_problem(image.mode)
                    if problem is None:
                        if draft:
                            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                        return to_rgb(image), label, None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            problem = f"decompression bomb ({err})"
        except _DECODE_ERRORS as err:
            problem = f"unreadable image ({type(err).__name__})"
        return None, label, problem

    def readable(self, indices=None) -> list[int]:
        """The positions among ``indices`` (default: all) whose images decode (a full decode,
        JPEGs at 1/8 size: ``verify()`` passes truncated JPEGs); the others are recorded by
        :meth:`skip`. A class none of whose checked images decodes is an error naming its folder."""
        indices = range(len(self)) if indices is None else indices
        ok, checked = [], {}
        for index in map(int, indices):
            label = self.samples[index][1]
            checked[label] = checked.get(label, 0) + 1
            if index in self.unreadable:
                continue
            problem = self.read(index, draft=True)[2]
            if problem is None:
                ok.append(index)
            else:
                self.skip(index, problem)
        for label in set(checked) - {self.samples[i][1] for i in ok}:
            folder = self.root / self.classes[self.class_labels.index(label)]
            path, reason = next((p, r) for p, r in reversed(self.skipped) if p.parent == folder)
            raise ValueError(f"class folder {folder}: none of the {checked[label]} image files checked is readable, "
                             f"so the class would have no images (e.g. {path.name}: {reason})")
        return ok

    def labels(self) -> np.ndarray:
        """The label of every position (int64), from the listing: nothing is decoded."""
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def listing(self) -> str:
        """One line ``relative path|size|label`` per position: what names the sample in a cache key."""
        return "\n".join(f"{p.relative_to(self.root).as_posix()}|{p.stat().st_size}|{label}" for p, label in self.samples)

    def coverage(self) -> str:
        """Which classes the labels are: ImageNet-1k indices (all 1000, or which of them) or
        sorted positions."""
        if self.class_ids == "sorted":
            return f"labels 0..{len(self.classes) - 1}: positions of the sorted folder names (class_ids='sorted')"
        n_all = len(imagenet_wnids())
        if len(self.classes) == n_all:
            return f"all {n_all} ImageNet-1k classes, labelled by official index"
        shown = ", ".join(f"{name}={label}" for name, label in zip(self.classes[:10], self.class_labels[:10]))
        more = f", ... ({len(self.classes) - 10} more)" if len(self.classes) > 10 else ""
        return (f"{len(self.classes)} of {n_all} ImageNet-1k classes, labelled by official index "
                f"(wnid=index: {shown}{more})")

    def summary(self) -> str:
        """Images (less those found unreadable so far), classes, per-class counts, coverage and
        the files skipped so far."""
        folder_of_label = {label: i for i, label in enumerate(self.class_labels)}
        kept = [label for i, (_, label) in enumerate(self.samples) if i not in self.unreadable]
        per_class = np.bincount([folder_of_label[label] for label in kept], minlength=len(self.classes))
        text = (
            f"{len(kept)} images from {len(self.classes)} classes of {self.root} "
            f"(fraction {self.fraction}, seed {self.seed}; per class {per_class.min()}..{per_class.max()}); "
            f"{self.coverage()}; {len(self.skipped)} files skipped"
        )
        if self.skipped:
            text += ": " + "; ".join(f"{path.name} ({reason})" for path, reason in self.skipped[:5])
            text += ", ..." if len(self.skipped) > 5 else ""
        return text

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image, label, problem = self.read(index)
        if problem is not None:
            raise ValueError(f"{self.samples[index][0]}: {problem}; was it changed after it was checked?")
        return image, label


# ---------------------------------------------------------------------------------------------
# 3. Augmented views (spec/method.md, section 2)
# ---------------------------------------------------------------------------------------------


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 (3, H, W) in [0, 1], bit-equal to torchvision's ``ToTensor`` (which
    the official VAR and RAR pipelines use): a division by 255, not a multiplication by 1/255."""
    pixels_HWC = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8))
    return pixels_HWC.permute(2, 0, 1).to(torch.float32).div(255)


def _crop_origin(size: int, crop: int, generator: torch.Generator | None) -> int:
    """Top-left offset of a crop: uniform when a generator is given, centred otherwise."""
    if generator is None:
        return int(round((size - crop) / 2.0))
    return int(torch.randint(0, size - crop + 1, (1,), generator=generator))


def resize_shorter_side(image: Image.Image, short: int, resample: int) -> Image.Image:
    """torchvision's ``Resize(short)`` on a PIL image: the shorter side becomes ``short``, the
    longer ``int(short * long / shorter)`` (truncated, as torchvision computes it), resampled
    by PIL with ``resample``."""
    width, height = image.size
    if width <= height:
        size = (short, int(short * height / width))
    else:
        size = (int(short * width / height), short)
    return image.resize(size, resample)


def var_view(image: Image.Image, res: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """VAR's training view (VAR's utils/data.py): torchvision ``Resize(round(1.125 * res),
    LANCZOS)``, then ``RandomCrop(res)`` (``CenterCrop(res)`` when ``generator`` is None),
    ``ToTensor`` -> (3, res, res). Equal to torchvision's transforms to the pixel; the crop
    draws its offsets top first, then left, as ``RandomCrop`` does."""
    resized = resize_shorter_side(image.convert("RGB"), round(1.125 * res), Image.LANCZOS)
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


def _five_crop(image_CHW: torch.Tensor, res: int) -> list[torch.Tensor]:
    """torchvision's ``five_crop``: the top-left, top-right, bottom-left, bottom-right and
    centre ``res`` x ``res`` crops, in that order (the centre offset rounded as ``CenterCrop``)."""
    height, width = image_CHW.shape[-2:]
    top, left = _crop_origin(height, res, None), _crop_origin(width, res, None)
    origins = [(0, 0), (0, width - res), (height - res, 0), (height - res, width - res), (top, left)]
    return [image_CHW[..., y:y + res, x:x + res] for y, x in origins]


def rar_ten_crop(image: Image.Image, res: int) -> torch.Tensor:
    """RAR's ten-crop views: the ``int(1.1 * res)`` centre crop, then torchvision's ten crop of
    size ``res`` (four corners and centre, and the same of the flipped image) -> (10, 3, res, res).
    Written out rather than imported: importing torchvision's transforms costs every process
    that imports memlib about two seconds (it loads torch._dynamo)."""
    base_CHW = _to_tensor(center_crop_arr(image, int(1.1 * res)))
    return torch.stack(_five_crop(base_CHW, res) + _five_crop(base_CHW.flip(-1), res))


def rar_attack_view(image: Image.Image, res: int) -> torch.Tensor:
    """The RAR image the extraction attack compares a generation with (Kowalczuk et al.'s
    RAR data loader): torchvision ``Resize(res, BICUBIC)``, ``CenterCrop(res)``, ``ToTensor``
    -> (3, res, res). The alternative is the centre view of :func:`rar_ten_crop` (the centre
    ``res`` crop of the ``int(1.1 * res)`` ADM crop), what RAR trains on."""
    resized = resize_shorter_side(image.convert("RGB"), res, Image.BICUBIC)
    top = _crop_origin(resized.height, res, None)
    left = _crop_origin(resized.width, res, None)
    return _to_tensor(resized.crop((left, top, left + res, top + res)))


RAR_ATTACK_CROPS = ("resize-centre", "ten-crop-centre")  # rar_crop of attack_view


def attack_view(image: Image.Image, family: str, res: int, rar_crop: str = "resize-centre") -> torch.Tensor:
    """The training image the extraction attack compares a generation with -> (3, res, res).
    VAR: the centre :func:`var_view` (the attack paper's VAR loader is VAR's centre-crop
    transform). RAR: ``rar_crop="resize-centre"`` (the attack paper's, :func:`rar_attack_view`)
    or ``"ten-crop-centre"`` (the centre view of :func:`rar_ten_crop`)."""
    if rar_crop not in RAR_ATTACK_CROPS:
        raise ValueError(f"rar_crop: expected one of {RAR_ATTACK_CROPS}, got {rar_crop!r}")
    if family == "var":
        return var_view(image, res, None)
    if family == "rar":
        return rar_attack_view(image, res) if rar_crop == "resize-centre" else rar_ten_crop(image, res)[4]
    raise ValueError(f"family: expected 'var' or 'rar', got {family!r}")


def rar_random_view(image: Image.Image, res: int, generator: torch.Generator | None) -> torch.Tensor:
    """RAR's alternative view: a random ``res`` crop of the ``int(1.1 * res)`` centre crop,
    flipped horizontally with probability 1/2 -> (3, res, res). ``generator=None``: the centre
    crop, not flipped."""
    base = _to_tensor(center_crop_arr(image, int(1.1 * res)))
    top = _crop_origin(base.shape[1], res, generator)
    left = _crop_origin(base.shape[2], res, generator)
    view = base[:, top : top + res, left : left + res]
    if generator is None:
        return view
    return view.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else view


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


VIEW_FUNCTIONS = (testbed_views, _to_tensor, _crop_origin, resize_shorter_side, var_view, center_crop_arr,
                  rar_ten_crop, rar_attack_view, attack_view, rar_random_view, family_views)
"""Every function that turns a training image into what a model sees (views, crops, the attack's
ground truth): their source code names the views in a stage's cache key (:func:`views_identity`)."""


def views_identity() -> str:
    """sha256 of the source of :data:`VIEW_FUNCTIONS`: a change to how images are viewed changes
    the cache key of every stage that reads images, so no result computed with other views is reused."""
    return hashlib.sha256("\n".join(inspect.getsource(f) for f in VIEW_FUNCTIONS).encode("utf-8")).hexdigest()
