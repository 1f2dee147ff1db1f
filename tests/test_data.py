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
    assert testbed.train_images.shape == (6000, 32, 32) and testbed.train_images.dtype == np.uint8
    assert testbed.heldout_images.shape == (1000, 32, 32) and testbed.heldout_images.dtype == np.uint8
    assert testbed.num_classes == 10 and testbed.class_names[0] == "T-shirt/top"
    for labels, per_class in ((testbed.train_labels, 600), (testbed.heldout_labels, 100)):
        assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
        assert np.bincount(labels).tolist() == [per_class] * 10
    # 28x28 originals zero-padded by 2 pixels on every side
    assert testbed.train_images[:, :2].max() == 0 and testbed.train_images[:, :, -2:].max() == 0
    # distinct source images within each split
    assert len(np.unique(testbed.train_source_indices)) == 6000
    assert len(np.unique(testbed.heldout_source_indices)) == 1000


def test_default_path_is_the_shipped_file(testbed):
    assert mdata.load_testbed().path == testbed.path


def test_graded_duplication_levels_and_control_group(testbed):
    assert testbed.levels == (2, 4, 8, 16, 32)  # at least 4 levels spanning 2 to 32 copies
    groups = testbed.groups()
    assert list(groups) == ["control", "2x", "4x", "8x", "16x", "32x"]
    for name, ids in groups.items():
        per_class = np.bincount(testbed.train_labels[ids], minlength=10).tolist()
        assert per_class == ([5] * 10 if name == "control" else [1] * 10), name  # spread over classes
    assert not np.intersect1d(testbed.planted_ids, testbed.control_ids).size
    assert (testbed.train_copies[testbed.control_ids] == 1).all()
    # planted copies are a minority of the training sequences (at most 10%)
    assert testbed.train_copies[testbed.planted_ids].sum() / testbed.train_copies.sum() <= 0.10
    listed = json.loads((DATA_DIR / "planted_ids.json").read_text())
    assert listed["planted_ids"] == testbed.planted_ids.tolist()
    assert listed["copies"] == testbed.train_copies[testbed.planted_ids].tolist()
    assert listed["control_ids"] == testbed.control_ids.tolist()
    assert listed["source_indices"] == testbed.train_source_indices[testbed.planted_ids].tolist()


def test_planted_and_control_top_rows_unique_within_class(testbed):
    chosen = np.concatenate([testbed.planted_ids, testbed.control_ids])
    rule = json.loads((DATA_DIR / "PROVENANCE.json").read_text())["selection"]
    rows, threshold = rule["planted_rule_top_rows"], rule["planted_rule_min_mean_abs_diff"]
    top = testbed.train_images[chosen, :rows].astype(np.float64)
    for c in range(10):
        in_class = top[testbed.train_labels[chosen] == c]
        diffs = np.abs(in_class[:, None] - in_class[None]).mean(axis=(2, 3))
        off_diagonal = diffs[~np.eye(len(in_class), dtype=bool)]
        assert off_diagonal.min() >= threshold, f"class {c}: chosen top rows too similar"


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


def test_training_indices_repeat_each_image_by_its_copies(testbed):
    indices = mdata.training_indices(testbed)
    counts = np.bincount(indices, minlength=6000)
    assert (counts == testbed.train_copies).all() and len(indices) == 6000 + 10 * (1 + 3 + 7 + 15 + 31)
    assert (np.diff(indices) >= 0).all()


def test_inconsistent_planted_ids_and_copies_are_refused(tmp_path):
    npz = tmp_path / mdata.TESTBED_FILE
    with np.load(DATA_DIR / mdata.TESTBED_FILE) as src:
        arrays = {k: src[k] for k in src.files}
    arrays["train_copies"] = arrays["train_copies"].copy()
    arrays["train_copies"][arrays["control_ids"][0]] = 4  # a control image that is duplicated
    np.savez(npz, **arrays)
    provenance = json.loads((DATA_DIR / "PROVENANCE.json").read_text())
    provenance["output"]["sha256"] = file_sha256(npz)
    (tmp_path / "PROVENANCE.json").write_text(json.dumps(provenance))
    with pytest.raises(ValueError, match="'planted_ids' and 'train_copies' disagree"):
        mdata.load_testbed(npz)


@pytest.mark.parametrize("family", ["var", "rar"])
def test_testbed_views_are_the_family_augmentation(testbed, family):
    images = testbed.train_images[:3]
    centre = mdata.testbed_views(images, family)
    assert centre.shape == (3, 3, 32, 32) and centre.dtype == torch.float32
    pil = Image.fromarray(images[1], mode="L")
    expected = mdata.var_view(pil, 32) if family == "var" else mdata.rar_random_view(pil, 32, None)
    assert torch.equal(centre[1], expected)  # the centre view is the full-scale view at res 32
    views_a = mdata.testbed_views(images, family, torch.Generator().manual_seed(5))
    views_b = mdata.testbed_views(images, family, torch.Generator().manual_seed(5))
    assert torch.equal(views_a, views_b)  # seeded
    many = torch.stack([mdata.testbed_views(images[:1], family, torch.Generator().manual_seed(s))[0] for s in range(8)])
    assert len({tuple(v.flatten()[::37].tolist()) for v in many}) > 1  # the views differ from draw to draw
    with pytest.raises(ValueError, match="family"):
        mdata.testbed_views(images, "dit")


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
    sample = mdata.ImageFolderSample(tmp_path, fraction=0.5, seed=1, class_ids="sorted")
    assert sample.classes == ["n01", "n02", "n03"] and sample.class_labels == (0, 1, 2)
    assert np.bincount([label for _, label in sample.samples]).tolist() == [10, 5, 2]
    assert all(path.parent.name == sample.classes[label] for path, label in sample.samples)
    again = mdata.ImageFolderSample(tmp_path, fraction=0.5, seed=1, class_ids="sorted")
    other = mdata.ImageFolderSample(tmp_path, fraction=0.5, seed=2, class_ids="sorted")
    assert again.samples == sample.samples and other.samples != sample.samples
    image, label = sample[0]
    assert image.mode == "RGB" and image.size == (16, 12) and label == 0
    # at least one image per class even for a tiny fraction
    assert len(mdata.ImageFolderSample(tmp_path, fraction=0.01, class_ids="sorted")) == 3
    assert "labels 0..2: positions of the sorted folder names" in sample.summary()


def test_folder_sample_skips_bad_files_and_strict_raises(tmp_path):
    _make_folder(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, class_ids="sorted")
    # listing skips the non-image at once; the undecodable file is found when read
    assert len(sample) == 7 and [path.name for path, _ in sample.skipped] == ["notes.txt"]
    assert sample.read(3)[2] == "unreadable image (UnidentifiedImageError)" and sample.read(3)[0] is None
    readable = sample.readable()
    assert len(readable) == 6 and 3 not in readable and sample.unreadable == {3}
    assert sorted(path.name for path, _ in sample.skipped) == ["broken.png", "notes.txt"]
    assert "6 images from 2 classes" in sample.summary() and "2 files skipped" in sample.summary()
    with pytest.raises(ValueError, match=r"broken\.png: unreadable image"):
        sample[3]
    with pytest.raises(ValueError, match=r"notes\.txt"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted")
    (tmp_path / "a" / "notes.txt").unlink()
    strict = mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted")
    with pytest.raises(ValueError, match=r"broken\.png"):
        strict.readable()


def test_folder_sample_empty_class_names_the_folder(tmp_path):
    _make_folder(tmp_path, {"a": 2})
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        mdata.ImageFolderSample(tmp_path, class_ids="sorted")
    with pytest.raises(ValueError, match="fraction"):
        mdata.ImageFolderSample(tmp_path / "a", fraction=0.0)


def test_imagenet_wnids_file_hash_provenance_and_official_anchors():
    import hashlib

    raw = mdata.IMAGENET_WNIDS_FILE.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"
    provenance = json.loads(mdata.IMAGENET_WNIDS_FILE.with_name("imagenet_wnids.provenance.json").read_text())
    assert provenance["sha256"] == hashlib.sha256(raw).hexdigest() and provenance["source"]["package"] == "timm"
    wnids = mdata.imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and list(wnids) == sorted(wnids)
    anchors = {0: "n01440764", 1: "n01443537", 217: "n02102040", 999: "n15075141"}  # tench, goldfish, springer, tissue
    assert {i: wnids[i] for i in anchors} == anchors


def test_folder_sample_labels_a_partial_imagenet_folder_by_official_index(tmp_path):
    _make_folder(tmp_path, {"n15075141": 2, "n02102040": 3, "n01440764": 2})
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0)  # class_ids="wnid" is the default
    assert sample.classes == ["n01440764", "n02102040", "n15075141"] and sample.class_labels == (0, 217, 999)
    assert all(sample.class_labels[sample.classes.index(path.parent.name)] == label for path, label in sample.samples)
    assert sorted({label for _, label in sample.samples}) == [0, 217, 999]
    text = sample.summary()
    assert "7 images from 3 classes" in text and "per class 2..3" in text
    assert "3 of 1000 ImageNet-1k classes" in text and "n01440764=0, n02102040=217, n15075141=999" in text
    assert sample[0][1] == 0 and sample[len(sample) - 1][1] == 999


def test_folder_sample_refuses_folders_that_are_not_wnids(tmp_path):
    _make_folder(tmp_path, {"n01440764": 1, "cats": 1, "n99999999": 1})
    with pytest.raises(ValueError, match=r"cats, n99999999 are not ImageNet-1k wnids.*class_ids='sorted'"):
        mdata.ImageFolderSample(tmp_path)
    assert mdata.ImageFolderSample(tmp_path, class_ids="sorted").class_labels == (0, 1, 2)
    with pytest.raises(ValueError, match="class_ids: expected one of"):
        mdata.ImageFolderSample(tmp_path, class_ids="index")


def test_sample_across_classes_spreads_evenly_and_is_seeded():
    labels = np.repeat(np.arange(10), [50, 40, 30, 30, 30, 30, 30, 30, 30, 3])
    picked = mdata.sample_across_classes(labels, 95, seed=0)
    assert picked.dtype == np.int64 and len(picked) == len(np.unique(picked)) == 95
    assert np.array_equal(picked, np.sort(picked))
    counts = np.bincount(labels[picked], minlength=10)
    # class 9 has only 3 items: it gives them all, the other nine share the rest (92) as 10 or 11 each
    assert counts[9] == 3 and set(counts[:9].tolist()) <= {10, 11} and counts[:9].sum() == 92
    assert np.array_equal(picked, mdata.sample_across_classes(labels, 95, seed=0))
    assert not np.array_equal(picked, mdata.sample_across_classes(labels, 95, seed=1))
    # fewer than K: one item from each of n classes, a seeded choice of classes (not the first ones)
    choices = {tuple(np.unique(labels[mdata.sample_across_classes(labels, 4, seed)])) for seed in range(6)}
    assert all(len(c) == 4 for c in choices) and len(choices) > 1
    assert np.array_equal(mdata.sample_across_classes(labels, 10_000, seed=0), np.arange(len(labels)))


def test_sample_across_classes_rejects_bad_input():
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        mdata.sample_across_classes([0, 1], 0, seed=0)
    with pytest.raises(ValueError, match="labels: expected a 1-d array"):
        mdata.sample_across_classes([0.5, 1.0], 1, seed=0)


def test_folder_sample_scales_16_bit_gray_to_8_bits(tmp_path):
    """A 16-bit PNG and a big-endian 16-bit TIFF become v * 255 / 65535, rounded (PIL's own
    convert("RGB") clips them: nearly every pixel 255)."""
    values = np.array([[0, 1, 128, 129, 257, 1000], [32767, 32768, 40000, 65278, 65534, 65535]], dtype=np.uint16)
    (tmp_path / "a").mkdir()
    Image.fromarray(values).save(tmp_path / "a" / "gray16.png")
    Image.fromarray(values.astype(">u2")).save(tmp_path / "a" / "gray16be.tif")
    assert Image.open(tmp_path / "a" / "gray16be.tif").mode == "I;16B"
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert expected.tolist() == [[0, 0, 0, 1, 1, 4], [127, 128, 156, 254, 255, 255]]
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted")
    assert [path.name for path, _ in sample.samples] == ["gray16.png", "gray16be.tif"]
    for index in range(2):
        image, _ = sample[index]
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), np.repeat(expected[..., None], 3, axis=2))


@pytest.mark.parametrize("pixels, mode", [(np.full((6, 5), 0.5, np.float32), "F"),
                                          (np.full((6, 5), 70000, np.int32), "I")])
def test_folder_sample_refuses_pixels_it_cannot_convert(tmp_path, pixels, mode):
    _make_folder(tmp_path, {"a": 2})
    Image.fromarray(pixels).save(tmp_path / "a" / "odd.tif")
    assert Image.open(tmp_path / "a" / "odd.tif").mode == mode
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, class_ids="sorted")
    assert len(sample.readable()) == 2 and [(path.name, f"(mode '{mode}')" in reason) for path, reason in sample.skipped] == [
        ("odd.tif", True)]
    with pytest.raises(ValueError, match=rf"odd\.tif: .*\(mode '{mode}'\).*\(strict=True\)"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted").readable()


def test_folder_sample_names_decompression_bombs(tmp_path, monkeypatch):
    """Over PIL's limit (a warning) and over twice the limit (an error): both skipped or refused."""
    _make_folder(tmp_path, {"a": 2})  # 12 x 16 = 192 pixels each
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("L", (40, 40)).save(tmp_path / "a" / "warns.png")  # 1600 pixels
    Image.new("L", (64, 64)).save(tmp_path / "a" / "bomb.png")  # 4096 pixels
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, class_ids="sorted")
    assert len(sample.readable()) == 2
    assert {path.name: reason.startswith("decompression bomb (Image size (") for path, reason in sample.skipped} == {
        "bomb.png": True, "warns.png": True}
    assert "2 files skipped" in sample.summary()
    with pytest.raises(ValueError, match=r"bomb\.png: decompression bomb \(Image size \(4096 pixels\)"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted").readable()
    (tmp_path / "a" / "bomb.png").unlink()
    with pytest.raises(ValueError, match=r"warns\.png: decompression bomb"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted").readable()


def test_folder_sample_counts_a_broken_symlink(tmp_path):
    _make_folder(tmp_path, {"a": 2})
    (tmp_path / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, class_ids="sorted")
    assert len(sample) == 2 and sample.skipped == [(tmp_path / "a" / "gone.png", "broken symbolic link")]
    with pytest.raises(ValueError, match=r"gone\.png: broken symbolic link"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted")


def test_folder_sample_class_of_unreadable_files_names_the_folder(tmp_path):
    _make_folder(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, class_ids="sorted")  # listed, not decoded
    with pytest.raises(ValueError, match=rf"class folder {tmp_path / 'b'}: none of the 1 image files checked "
                                         r"is readable, .*broken\.png: unreadable image"):
        sample.readable()
    assert sample.readable([0, 1]) == [0, 1]  # class a alone is fine


def test_folder_sample_root_that_is_a_file(tmp_path):
    (tmp_path / "train.tar").write_bytes(b"")
    with pytest.raises(ValueError, match=r"train\.tar is a file; expected a folder"):
        mdata.ImageFolderSample(tmp_path / "train.tar")
    with pytest.raises(FileNotFoundError, match="not found"):
        mdata.ImageFolderSample(tmp_path / "missing")


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


# Sizes where rounding the resized long side (instead of truncating it, as torchvision does)
# was one pixel off, and one portrait image.
ODD_SIZES = [(500, 353), (640, 427), (1024, 683), (353, 500)]


def _noise_image(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", ODD_SIZES)
@pytest.mark.parametrize("res", [256, 16])
def test_var_view_equals_torchvision_transforms(size, res):
    from torchvision import transforms as T

    image = _noise_image(*size)
    resize = T.Resize(round(1.125 * res), interpolation=T.InterpolationMode.LANCZOS)  # VAR's utils/data.py
    centre = T.Compose([resize, T.CenterCrop((res, res)), T.ToTensor()])
    assert torch.equal(mdata.var_view(image, res), centre(image))
    random_crop = T.Compose([resize, T.RandomCrop((res, res)), T.ToTensor()])
    for seed in (0, 1, 2):
        torch.manual_seed(seed)  # RandomCrop draws from the global generator
        assert torch.equal(mdata.var_view(image, res, torch.Generator().manual_seed(seed)), random_crop(image))


@pytest.mark.parametrize("size", ODD_SIZES)
@pytest.mark.parametrize("res", [256, 16, 30])  # centre offsets 12.5 and 0.5 (rounded to even), 1.5 (up)
def test_rar_ten_crop_equals_torchvision_ten_crop(size, res):
    from torchvision import transforms as T

    image = _noise_image(*size)
    adm_crop = T.ToTensor()(mdata.center_crop_arr(image, int(1.1 * res)))
    assert torch.equal(mdata.rar_ten_crop(image, res), torch.stack(T.TenCrop(res)(adm_crop)))


@pytest.mark.parametrize("size", ODD_SIZES)
def test_rar_attack_view_equals_the_attack_papers_transform(size):
    from torchvision import transforms as T

    res = 256
    image = _noise_image(*size)
    attack_paper = T.Compose([T.Resize(res, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                              T.CenterCrop(res), T.ToTensor()])  # Kowalczuk et al., rar_dataloader.py
    view = mdata.rar_attack_view(image, res)
    assert torch.equal(view, attack_paper(image))
    assert torch.equal(mdata.attack_view(image, "rar", res), view)
    ten_crop_centre = mdata.attack_view(image, "rar", res, rar_crop="ten-crop-centre")
    assert torch.equal(ten_crop_centre, mdata.rar_ten_crop(image, res)[4]) and not torch.equal(ten_crop_centre, view)
    assert torch.equal(mdata.attack_view(image, "var", 16), mdata.var_view(image, 16))
    with pytest.raises(ValueError, match="rar_crop: expected one of"):
        mdata.attack_view(image, "rar", res, rar_crop="centre")


def test_testbed_dprime_holds_every_planted_and_control_image(testbed):
    ids = mdata.testbed_dprime(testbed, 1000, seed=0)
    assert len(ids) == len(np.unique(ids)) == 1000 and (np.diff(ids) > 0).all()
    assert np.isin(testbed.planted_ids, ids).all() and np.isin(testbed.control_ids, ids).all()
    ordinary = ids[~np.isin(ids, np.union1d(testbed.planted_ids, testbed.control_ids))]
    assert set(np.bincount(testbed.train_labels[ordinary], minlength=10).tolist()) == {90}  # spread over classes
    assert np.array_equal(ids, mdata.testbed_dprime(testbed, 1000, seed=0))
    assert not np.array_equal(ids, mdata.testbed_dprime(testbed, 1000, seed=1))
    assert np.array_equal(mdata.testbed_dprime(testbed, 0, seed=0), np.arange(6000))
    with pytest.raises(ValueError, match="planted and control"):
        mdata.testbed_dprime(testbed, 50, seed=0)


def test_the_views_identity_changes_with_the_code_of_any_view_function(monkeypatch):
    """A stage's cache key holds data.views_identity(): editing how images are viewed (here: the
    source of one view function) must give another identity."""
    from memlib import data as mdata

    before = mdata.views_identity()
    assert before == mdata.views_identity() and len(before) == 64

    def var_view(image, res, generator=None):  # same name, other code
        return None

    monkeypatch.setattr(mdata, "VIEW_FUNCTIONS", tuple(var_view if f is mdata.var_view else f for f in mdata.VIEW_FUNCTIONS))
    assert mdata.views_identity() != before
