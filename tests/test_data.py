"""Tests of memlib.data: the shipped testbed set, the ImageNet-style folder sample, the views."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from memlib import data as mdata
from memlib.results import file_sha256

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def testbed():
    return mdata.load_testbed(DATA_DIR / mdata.TESTBED_FILE)


def test_testbed_shapes_dtypes_and_counts(testbed):
    assert testbed.train_images.shape == (3000, 32, 32) and testbed.train_images.dtype == np.uint8
    assert testbed.heldout_images.shape == (1000, 32, 32) and testbed.heldout_images.dtype == np.uint8
    assert testbed.num_classes == 10 and testbed.class_names[0] == "T-shirt/top"
    for labels, per_class in ((testbed.train_labels, 300), (testbed.heldout_labels, 100)):
        assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
        assert np.bincount(labels).tolist() == [per_class] * 10
    # 28x28 originals zero-padded by 2 pixels on every side
    assert testbed.train_images[:, :2].max() == 0 and testbed.train_images[:, :, -2:].max() == 0
    # distinct source images within each split
    assert len(np.unique(testbed.train_source_indices)) == 3000
    assert len(np.unique(testbed.heldout_source_indices)) == 1000


def test_default_path_is_the_shipped_file(testbed):
    assert mdata.load_testbed().path == testbed.path


def test_planted_ids_valid_and_top_rows_unique_within_class(testbed):
    planted = testbed.planted_ids
    assert len(planted) == 50 and len(np.unique(planted)) == 50
    assert np.bincount(testbed.train_labels[planted], minlength=10).tolist() == [5] * 10
    assert testbed.is_planted().sum() == 50
    listed = json.loads((DATA_DIR / "planted_ids.json").read_text())
    assert listed["planted_ids"] == planted.tolist()
    assert listed["source_indices"] == testbed.train_source_indices[planted].tolist()
    rule = json.loads((DATA_DIR / "PROVENANCE.json").read_text())["selection"]
    rows, threshold = rule["planted_rule_top_rows"], rule["planted_rule_min_mean_abs_diff"]
    top = testbed.train_images[planted, :rows].astype(np.float64)
    for c in range(10):
        in_class = top[testbed.train_labels[planted] == c]
        diffs = np.abs(in_class[:, None] - in_class[None]).mean(axis=(2, 3))
        off_diagonal = diffs[~np.eye(len(in_class), dtype=bool)]
        assert off_diagonal.min() >= threshold, f"class {c}: planted top rows too similar"


def test_checksum_mismatch_names_the_file(tmp_path):
    shutil.copy(DATA_DIR / "PROVENANCE.json", tmp_path / "PROVENANCE.json")
    corrupted = tmp_path / mdata.TESTBED_FILE
    raw = bytearray((DATA_DIR / mdata.TESTBED_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"checksum mismatch for .*fashion_mnist_testbed\.npz"):
        mdata.load_testbed(corrupted)


def test_missing_key_is_named(tmp_path):
    npz = tmp_path / mdata.TESTBED_FILE
    with np.load(DATA_DIR / mdata.TESTBED_FILE) as src:
        np.savez(npz, **{k: src[k] for k in src.files if k != "planted_ids"})
    provenance = json.loads((DATA_DIR / "PROVENANCE.json").read_text())
    provenance["output"]["sha256"] = file_sha256(npz)
    (tmp_path / "PROVENANCE.json").write_text(json.dumps(provenance))
    with pytest.raises(ValueError, match="'planted_ids' missing"):
        mdata.load_testbed(npz)


def test_missing_provenance_is_named(tmp_path):
    shutil.copy(DATA_DIR / mdata.TESTBED_FILE, tmp_path / mdata.TESTBED_FILE)
    with pytest.raises(FileNotFoundError, match="PROVENANCE.json"):
        mdata.load_testbed(tmp_path / mdata.TESTBED_FILE)


def test_float_images(testbed):
    images = mdata.to_float_images(testbed.train_images[:4])
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 2])
    assert torch.allclose(images[:, 1] * 255, torch.as_tensor(testbed.train_images[:4]).float())
    with pytest.raises(ValueError, match="images_NHW"):
        mdata.to_float_images(testbed.train_images[:4].astype(np.float32))


@pytest.mark.parametrize("duplication", [1, 2, 20])
def test_training_indices_counts(testbed, duplication):
    indices = mdata.training_indices(testbed, duplication)
    assert len(indices) == 3000 + 50 * (duplication - 1)
    counts = np.bincount(indices, minlength=3000)
    assert (counts[testbed.planted_ids] == duplication).all()
    assert (counts[~testbed.is_planted()] == 1).all()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_training_indices_rejects_bad_duplication(testbed, bad):
    with pytest.raises(ValueError, match="duplication"):
        mdata.training_indices(testbed, bad)


# ---- ImageNet-style folders -----------------------------------------------------------------


def _make_folder(root: Path, per_class: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, n in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{i:02d}.png")


def test_folder_sample_classes_fraction_and_seed(tmp_path):
    _make_folder(tmp_path, {"n02": 10, "n01": 20, "n03": 4})
    sample = mdata.ImageFolderSample(tmp_path, fraction=0.5, seed=1)
    assert sample.classes == ["n01", "n02", "n03"]
    assert np.bincount([label for _, label in sample.samples]).tolist() == [10, 5, 2]
    assert all(path.parent.name == sample.classes[label] for path, label in sample.samples)
    again = mdata.ImageFolderSample(tmp_path, fraction=0.5, seed=1)
    other = mdata.ImageFolderSample(tmp_path, fraction=0.5, seed=2)
    assert again.samples == sample.samples and other.samples != sample.samples
    image, label = sample[0]
    assert image.mode == "RGB" and image.size == (16, 12) and label == 0
    # at least one image per class even for a tiny fraction
    assert len(mdata.ImageFolderSample(tmp_path, fraction=0.01)) == 3


def test_folder_sample_skips_bad_files_and_strict_raises(tmp_path):
    _make_folder(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0)
    assert len(sample) == 6
    assert sorted(path.name for path, _ in sample.skipped) == ["broken.png", "notes.txt"]
    assert "2 files skipped" in sample.summary()
    with pytest.raises(ValueError, match=r"notes\.txt"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True)
    (tmp_path / "a" / "notes.txt").unlink()
    with pytest.raises(ValueError, match=r"broken\.png"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True)


def test_folder_sample_empty_class_names_the_folder(tmp_path):
    _make_folder(tmp_path, {"a": 2})
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        mdata.ImageFolderSample(tmp_path)
    with pytest.raises(ValueError, match="fraction"):
        mdata.ImageFolderSample(tmp_path / "a", fraction=0.0)


# ---- views ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo():
    """A 48x40 (W x H) RGB image with a diagonal gradient, so crops at different offsets differ."""
    x = np.linspace(0, 160, 48)[None, :, None]
    y = np.linspace(0, 80, 40)[:, None, None]
    channels = np.array([0.0, 10.0, 15.0])
    return Image.fromarray((x + y + channels).astype(np.uint8))


def test_var_view_shape_and_seed(photo):
    res = 16
    views = [mdata.var_view(photo, res, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert views[0].shape == (3, res, res) and views[0].dtype == torch.float32
    assert 0.0 <= views[0].min() and views[0].max() <= 1.0
    assert torch.equal(views[0], views[1])
    g = torch.Generator().manual_seed(0)
    many = torch.stack([mdata.var_view(photo, res, g) for _ in range(8)])
    assert len({tuple(v.flatten().tolist()) for v in many}) > 1  # random crops differ
    assert torch.equal(mdata.var_view(photo, res), mdata.var_view(photo, res))  # centre crop


def test_var_view_resizes_shorter_side(photo):
    # shorter side 40 -> round(1.125 * 32) = 36, longer 48 -> 43; a 32 crop fits
    assert mdata.var_view(photo, 32).shape == (3, 32, 32)


def test_rar_ten_crop(photo):
    views = mdata.rar_ten_crop(photo, 16)
    assert views.shape == (10, 3, 16, 16)
    # views 5..9 are the horizontally flipped image's crops: flipped top-left crop = top-right crop mirrored
    assert torch.equal(views[5], views[1].flip(-1))
    assert torch.equal(views[4], mdata.rar_ten_crop(photo, 16)[4])


def test_family_views_and_testbed_views(photo):
    var_a = mdata.family_views(photo, "var", 16, 10, torch.Generator().manual_seed(5))
    var_b = mdata.family_views(photo, "var", 16, 10, torch.Generator().manual_seed(5))
    assert var_a.shape == (10, 3, 16, 16) and torch.equal(var_a, var_b)
    # the views of one image come from one generator, in order: view a is the a-th draw
    g = torch.Generator().manual_seed(5)
    assert torch.equal(var_a, torch.stack([mdata.var_view(photo, 16, g) for _ in range(10)]))
    rar_random = mdata.family_views(photo, "rar", 16, 4, torch.Generator().manual_seed(5))
    assert rar_random.shape == (4, 3, 16, 16)
    assert torch.equal(rar_random, mdata.family_views(photo, "rar", 16, 4, torch.Generator().manual_seed(5)))
    ten = mdata.family_views(photo, "rar", 16, 10, None, rar_views="ten-crop")
    assert torch.equal(ten, mdata.rar_ten_crop(photo, 16))
    # ten views are not ten crops unless asked for: random views by default
    assert not torch.equal(mdata.family_views(photo, "rar", 16, 10, torch.Generator().manual_seed(5)), ten)
    with pytest.raises(ValueError, match="ten-crop views are exactly 10"):
        mdata.family_views(photo, "rar", 16, 4, None, rar_views="ten-crop")
    with pytest.raises(ValueError, match="rar_views"):
        mdata.family_views(photo, "rar", 16, 4, None, rar_views="five-crop")
    with pytest.raises(ValueError, match="generator"):
        mdata.family_views(photo, "rar", 16, 4, None)
    with pytest.raises(ValueError, match="family"):
        mdata.family_views(photo, "vqgan", 16, 4, None)
    image = torch.rand(3, 8, 8)
    views = mdata.testbed_views(image, "rar", 3, torch.Generator().manual_seed(0))
    assert views.shape == (3, 3, 8, 8) and all(torch.equal(v, image) for v in views)
