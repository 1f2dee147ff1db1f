"""Similarity back-ends and threshold calibration (memlib/similarity.py)."""

import pytest
import torch
from torch import nn

from memlib.similarity import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PixelSimilarity,
    SSCDSimilarity,
    calibrate_threshold,
    make_similarity,
    source_and_nearest_other,
)

# the SSCD stand-ins are built with torch.jit.script, which torch marks deprecated
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def _images(n, seed=0, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- pixel ---------------------------------------------------------------------------------


def test_pixel_identical_images_give_exactly_one():
    x = _images(5)
    sim = PixelSimilarity()
    assert torch.equal(sim(x, x.clone()), torch.ones(5))
    assert torch.equal(sim.pairwise(x, x).diagonal(), torch.ones(5))


def test_pixel_value_is_one_minus_mean_abs_gray_difference():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.25)
    b[1, 0] = 1.0  # gray of image 1 = (1 + 0.25 + 0.25) / 3 = 0.5
    assert torch.allclose(PixelSimilarity()(a, b), torch.tensor([0.75, 0.5]))


def test_pixel_pairwise_matches_paired_calls():
    a, b = _images(4, 1), _images(3, 2)
    sim = PixelSimilarity()
    pair = sim.pairwise(a, b, batch_size=3)
    expected = torch.stack([torch.stack([sim(a[i : i + 1], b[j : j + 1])[0] for j in range(3)]) for i in range(4)])
    assert pair.shape == (4, 3)
    assert torch.allclose(pair, expected, atol=1e-6)


def test_pixel_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        PixelSimilarity()(_images(2), _images(3))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        PixelSimilarity()(torch.rand(2, 16, 16), torch.rand(2, 16, 16))


# ---- SSCD with TorchScript stand-ins -------------------------------------------------------


class _TinyDescriptor(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.fc = nn.Linear(4 * 4 * 4, dim)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(self.conv(x), 4).flatten(1))


class _Probe(nn.Module):
    """Descriptor = [mean of channel 0, input height, 0, ...]: shows what reached the model."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 512)
        out[:, 0] = x[:, 0].mean(dim=(1, 2))
        out[:, 1] = float(x.shape[2])
        return out


class _Broken(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        if self.mode == "nan":
            return torch.full((x.shape[0], 512), float("nan"))
        return torch.zeros(x.shape[0], 10)


def _script(module, path):
    torch.manual_seed(0)
    torch.jit.script(module).save(str(path))
    return path


def test_sscd_identical_images_give_one_and_pairwise_is_consistent(tmp_path):
    sim = SSCDSimilarity(_script(_TinyDescriptor(512), tmp_path / "sscd.pt"))
    x, y = _images(3, 0, 32), _images(3, 1, 32)
    assert torch.allclose(sim(x, x), torch.ones(3), atol=1e-5)
    pair = sim.pairwise(x, y)
    assert pair.shape == (3, 3)
    assert torch.allclose(pair.diagonal(), sim(x, y), atol=1e-5)
    assert (pair <= 1 + 1e-5).all()


def test_sscd_resizes_to_320_and_normalises_with_imagenet_stats(tmp_path):
    sim = SSCDSimilarity(_script(_Probe(), tmp_path / "probe.pt"))
    descriptor = sim.descriptors(torch.full((1, 3, 24, 24), 0.5))[0]
    channel0 = (0.5 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert descriptor[1] / descriptor[0] == pytest.approx(320 / channel0, rel=1e-4)
    assert descriptor.norm() == pytest.approx(1.0, abs=1e-6)


def test_sscd_wrong_output_shape_names_file_and_shapes(tmp_path):
    path = _script(_Broken("shape"), tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=r"wrong\.pt.*\(2, 10\).*\(2, 512\)"):
        SSCDSimilarity(path)(_images(2), _images(2))


def test_sscd_descriptor_dim_is_configurable(tmp_path):
    sim = SSCDSimilarity(_script(_TinyDescriptor(64), tmp_path / "d64.pt"), descriptor_dim=64)
    assert sim.descriptors(_images(2)).shape == (2, 64)


def test_sscd_non_finite_output_is_an_error(tmp_path):
    path = _script(_Broken("nan"), tmp_path / "nan.pt")
    with pytest.raises(ValueError, match="non-finite"):
        SSCDSimilarity(path)(_images(2), _images(2))


def test_sscd_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        SSCDSimilarity(tmp_path / "nowhere.pt")


def test_make_similarity():
    assert isinstance(make_similarity("pixel"), PixelSimilarity)
    with pytest.raises(ValueError, match="unknown similarity 'clip'.*pixel.*sscd"):
        make_similarity("clip")


# ---- calibration ---------------------------------------------------------------------------


def test_calibration_separable_samples_split_at_the_gap():
    result = calibrate_threshold(torch.tensor([0.97, 0.99, 1.0]), torch.tensor([0.80, 0.90, 0.95]))
    assert result.threshold == pytest.approx(0.96)
    assert (result.balanced_accuracy, result.true_positive_rate, result.false_positive_rate) == (1.0, 1.0, 0.0)
    assert (result.n_source, result.n_other) == (3, 3)


def test_calibration_overlapping_samples_hand_computed():
    # positives 0.6, 0.8, 0.9; negatives 0.5, 0.7, 0.85. Threshold 0.55: TPR 1, FPR 2/3 -> BA 2/3.
    # 0.75: TPR 2/3, FPR 1/3 -> 2/3. 0.875: TPR 1/3, FPR 0 -> 2/3. 0.65: TPR 2/3, FPR 2/3 -> 1/2.
    # Maximum 2/3, first (smallest) at 0.55.
    result = calibrate_threshold(torch.tensor([0.6, 0.8, 0.9]), torch.tensor([0.5, 0.7, 0.85]))
    assert result.threshold == pytest.approx(0.55)
    assert result.balanced_accuracy == pytest.approx(2 / 3)


def test_calibration_max_fpr_rule():
    negatives = torch.linspace(0.0, 0.9, 10)  # 0.0, 0.1, ..., 0.9
    result = calibrate_threshold(torch.tensor([0.95]), negatives, rule="max_fpr", max_fpr=0.2)
    assert result.threshold == pytest.approx(0.75)  # 0.8 and 0.9 above: FPR 0.2
    assert result.false_positive_rate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="rule"):
        calibrate_threshold(torch.tensor([1.0]), torch.tensor([0.0]), rule="youden")


def test_source_and_nearest_other_by_brute_force():
    training = _images(6, 3)
    generated = torch.stack([training[2], (training[4] + 0.05).clamp(0, 1), training[0]])
    sources = torch.tensor([2, 4, 1])  # the third is a copy of image 0 attributed to source 1
    sim = PixelSimilarity()
    to_source, to_other, other_ids = source_and_nearest_other(sim, generated, sources, training, batch_size=2)
    for c in range(3):
        row = torch.tensor([float(sim(generated[c : c + 1], training[j : j + 1])) for j in range(6)])
        assert to_source[c] == pytest.approx(float(row[sources[c]]), abs=1e-6)
        row[sources[c]] = -1
        assert int(other_ids[c]) == int(row.argmax()) and to_other[c] == pytest.approx(float(row.max()), abs=1e-6)
    assert to_source[0] == 1.0 and int(other_ids[2]) == 0 and to_other[2] == 1.0
