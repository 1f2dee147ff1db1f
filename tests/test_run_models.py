"""memlib.params.run_models: the notebooks' view of which models a parameter set runs."""

import pytest

from memlib.params import TESTBED_MODELS, paper_k_percent, run_models


def test_empty_model_is_the_testbed_pair_with_shipped_checkpoints(tmp_path):
    models = run_models({"results_dir": str(tmp_path), "prefix_lengths": [0, 1, 5, 8]}, "attack", filter_prefixes=True)
    assert {family: p["model"] for family, p in models.items()} == TESTBED_MODELS
    var, rar = models["var"], models["rar"]
    assert var["checkpoint"].endswith("data/checkpoints/var-testbed.safetensors")
    assert rar["tokenizer_checkpoint"].endswith("data/checkpoints/rar-testbed-tokenizer.safetensors")
    assert var["results_dir"] != rar["results_dir"]
    assert var["prefix_lengths"] == [0, 1, 5]  # VAR accepts scale boundaries only (1 + 4 = 5 tokens)
    assert rar["prefix_lengths"] == [0, 1, 5, 8]


def test_no_accepted_prefix_names_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="prefix_lengths: got \\[2, 3\\]; var-testbed accepts none"):
        run_models({"results_dir": str(tmp_path), "prefix_lengths": [2, 3]}, "attack", filter_prefixes=True)


def test_empty_model_with_checkpoint_paths_is_refused(tmp_path):
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="model: got ''"):
        run_models({"results_dir": str(tmp_path), "checkpoint": str(ckpt)}, "unitmem")


def test_paper_k_percent_per_family():
    assert paper_k_percent("var") == 10
    assert paper_k_percent("rar") == 5
