"""memlib.stages.make_runs: the runs of a parameter set, as the notebooks and the sweep see them."""

import pytest

from memlib.config import TESTBED_MODELS, make_config
from memlib.stages import make_runs


def test_empty_model_is_the_testbed_pair_with_shipped_checkpoints(tmp_path):
    runs = make_runs(make_config(results_dir=str(tmp_path), prefix_lengths=[0, 1, 5, 8]), "attack", usable_prefixes=True)
    assert {family: run.name for family, run in runs.items()} == TESTBED_MODELS
    var, rar = runs["var"].config, runs["rar"].config
    assert var.model.checkpoint.endswith("data/checkpoints/var-testbed.safetensors")
    assert rar.model.tokenizer_checkpoint.endswith("data/checkpoints/rar-testbed-tokenizer.safetensors")
    assert runs["var"].out != runs["rar"].out and runs["var"].out == tmp_path / "var-testbed"
    assert var.attack.prefix_lengths == [0, 1, 5]  # VAR accepts scale boundaries only (1 + 4 = 5 tokens)
    assert rar.attack.prefix_lengths == [0, 1, 5, 8]
    assert list(make_runs(make_config(results_dir=str(tmp_path)), "unitmem", family="rar")) == ["rar"]


def test_no_accepted_prefix_names_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="prefix_lengths: got \\[2, 3\\]; var-testbed accepts none"):
        make_runs(make_config(results_dir=str(tmp_path), prefix_lengths=[2, 3]), "attack", usable_prefixes=True)


def test_empty_model_with_checkpoint_paths_is_refused(tmp_path):
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="model: got ''"):
        make_runs(make_config(results_dir=str(tmp_path), checkpoint=str(ckpt)), "unitmem")
