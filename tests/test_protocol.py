"""The paper's protocol in one place (memlib/protocol.py): the shipped full-scale parameter files
follow it, and a change of any one protocol setting is named, alone."""

from pathlib import Path

import pytest

from memlib.config import KEYS, load_config
from memlib.protocol import PAPER_PROTOCOL, Mismatch, protocol_mismatches

PARAMS = Path(__file__).resolve().parent.parent / "notebooks" / "params"

# One change per protocol setting that breaks that setting only (on full-var-d16 unless noted).
BREAKS = {
    "model": "var-d20",
    "model_overrides": {"depth": 2},
    "dataset": "testbed",
    "max_images": 10,
    "unitmem_fraction": 0.05,
    "n_views": 5,
    "rar_views": "random",  # on full-rar-b: VAR does not read it
    "activation": "pre",
    "similarity": "pixel",
    "threshold": 0.8,
    "per_class": 1,
    "score_span": [0, 680],
    "prefix_lengths": [0, 5, 14, 30],
    "reported_prefix": {"var": 14},
    "fid_feature": "testbed",
    "fid_reference": "recompute",
    "fid_samples_per_class": 10,
    "fid_classes": 2,
    "sampling_kwargs": {"cfg": 2.0, "top_k": 900, "top_p": 0.96},
}


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "sscd.pt").write_bytes(b"")
    return {"imagenet_train_dir": str(tmp_path / "train"), "sscd_torchscript": str(tmp_path / "sscd.pt")}


@pytest.mark.parametrize("name", ["full-var-d16", "full-var-d30", "full-rar-b", "full-rar-xxl"])
def test_the_shipped_full_scale_files_follow_the_protocol(name, paths):
    assert protocol_mismatches(load_config(PARAMS / f"{name}.yaml", **paths)) == []


def test_every_protocol_setting_is_a_setting_and_each_change_is_named_alone(paths):
    assert [s.key for s in PAPER_PROTOCOL] == list(BREAKS)
    assert set(BREAKS) <= set(KEYS)
    for key, value in BREAKS.items():
        params = PARAMS / ("full-rar-b.yaml" if key == "rar_views" else "full-var-d16.yaml")
        extra = {"rar_views": "random"} if key == "n_views" else {}  # ten-crop needs 10 views; VAR ignores it
        mismatches = protocol_mismatches(load_config(params, **paths, **extra, **{key: value}))
        assert [m.key for m in mismatches] == [key], (key, [str(m) for m in mismatches])


def test_values_are_compared_as_numbers_and_the_family_decides(paths):
    rar = load_config(PARAMS / "full-rar-b.yaml", **paths)
    # RAR-B's official sampling written out (16 as an int) is the same protocol as {}
    assert protocol_mismatches(rar.replace(sampling_kwargs={"guidance_scale": 16, "temperature": 1.0})) == []
    (sampling,) = protocol_mismatches(rar.replace(sampling_kwargs={"guidance_scale": 8.0}))
    assert sampling == Mismatch("sampling_kwargs", {"guidance_scale": 8.0, "guidance_scale_pow": 2.75, "temperature": 1.0},
                                {"guidance_scale": 16.0, "guidance_scale_pow": 2.75, "temperature": 1.0})
    assert str(sampling).startswith("sampling_kwargs: {'guidance_scale': 8.0") and "(the paper: {" in str(sampling)
    (span,) = protocol_mismatches(rar.replace(score_span=[424, 680]))  # VAR's span on a RAR model
    assert span.paper == [157, 256]
    var = load_config(PARAMS / "full-var-d16.yaml", **paths)
    assert protocol_mismatches(var.replace(sampling_kwargs={})) == [
        Mismatch("sampling_kwargs", {"cfg": 1.5, "top_k": 0, "top_p": 0.0}, {"cfg": 1.5, "top_k": 900, "top_p": 0.96})]


def test_a_testbed_run_is_named_on_every_count():
    config = load_config(PARAMS / "smoke.yaml", model="var-testbed")
    keys = [m.key for m in protocol_mismatches(config)]
    for key in ("model", "dataset", "similarity", "threshold", "fid_feature", "fid_samples_per_class"):
        assert key in keys
    with pytest.raises(ValueError, match="model: got ''"):
        protocol_mismatches(load_config(PARAMS / "smoke.yaml"))
