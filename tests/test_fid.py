"""Frechet distance, feature statistics through clean-fid's helpers, reference caching, the
generator FID, and the testbed classifier (memlib/fid.py, memlib/classifier.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from toy_generator import ToyGenerator, chain_table

from memlib.classifier import ClassifierConfig, TestbedClassifier, load_classifier, save_classifier, train_classifier
from memlib.fid import (
    ADM_REFERENCE_STATISTICS,
    FeatureExtractor,
    FeatureMoments,
    FeatureStats,
    InceptionFeatures,
    TestbedFeatures,
    batch_seed,
    cached_reference_stats,
    feature_stats,
    fid_from_moments,
    fid_of_generator,
    folder_feature_stats,
    frechet_distance,
    generated_images,
    psd_factor,
    reference_key,
    reference_stats_from_npz,
    rehearsal_classes,
    sample_moments,
    trace_sqrt_product,
)

CLASSIFIER = Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "classifier.safetensors"


def _gaussian_stats(seed, dim=6, n=200):
    x = np.random.default_rng(seed).normal(size=(n, dim)) @ np.random.default_rng(seed + 100).normal(size=(dim, dim))
    return x.mean(axis=0), np.cov(x, rowvar=False)


# ---- the Frechet distance ------------------------------------------------------------------


def test_fid_of_identical_statistics_is_zero():
    mu, sigma = _gaussian_stats(0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_equal_covariances_give_squared_mean_distance():
    mu1, sigma = _gaussian_stats(1)
    mu2 = mu1 + np.arange(6.0)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(np.sum(np.arange(6.0) ** 2)), rel=1e-6)


def test_diagonal_covariances_closed_form_and_symmetry():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    (m1, s1), (m2, s2) = _gaussian_stats(2), _gaussian_stats(3)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-6)


def test_singular_covariances_still_give_a_number():
    x = np.random.default_rng(4).normal(size=(3, 10))  # rank 2 covariance in 10 dimensions
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-4)


def _sqrtm_trace(sigma1, sigma2):
    """pytorch-fid's way: Tr(sqrtm(sigma1 sigma2)), real part."""
    import scipy.linalg

    return float(np.trace(scipy.linalg.sqrtm(sigma1 @ sigma2)).real)


def test_trace_of_the_product_square_root_equals_sqrtm_and_closed_forms():
    (_, s1), (_, s2) = _gaussian_stats(5, n=200), _gaussian_stats(6, n=50)
    assert trace_sqrt_product(s1, s2) == pytest.approx(_sqrtm_trace(s1, s2), rel=1e-9)
    assert trace_sqrt_product(s2, s1) == pytest.approx(_sqrtm_trace(s1, s2), rel=1e-9)  # the order does not matter
    a = np.diag([4.0, 9.0, 0.0])  # diagonal: Tr((A B)^(1/2)) = sum sqrt(a_i b_i)
    assert trace_sqrt_product(a, np.diag([1.0, 4.0, 5.0])) == pytest.approx(2.0 + 6.0, rel=1e-12)


def test_trace_for_fewer_samples_than_dimensions_uses_the_samples_rank():
    """sigma1 of 4 samples in 6 dimensions (rank 3) is X^T X / 3 with X the centred samples, so
    the trace is the sum of square roots of the eigenvalues of the 4 x 4 X sigma2 X^T / 3: the
    oracle, computed without decomposing sigma1 (sqrtm of the singular product agrees only to
    about 1e-8)."""
    x = np.random.default_rng(7).normal(size=(4, 6))
    centred = x - x.mean(0)
    s1, (_, s2) = centred.T @ centred / 3, _gaussian_stats(6, n=50)
    # the 4 centred rows sum to zero: rank 3, so the smallest of the 4 eigenvalues is round-off
    # (whose square root, ~1e-8, depends on the BLAS), left out
    oracle = np.sqrt(np.clip(np.linalg.eigvalsh(centred @ s2 @ centred.T / 3)[1:], 0, None)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(oracle, rel=1e-12)
    assert trace_sqrt_product(s1, s2) == pytest.approx(_sqrtm_trace(s1, s2), rel=1e-6)


@pytest.mark.parametrize("n", [5, 400])  # rank 4 (the range finder's factor) and full rank (eigh) in 100 dimensions
def test_trace_in_many_dimensions_by_either_factorisation(n):
    x = np.random.default_rng(8).normal(size=(n, 100)) @ np.random.default_rng(9).normal(size=(100, 100))
    centred = x - x.mean(0)
    s1 = centred.T @ centred / (n - 1)
    (_, s2) = _gaussian_stats(10, dim=100, n=300)
    A = psd_factor(s1)
    assert A.shape == (100, min(n - 1, 100))
    np.testing.assert_allclose(A @ A.T, s1, rtol=0, atol=1e-10 * np.abs(s1).max())
    if n < 100:  # the oracle of the samples' rank
        # rank n - 1: the smallest eigenvalue is round-off, left out (as above)
        oracle = np.sqrt(np.clip(np.linalg.eigvalsh(centred @ s2 @ centred.T / (n - 1))[1:], 0, None)).sum()
    else:
        oracle = _sqrtm_trace(s1, s2)
    assert trace_sqrt_product(s1, s2) == pytest.approx(oracle, rel=1e-10)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---- statistics through clean-fid's helpers, with a stub extractor -------------------------


class StubFeatures(FeatureExtractor):
    """Features = the 3 channel means and the 4 quadrant means of channel 0, in [0, 255]."""

    name = "stub"
    metric_name = "stub FID"
    preprocessing = "uint8; none"
    device = torch.device("cpu")
    weights_sha256 = "0" * 64

    def __init__(self):
        self.calls = 0

    def resize(self, image_HW3):
        return image_HW3.astype(np.float32)

    def __call__(self, batch):
        self.calls += 1
        h, w = batch.shape[2] // 2, batch.shape[3] // 2
        quads = [batch[:, 0, i * h : (i + 1) * h, j * w : (j + 1) * w].mean(dim=(1, 2)) for i in (0, 1) for j in (0, 1)]
        return torch.cat([batch.mean(dim=(2, 3)), torch.stack(quads, dim=1)], dim=1)


def _hand_features(images):
    q = (images * 255).round().clamp(0, 255).double()
    quads = [q[:, 0, i * 4 : i * 4 + 4, j * 4 : j * 4 + 4].mean(dim=(1, 2)) for i in (0, 1) for j in (0, 1)]
    return torch.cat([q.mean(dim=(2, 3)), torch.stack(quads, 1)], 1).numpy()


def _random_images(n, seed):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_feature_stats_match_numpy_on_quantised_images_for_any_batch_size():
    images = _random_images(50, 0)
    feats = _hand_features(images)
    for batch_size in (7, 64):
        stats = feature_stats(StubFeatures(), images, batch_size=batch_size)
        assert stats.n == 50 and stats.extractor == StubFeatures().identity
        np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=1e-10)
        np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-8, atol=1e-8)


def test_tensor_path_equals_clean_fid_folder_pipeline(tmp_path):
    images = _random_images(20, 1)
    for i, image in enumerate(images):
        array = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(array).save(tmp_path / f"{i:03d}.png")
    from_folder = folder_feature_stats(tmp_path, StubFeatures(), batch_size=8)
    from_tensor = feature_stats(StubFeatures(), images)
    np.testing.assert_allclose(from_folder.mu, from_tensor.mu, rtol=1e-6)
    np.testing.assert_allclose(from_folder.sigma, from_tensor.sigma, rtol=1e-5, atol=1e-6)
    assert frechet_distance(from_folder.mu, from_folder.sigma, from_tensor.mu, from_tensor.sigma) == pytest.approx(0, abs=1e-4)


def test_feature_stats_save_load_round_trip(tmp_path):
    stats = feature_stats(StubFeatures(), _random_images(10, 2))
    stats.save(tmp_path / "s.npz")
    back = FeatureStats.load(tmp_path / "s.npz")
    assert back.n == 10 and back.extractor == stats.extractor
    np.testing.assert_array_equal(back.sigma, stats.sigma)


def test_reference_stats_are_cached_and_keyed_by_images_and_extractor(tmp_path):
    images = _random_images(12, 3)
    extractor = StubFeatures()
    first = cached_reference_stats(images, extractor, tmp_path)
    calls = extractor.calls
    again = cached_reference_stats(images, extractor, tmp_path)
    assert extractor.calls == calls  # read from the file
    np.testing.assert_array_equal(again.mu, first.mu)
    assert len(list(tmp_path.glob("refstats-*.npz"))) == 1

    changed = images.clone()
    changed[0, 0, 0, 0] = 1.0 - changed[0, 0, 0, 0]
    assert reference_key(changed, extractor) != reference_key(images, extractor)
    assert reference_key([images[:5], images[5:]], extractor) != reference_key(images, extractor)  # batch shapes count
    cached_reference_stats(changed, extractor, tmp_path)
    assert extractor.calls > calls and len(list(tmp_path.glob("refstats-*.npz"))) == 2

    other = StubFeatures()
    other.weights_sha256 = "1" * 64
    assert reference_key(images, other) != reference_key(images, extractor)
    with pytest.raises(TypeError, match="one-shot"):
        cached_reference_stats(iter([images]), extractor, tmp_path)


# ---- FID of a generator --------------------------------------------------------------------


def _toy():
    table = chain_table({0: [[0, 1, 2, 3]], 1: [[3, 3, 0, 0]]}, 2, 4, strength=1.0)
    return ToyGenerator(table, image_size=8, grid=2)


def test_fid_of_generator_is_seeded_and_zero_against_its_own_samples():
    gen, extractor = _toy(), StubFeatures()
    result = fid_of_generator(gen, extractor, feature_stats(extractor, _random_images(30, 4)), num_per_class=15,
                              sampling_kwargs={"temperature": 1.0}, seed=7, batch_size=8)
    repeat = fid_of_generator(gen, extractor, feature_stats(extractor, _random_images(30, 4)), num_per_class=15,
                              sampling_kwargs={"temperature": 1.0}, seed=7, batch_size=8)
    assert result.score == repeat.score and result.score > 0
    assert (result.metric_name, result.num_samples, result.seed) == ("stub FID", 30, 7)
    assert result.sampling_kwargs == {"temperature": 1.0} and result.to_dict()["preprocessing"] == "uint8; none"

    labels = torch.arange(2).repeat_interleave(15)  # batch b drawn with its own generator, seeded batch_seed(7, b)
    own = torch.cat([gen.tokens_to_images(gen.sample(labels[i : i + 8], temperature=1.0,
                                                     generator=torch.Generator().manual_seed(batch_seed(7, i // 8))))
                     for i in range(0, 30, 8)])
    own_stats = feature_stats(extractor, own)
    zero = fid_of_generator(gen, extractor, own_stats, 15, {"temperature": 1.0}, seed=7, batch_size=8)
    # features in [0, 255] with a rank-deficient covariance: zero up to round-off relative to the scale
    assert abs(zero.score) <= 1e-7 * np.trace(own_stats.sigma)


def test_fid_of_generator_refuses_stats_from_another_extractor():
    other = StubFeatures()
    other.weights_sha256 = "f" * 64
    reference = feature_stats(other, _random_images(10, 5))
    with pytest.raises(ValueError, match="reference statistics were made with"):
        fid_of_generator(_toy(), StubFeatures(), reference, num_per_class=2)


class _FakeInceptionLayers(torch.nn.Module):
    """Reports what reached the network: [mean of channel 0, input height, 0, ...] (2048-d)."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 2048)
        out[:, 0] = x[:, 0].mean(dim=(1, 2))
        out[:, 1] = float(x.shape[2])
        return out


class _FakeInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _FakeInceptionLayers()

    def forward(self, x, return_features: bool = False):
        return self.layers(x)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")
def test_inception_features_follow_clean_fid_protocol(tmp_path):
    torch.jit.script(_FakeInception()).save(str(tmp_path / "inception-2015-12-05.pt"))
    extractor = InceptionFeatures(tmp_path, device="cpu")
    assert extractor.metric_name == "FID"
    stats = feature_stats(extractor, torch.full((3, 3, 20, 20), 0.75))  # 0.75 -> uint8 191 -> (191 - 128) / 128
    assert stats.mu[0] == pytest.approx(63 / 128, abs=1e-5) and stats.mu[1] == 299


def test_inception_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt"):
        InceptionFeatures(tmp_path, device="cpu")


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning", "ignore:.*torch.jit.load.*:FutureWarning")
def test_inception_file_may_have_any_name_and_runs_as_clean_fid_does(tmp_path):
    from cleanfid.inception_torchscript import InceptionV3W

    scripted = torch.jit.script(_FakeInception())
    renamed = tmp_path / "my-copy" / "inception_v3.torchscript"
    renamed.parent.mkdir()
    scripted.save(str(renamed))
    (tmp_path / "official").mkdir()
    scripted.save(str(tmp_path / "official" / "inception-2015-12-05.pt"))
    extractor = InceptionFeatures(renamed, device="cpu")
    assert extractor.path == renamed
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 255
    clean_fid = InceptionV3W(str(tmp_path / "official"), download=False, resize_inside=False).eval()
    with torch.no_grad():
        assert torch.equal(extractor(x), clean_fid(x))
    assert InceptionFeatures(tmp_path / "official").path == tmp_path / "official" / "inception-2015-12-05.pt"  # a folder


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")
def test_inception_file_that_is_not_the_network_is_a_clear_error(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"cannot load .*weights\.pt as a TorchScript module"):
        InceptionFeatures(tmp_path / "weights.pt")
    torch.jit.script(_FakeInceptionLayers()).save(str(tmp_path / "no_layers.pt"))
    with pytest.raises(ValueError, match=r"no_layers\.pt: a TorchScript module without the 'layers'"):
        InceptionFeatures(tmp_path / "no_layers.pt")


# ---- reference statistics from an ADM-style reference batch ---------------------------------


class ADMComparableStub(StubFeatures):
    """The stub, declaring ADM reference statistics comparable (as InceptionFeatures does)."""

    comparable_statistics = (ADM_REFERENCE_STATISTICS,)


def _adm_npz(path, mu, sigma, images=None):
    arrays = {"arr_0": images if images is not None else np.zeros((4, 8, 8, 3), np.uint8)}
    if mu is not None:
        arrays.update(mu=mu, sigma=sigma)
    np.savez(path, **arrays)
    return path


def _toy_sample_stats(extractor, gen, num_per_class, seed, batch_size, classes=None):
    return feature_stats(extractor, generated_images(gen, num_per_class, {}, seed, batch_size, classes))


def test_reference_mu_sigma_are_used_exactly(tmp_path):
    gen, extractor = _toy(), ADMComparableStub()
    own = _toy_sample_stats(extractor, gen, 15, seed=3, batch_size=8)
    delta = np.linspace(-2.0, 3.0, own.mu.size)
    reference = reference_stats_from_npz(_adm_npz(tmp_path / "ref.npz", own.mu + delta, own.sigma), extractor)
    assert np.array_equal(reference.mu, own.mu + delta) and np.array_equal(reference.sigma, own.sigma)
    assert reference.extractor == ADM_REFERENCE_STATISTICS and "'mu'/'sigma' of ref.npz" in reference.source
    result = fid_of_generator(gen, extractor, reference, 15, seed=3, batch_size=8, progress=False)
    # equal covariances: FID = ||mu1 - mu2||^2 (up to round-off relative to the features' scale:
    # the toy's covariance is rank-deficient)
    assert result.score == pytest.approx(float(delta @ delta), abs=1e-7 * np.trace(own.sigma))
    assert result.reference.startswith(ADM_REFERENCE_STATISTICS) and "ref.npz" in result.reference
    assert result.reference_n == 0 and result.metric_name == "stub FID" and result.classes is None
    same = reference_stats_from_npz(_adm_npz(tmp_path / "own.npz", own.mu, own.sigma), extractor)
    zero = fid_of_generator(gen, extractor, same, 15, seed=3, batch_size=8, progress=False)
    assert abs(zero.score) <= 1e-7 * np.trace(own.sigma)  # FID(x, x) = 0


def test_reference_recompute_uses_arr_0_and_is_labelled(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    path = _adm_npz(tmp_path / "ref.npz", np.zeros(7), np.eye(7), images)
    extractor = StubFeatures()
    stats = reference_stats_from_npz(path, extractor, mode="recompute", cache_dir=tmp_path / "cache", progress=False)
    expected = feature_stats(extractor, torch.from_numpy(images).permute(0, 3, 1, 2))
    np.testing.assert_allclose(stats.mu, expected.mu, rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, expected.sigma, rtol=1e-9, atol=1e-9)
    assert stats.n == 12 and stats.extractor == extractor.identity and "recomputed from the 12 'arr_0'" in stats.source
    assert len(list((tmp_path / "cache").glob("refstats-*.npz"))) == 1
    uncached = reference_stats_from_npz(path, extractor, mode="recompute", progress=False)
    np.testing.assert_array_equal(uncached.mu, stats.mu)


def test_reference_npz_errors_name_the_file_and_the_way_out(tmp_path):
    no_stats = _adm_npz(tmp_path / "images_only.npz", None, None)
    with pytest.raises(ValueError, match=r"images_only\.npz has no \['mu', 'sigma'\].*'recompute'"):
        reference_stats_from_npz(no_stats, ADMComparableStub())
    with pytest.raises(ValueError, match=r"not comparable with stub.*'recompute'"):
        reference_stats_from_npz(no_stats, StubFeatures())  # its features are not Inception pool_3
    with pytest.raises(ValueError, match="mode: expected one of"):
        reference_stats_from_npz(no_stats, StubFeatures(), mode="whole-dataset")
    bad = _adm_npz(tmp_path / "bad.npz", np.zeros(7), np.eye(6))
    with pytest.raises(ValueError, match=r"bad\.npz: 'mu' \(7,\) and 'sigma' \(6, 6\)"):
        reference_stats_from_npz(bad, ADMComparableStub())
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        reference_stats_from_npz(tmp_path / "missing.npz", ADMComparableStub())
    with pytest.raises(ValueError, match="reference statistics were made with"):  # ADM stats, stub without the claim
        fid_of_generator(_toy(), StubFeatures(), reference_stats_from_npz(
            _adm_npz(tmp_path / "ok.npz", np.zeros(7), np.eye(7)), ADMComparableStub()), 2, progress=False)


@pytest.mark.filterwarnings("ignore:FID cache entry refused")
def test_changed_or_foreign_cache_entries_are_detected_and_recomputed(tmp_path):
    images, extractor = _random_images(12, 6), StubFeatures()
    first = cached_reference_stats(images, extractor, tmp_path)
    (path,) = tmp_path.glob("refstats-*.npz")
    with np.load(path) as npz:
        stored = {k: npz[k] for k in npz.files}

    # a valid statistics file with mu + 5 and no binding to the key
    np.savez(path.with_suffix(""), mu=first.mu + 5, sigma=first.sigma, n=np.int64(12), extractor=np.str_(first.extractor))
    with pytest.warns(UserWarning, match="not bound to cache key"):
        again = cached_reference_stats(images, extractor, tmp_path)
    np.testing.assert_array_equal(again.mu, first.mu)
    # mu + 5 with the original key and content hash copied over
    np.savez(path.with_suffix(""), **{**stored, "mu": first.mu + 5})
    with pytest.warns(UserWarning, match="content does not match its recorded sha256"):
        again = cached_reference_stats(images, extractor, tmp_path)
    np.testing.assert_array_equal(again.mu, first.mu)
    # another reference's entry copied to this name
    other = cached_reference_stats(_random_images(12, 7), extractor, tmp_path)
    other_path = next(p for p in tmp_path.glob("refstats-*.npz") if p != path)
    other_path.replace(path)
    with pytest.warns(UserWarning, match="not bound to cache key"):
        again = cached_reference_stats(images, extractor, tmp_path)
    np.testing.assert_array_equal(again.mu, first.mu)
    assert not np.array_equal(other.mu, first.mu)
    # and an intact entry is read, not recomputed
    calls = extractor.calls
    cached_reference_stats(images, extractor, tmp_path)
    assert extractor.calls == calls


# ---- sharding over torchrun ranks (simulated) ------------------------------------------------


def test_feature_moments_merge_in_any_split_equals_one_pass():
    feats = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 5))
    whole = FeatureMoments().add(feats)
    for cuts in ([50], [1, 2, 99], [0, 40, 40, 101]):
        parts = [FeatureMoments().add(part) for part in np.split(feats, cuts)]
        merged = FeatureMoments()
        for part in reversed(parts):  # the order does not matter either
            merged.merge(FeatureMoments.from_state_dict(part.state_dict()))
        assert merged.n == 101
        np.testing.assert_allclose(merged.mean_D, feats.mean(0), rtol=1e-13)
        np.testing.assert_allclose(merged.m2_DD / 100, np.cov(feats, rowvar=False), rtol=1e-12)
        np.testing.assert_allclose(merged.m2_DD, whole.m2_DD, rtol=1e-12)
    with pytest.raises(ValueError, match="need at least 2 images"):
        FeatureMoments().add(feats[:1]).stats("x")


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_sample_their_batches_and_merge_to_the_single_process_fid(world_size):
    """Each simulated rank draws its block of batches (as stage_fid's ranks do); the merged
    moments equal one process's to float64 round-off (mean rtol 1e-12, covariance rtol 1e-10),
    because batch b's samples depend on (seed, b) only."""
    gen, extractor = _toy(), StubFeatures()
    one = sample_moments(gen, extractor, 7, {}, seed=4, batch_size=3, classes=None)
    parts = [sample_moments(gen, extractor, 7, {}, seed=4, batch_size=3, rank=r, world_size=world_size)
             for r in range(world_size)]
    assert sum(p.n for p in parts) == one.n == 14 and all(p.n > 0 for p in parts)
    merged = FeatureMoments()
    for part in parts:
        merged.merge(part)
    np.testing.assert_allclose(merged.mean_D, one.mean_D, rtol=1e-12)
    np.testing.assert_allclose(merged.m2_DD, one.m2_DD, rtol=1e-10, atol=1e-9)
    reference = feature_stats(extractor, _random_images(30, 4))
    sharded = fid_from_moments(merged, extractor, reference, 7, gen.num_classes, seed=4, batch_size=3)
    single = fid_of_generator(gen, extractor, reference, 7, seed=4, batch_size=3, progress=False)
    assert sharded.score == pytest.approx(single.score, rel=1e-10) and sharded.num_samples == 14


def test_batches_of_a_sample_set_do_not_depend_on_which_are_drawn():
    gen = _toy()
    every = list(generated_images(gen, 5, {}, seed=1, batch_size=4))
    assert len(every) == 3 and sum(len(b) for b in every) == 10
    assert torch.equal(next(iter(generated_images(gen, 5, {}, seed=1, batch_size=4, batches=[2]))), every[2])
    other_seed = list(generated_images(gen, 5, {}, seed=2, batch_size=4))
    assert not all(torch.equal(a, b) for a, b in zip(every, other_seed))
    assert len({batch_seed(s, b) for s in range(20) for b in range(20)}) == 400


# ---- a class subset for rehearsals, and progress -------------------------------------------


def test_fid_of_a_class_subset_is_labelled_and_samples_only_those_classes():
    gen, extractor = _toy(), StubFeatures()
    reference = feature_stats(extractor, _random_images(30, 4))
    result = fid_of_generator(gen, extractor, reference, 6, seed=2, batch_size=4, classes=[1], progress=False)
    assert result.metric_name == "stub FID (1 of 2 classes)" and result.classes == [1] and result.num_classes == 2
    assert result.num_samples == 6
    only_class_1 = _toy_sample_stats(extractor, gen, 6, seed=2, batch_size=4, classes=[1])
    assert result.score == pytest.approx(frechet_distance(only_class_1.mu, only_class_1.sigma, reference.mu, reference.sigma))
    full = fid_of_generator(gen, extractor, reference, 6, seed=2, batch_size=4, progress=False)
    assert full.metric_name == "stub FID" and full.classes is None and full.num_samples == 12
    for bad in ([], [2], [0, 0], [True]):
        with pytest.raises(ValueError, match="classes: expected distinct class ids in 0..1"):
            fid_of_generator(gen, extractor, reference, 2, classes=bad, progress=False)


def test_rehearsal_classes_are_a_seeded_sorted_choice():
    chosen = rehearsal_classes(1000, 10, seed=0)
    assert chosen == sorted(set(chosen)) and len(chosen) == 10 and chosen == rehearsal_classes(1000, 10, seed=0)
    assert chosen != rehearsal_classes(1000, 10, seed=1) and chosen != list(range(10))
    with pytest.raises(ValueError, match="k: expected an integer in 1..1000"):
        rehearsal_classes(1000, 0, seed=0)


def test_fid_progress_bar_goes_to_stderr_only_when_asked(capsys):
    gen, extractor = _toy(), StubFeatures()
    reference = feature_stats(extractor, _random_images(10, 4))
    fid_of_generator(gen, extractor, reference, 3, progress=False)
    assert "FID samples" not in capsys.readouterr().err
    fid_of_generator(gen, extractor, reference, 3, progress=True)
    assert "FID samples" in capsys.readouterr().err


# ---- the testbed classifier ----------------------------------------------------------------


def test_shipped_classifier_features_and_accuracy():
    from memlib.data import load_testbed, testbed_views
    from memlib.results import file_sha256 as sha256_file

    record = json.loads(CLASSIFIER.with_suffix(".json").read_text())
    assert record["heldout_accuracy"] >= 0.8 and record["heldout_size"] == 2000  # both families' centre views
    data = load_testbed()
    assert record["data_sha256"] == sha256_file(data.path)  # trained on the shipped testbed
    images, labels = testbed_views(data.heldout_images[:300], "rar"), torch.as_tensor(data.heldout_labels[:300])
    model = load_classifier(CLASSIFIER)
    with torch.no_grad():
        assert (model(images).argmax(1) == labels).double().mean() >= 0.75
    extractor = TestbedFeatures(CLASSIFIER)
    assert extractor.metric_name == "testbed FID"
    stats = feature_stats(extractor, images[:40], batch_size=16)
    assert stats.mu.shape == (128,) and stats.sigma.shape == (128, 128)
    with pytest.raises(ValueError, match="32x32"):
        feature_stats(extractor, torch.rand(2, 3, 16, 16))


def test_train_save_load_round_trip(tmp_path):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(32, 3, 32, 32, generator=g), torch.randint(0, 3, (32,), generator=g)
    config = ClassifierConfig(num_classes=3, width=4, feature_dim=8)
    model = train_classifier(images, labels, epochs=1, seed=0, batch_size=16, config=config)
    twin = train_classifier(images, labels, epochs=1, seed=0, batch_size=16, config=config)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    save_classifier(model, tmp_path / "c.safetensors", {"heldout_accuracy": 0.0})
    back = load_classifier(tmp_path / "c.safetensors")
    with torch.no_grad():
        assert torch.equal(back.features(images), model.features(images))
    (tmp_path / "c.json").unlink()
    with pytest.raises(FileNotFoundError, match="c.json"):
        load_classifier(tmp_path / "c.safetensors")
    assert isinstance(back, TestbedClassifier)


def test_a_save_that_fails_midway_keeps_the_previous_classifier(tmp_path, monkeypatch):
    """A full disk while saving over a classifier: the old weights and record stay whole and
    no temporary file is left (before, the weights were written in place)."""
    import errno

    import memlib.results

    torch.manual_seed(0)
    config = ClassifierConfig(num_classes=3, width=4, feature_dim=8)
    old = TestbedClassifier(config)
    save_classifier(old, tmp_path / "c.safetensors", {"note": "old"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["c.json", "c.safetensors"]

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(memlib.results.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_classifier(TestbedClassifier(config), tmp_path / "c.safetensors", {"note": "new"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    back = load_classifier(tmp_path / "c.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), old.state_dict().values()))
