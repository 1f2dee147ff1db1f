"""Build the testbed data set (data/fashion_mnist_testbed.npz) from the original Fashion-MNIST files.

Only maintainers run this; the output ships in the repository, so readers never need it.
The inputs are the four gzip idx files of the Debian package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``; they land in /usr/share/datasets/fashion-mnist),
byte-identical to the upstream release (their sha256 is checked below).

What is selected, all from one seeded ``numpy.random.default_rng(SEED)``:

- train split: 600 images per class (6,000) from the official training set;
- held-out split: 100 images per class (1,000) from the official test set (the reference
  images of the testbed's FID-like metric);
- planted set, graded: per class one image at each duplication level in ``LEVELS`` (2, 4, 8,
  16 and 32 copies per epoch), so 10 images per level, 50 in all; the copies are not stored,
  each training image's number of copies per epoch is (key ``train_copies``; applied by
  ``memlib.data.training_indices``);
- control group: per class 5 images chosen by the same rule as the planted ones and seen once
  per epoch like every other image (key ``control_ids``): ordinary images that are as
  atypical as the planted ones, the comparison every planted-image figure needs.

Planted copies are 620 of the 6,570 sequences of an epoch (9.4%): memorization is a minority
of the training signal, as in the paper (a few hundred memorized images of 1.28 million).

Planted-set rule (spec/testbed-notes.md, lesson 3: shared prefixes cap extraction). An
extraction attempt gives the model the true first tokens of an image; if two planted images
of a class share them, at most one of the two can be reproduced. The first 8 pixel rows of a
32x32 image are the first two token rows of an 8x8 latent (16 raster tokens). So, per class,
the classes' official training images are visited in a seeded random order and one is
accepted as planted when the mean absolute difference of its first 8 rows (8 x 32 pixels,
gray levels 0..255, after padding) to every already accepted image of that class is at least
``MIN_TOP_ROWS_DIFF``, until ``len(LEVELS) + CONTROL_PER_CLASS`` images are accepted. A second
seeded permutation assigns the accepted images of a class to the levels and the control group.
The accepted images are then part of the class's 600 training images; the other 590 are the
next non-accepted images of the same random order. Most sneakers and sandals have blank top
rows, so their planted and control images are the ones whose top rows are not blank
(atypical images of the class, by construction, in both groups alike).

Images are zero-padded from 28x28 to 32x32 (2 pixels each side), uint8.

The output is written deterministically: the same inputs give the same bytes. It is the
format ``np.savez_compressed`` writes (a zip of ``.npy`` files, read by ``np.load``), but
with fixed zip timestamps, which ``np.savez_compressed`` sets to the current time.

Usage: python scripts/prepare_testbed_data.py [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np

from memlib.results import file_sha256

SEED = 0
TRAIN_PER_CLASS = 600
HELDOUT_PER_CLASS = 100
LEVELS = (2, 4, 8, 16, 32)  # copies per epoch of the planted images; one image per class at each level
CONTROL_PER_CLASS = 5  # never-duplicated images chosen by the planted-set rule
ACCEPTED_PER_CLASS = len(LEVELS) + CONTROL_PER_CLASS
TOP_ROWS = 8
MIN_TOP_ROWS_DIFF = 12.0  # mean |difference| over the first TOP_ROWS rows, gray levels 0..255
PAD = 2  # 28 -> 32
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

DEBIAN_PACKAGE = "dataset-fashion-mnist"
SOURCE_FILES = {  # file name -> sha256 of the upstream release (zalandoresearch/fashion-mnist)
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
OUTPUT_NAME = "fashion_mnist_testbed.npz"


def read_idx(path: Path) -> np.ndarray:
    """A gzip idx file (the MNIST format: magic, dims as big-endian uint32, then uint8 data)."""
    raw = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"{path}: not a uint8 idx file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def debian_package_version() -> str | None:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", DEBIAN_PACKAGE], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def choose_distinct_tops(top_rows_NRW: np.ndarray, order: np.ndarray, n: int) -> list[int]:
    """Greedy over ``order``: accept an image whose top rows differ from every accepted one."""
    accepted: list[int] = []
    for i in order:
        rows = top_rows_NRW[i].astype(np.float32)
        if all(np.abs(rows - top_rows_NRW[j]).mean() >= MIN_TOP_ROWS_DIFF for j in accepted):
            accepted.append(int(i))
            if len(accepted) == n:
                return accepted
    raise ValueError(f"only {len(accepted)} images satisfy the planted-set rule; lower MIN_TOP_ROWS_DIFF")


def select(train_labels: np.ndarray, test_labels: np.ndarray, train_images_pad: np.ndarray, rng: np.random.Generator):
    """Indices into the official sets -> (train split (sorted), {official index: copies per epoch}
    for the planted images, control images (sorted), held-out split (sorted))."""
    train_idx, control_idx, heldout_idx = [], [], []
    planted_copies: dict[int, int] = {}
    top_rows = train_images_pad[:, :TOP_ROWS, :]
    for c in range(len(CLASS_NAMES)):
        order = rng.permutation(np.flatnonzero(train_labels == c))
        accepted = choose_distinct_tops(top_rows, order, ACCEPTED_PER_CLASS)
        assignment = rng.permutation(ACCEPTED_PER_CLASS)  # positions 0..len(LEVELS)-1: the levels; the rest: control
        for position, i in zip(assignment, accepted):
            if position < len(LEVELS):
                planted_copies[i] = LEVELS[position]
            else:
                control_idx.append(i)
        taken = set(accepted)
        others = [int(i) for i in order if i not in taken][: TRAIN_PER_CLASS - ACCEPTED_PER_CLASS]
        train_idx += accepted + others
    for c in range(len(CLASS_NAMES)):
        heldout_idx += rng.permutation(np.flatnonzero(test_labels == c))[:HELDOUT_PER_CLASS].tolist()
    return np.sort(np.array(train_idx)), planted_copies, np.sort(np.array(control_idx)), np.sort(np.array(heldout_idx))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip metadata; written to a temp file, then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, npy_bytes(arrays[key]), compresslevel=9)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def license_notice(copyright_file: Path) -> str:
    header = (
        "Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist)\n"
        "Han Xiao, Kashif Rasul, Roland Vollgraf. Fashion-MNIST: a Novel Image Dataset for\n"
        "Benchmarking Machine Learning Algorithms. arXiv:1708.07747, 2017. Zalando Research.\n\n"
        "The images and labels in data/fashion_mnist_testbed.npz are a subset of Fashion-MNIST,\n"
        "zero-padded from 28x28 to 32x32. Fashion-MNIST is distributed under the MIT licence:\n\n"
        "The MIT License (MIT)\n\nCopyright (c) 2017 Zalando SE, https://tech.zalando.com\n\n"
    )
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = len(lines) - lines[::-1].index("License: Expat")  # after the last one: the licence paragraph
    body = "\n".join("" if ln.strip() == "." else ln.strip() for ln in lines[start:])
    return header + body.strip() + "\n\n(Text taken from the Debian package's copyright file, " + DEBIAN_PACKAGE + ".)\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four original gzip idx files")
    parser.add_argument("--copyright", type=Path, default=Path(f"/usr/share/doc/{DEBIAN_PACKAGE}/copyright"),
                        help="the Debian package's copyright file (source of the licence text)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args(argv)

    source_sha = {}
    for name, expected in SOURCE_FILES.items():
        path = args.source / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (apt-get install {DEBIAN_PACKAGE}, or pass --source)")
        source_sha[name] = file_sha256(path)
        if source_sha[name] != expected:
            raise ValueError(f"{path}: sha256 {source_sha[name]} differs from the upstream release's {expected}")

    train_images = read_idx(args.source / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(args.source / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(args.source / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(args.source / "t10k-labels-idx1-ubyte.gz")
    pad = ((0, 0), (PAD, PAD), (PAD, PAD))
    train_images_pad, test_images_pad = np.pad(train_images, pad), np.pad(test_images, pad)

    rng = np.random.default_rng(SEED)
    train_idx, planted_copies, control_src, heldout_idx = select(train_labels, test_labels, train_images_pad, rng)
    planted_src = np.sort(np.array(list(planted_copies)))
    planted_ids = np.searchsorted(train_idx, planted_src)  # positions in the train split
    control_ids = np.searchsorted(train_idx, control_src)
    train_copies = np.ones(len(train_idx), dtype=np.uint8)
    train_copies[planted_ids] = [planted_copies[int(i)] for i in planted_src]

    arrays = {
        "train_images": train_images_pad[train_idx],
        "train_labels": train_labels[train_idx],
        "train_source_indices": train_idx.astype(np.int32),
        "heldout_images": test_images_pad[heldout_idx],
        "heldout_labels": test_labels[heldout_idx],
        "heldout_source_indices": heldout_idx.astype(np.int32),
        "planted_ids": planted_ids.astype(np.int32),
        "control_ids": control_ids.astype(np.int32),
        "train_copies": train_copies,
        "class_names": np.array(CLASS_NAMES),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / OUTPUT_NAME
    write_npz_deterministic(npz_path, arrays)

    rule = (
        f"per class, visit the official training images in a seeded random order and accept one "
        f"when the mean absolute difference of its first {TOP_ROWS} pixel rows (of the 32x32 padded image, "
        f"gray levels 0..255) to every already accepted image of the class is >= {MIN_TOP_ROWS_DIFF}, until "
        f"{ACCEPTED_PER_CLASS} are accepted; a seeded permutation makes one accepted image per level {list(LEVELS)} "
        f"(copies per epoch) planted and the other {CONTROL_PER_CLASS} the control group (seen once); the other "
        f"{TRAIN_PER_CLASS - ACCEPTED_PER_CLASS} training images of the class are the next non-accepted images "
        f"of the same order"
    )
    labels = arrays["train_labels"]
    provenance = {
        "description": "Testbed subset of Fashion-MNIST for the memorization testbed (see data/README.md)",
        "source": {
            "dataset": "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, Zalando Research)",
            "upstream": "https://github.com/zalandoresearch/fashion-mnist",
            "license": "MIT (data/LICENSE-fashion-mnist.txt)",
            "debian_package": DEBIAN_PACKAGE,
            "debian_package_version": debian_package_version(),
            "files_sha256": source_sha,
        },
        "selection": {
            "script": "scripts/prepare_testbed_data.py",
            "seed": SEED,
            "rng": "numpy.random.default_rng",
            "train_per_class": TRAIN_PER_CLASS,
            "heldout_per_class": HELDOUT_PER_CLASS,
            "heldout_source": "official test set (t10k)",
            "levels": list(LEVELS),
            "control_per_class": CONTROL_PER_CLASS,
            "planted_rule": rule,
            "planted_rule_top_rows": TOP_ROWS,
            "planted_rule_min_mean_abs_diff": MIN_TOP_ROWS_DIFF,
            "padding": "zero, 2 pixels on each side (28x28 -> 32x32)",
            "duplication": "copies are not stored; train_copies holds each training image's copies per epoch "
                           "(1 for every image but the planted ones), applied by memlib.data.training_indices",
        },
        "class_names": CLASS_NAMES,
        "class_counts": {
            "train": np.bincount(labels, minlength=10).tolist(),
            "heldout": np.bincount(arrays["heldout_labels"], minlength=10).tolist(),
            "planted": np.bincount(labels[planted_ids], minlength=10).tolist(),
            "control": np.bincount(labels[control_ids], minlength=10).tolist(),
            "epoch_sequences": int(train_copies.sum()),
            "planted_sequences": int(train_copies[planted_ids].sum()),
        },
        "output": {
            "file": OUTPUT_NAME,
            "sha256": file_sha256(npz_path),
            "bytes": npz_path.stat().st_size,
            "arrays": {
                key: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": hashlib.sha256(npy_bytes(a)).hexdigest()}
                for key, a in sorted(arrays.items())
            },
            "written_with": {"numpy": np.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION},
        },
    }
    write_text(args.out / "PROVENANCE.json", json.dumps(provenance, indent=2) + "\n")
    planted = {
        "description": "The planted set and the control group of data/fashion_mnist_testbed.npz: positions in its "
                       "train split (keys planted_ids, control_ids), positions in the official training file, labels "
                       "and copies per epoch (key train_copies; 1 for the control group and every other image)",
        "rule": rule,
        "levels": list(LEVELS),
        "planted_ids": planted_ids.tolist(),
        "source_indices": planted_src.tolist(),
        "labels": labels[planted_ids].tolist(),
        "copies": train_copies[planted_ids].tolist(),
        "control_ids": control_ids.tolist(),
        "control_source_indices": control_src.tolist(),
        "control_labels": labels[control_ids].tolist(),
    }
    write_text(args.out / "planted_ids.json", json.dumps(planted, indent=2) + "\n")
    write_text(args.out / "LICENSE-fashion-mnist.txt", license_notice(args.copyright))
    print(f"wrote {npz_path} ({npz_path.stat().st_size} bytes, sha256 {provenance['output']['sha256']})")


if __name__ == "__main__":
    main()
