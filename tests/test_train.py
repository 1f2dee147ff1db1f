"""Tests of memlib.train: tiny two-step runs of the four stages, atomic checkpoints that load
strictly through the registry, the schedule and the stopping rule; the shipped checkpoints."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from memlib import data as mdata
from memlib import train
from memlib.results import file_sha256
from memlib.models.loading import read_state_dict
from memlib.models.registry import build_generator, get_config, load_generator

CHECKPOINTS = Path(__file__).resolve().parent.parent / "data" / "checkpoints"

TINY = {
    "var": dict(depth=1, width=64, num_heads=1, vocab_size=32, z_channels=8, ch=32, num_res_blocks=1),
    "rar": dict(
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        codebook_size=32,
        tokenizer_hidden_channels=32,
        tokenizer_z_channels=8,
    ),
}


def tiny_config(family):
    return get_config(train.MODEL_NAMES[family], **TINY[family])


@pytest.fixture(scope="module")
def small_data():
    """16 training images (2 of them planted, at 3 copies; 2 control) and 8 held-out images of
    the shipped testbed."""
    data = mdata.load_testbed()
    planted, control = data.planted_ids[:2], data.control_ids[:2]
    others = np.flatnonzero(~data.is_planted() & ~data.is_control())[:12]
    keep = np.sort(np.concatenate([planted, control, others]))
    copies = np.ones(len(keep), dtype=np.int64)
    copies[np.searchsorted(keep, planted)] = 3
    return dataclasses.replace(
        data,
        train_images=data.train_images[keep],
        train_labels=data.train_labels[keep],
        train_source_indices=data.train_source_indices[keep],
        heldout_images=data.heldout_images[:8],
        heldout_labels=data.heldout_labels[:8],
        heldout_source_indices=data.heldout_source_indices[:8],
        planted_ids=np.searchsorted(keep, planted),
        control_ids=np.searchsorted(keep, control),
        train_copies=copies,
    )


@pytest.mark.parametrize("family", ["var", "rar"])
def test_two_step_runs_write_loadable_checkpoints(family, small_data, tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(family)
    tok_record = train.run_tokenizer_stage(
        family, small_data, tmp_path, seed=0, config=config, progress=False,
        settings=train.TokenizerSettings(steps=2, batch_size=8, warmup_steps=1, restart_every=1, log_every=1),
    )
    gen_record = train.run_generator_stage(
        family, small_data, tmp_path, seed=0, config=config, progress=False,
        settings=train.GeneratorSettings(epochs=1, batch_size=8, max_steps=2),
    )
    weights, tokenizer_weights = train.checkpoint_paths(tmp_path, family)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [weights.name, weights.with_suffix(".json").name, tokenizer_weights.name, tokenizer_weights.with_suffix(".json").name]
    )  # no temp files left behind
    for path, record in ((weights, gen_record), (tokenizer_weights, tok_record)):
        on_disk = json.loads(path.with_suffix(".json").read_text())
        assert on_disk == json.loads(json.dumps(record))
        assert on_disk["weights_sha256"] == file_sha256(path)
        assert on_disk["seed"] == 0 and on_disk["config"]["family"] == family
    assert tok_record["steps"] == 2 and tok_record["log"][0]["codes_restarted_so_far"] > 0
    assert gen_record["tokenizer_sha256"] == tok_record["weights_sha256"]
    assert gen_record["steps"] == 2 and gen_record["steps_per_epoch"] == -(-(16 + 2 * (3 - 1)) // 8)
    epochs = gen_record["log"]
    assert [e["epoch"] for e in epochs] == [0, 1] and all(np.isfinite(e["heldout_loss"]) for e in epochs)
    assert gen_record["kept_epoch"] in (0, 1)
    check = gen_record["memorization_check"]["prefixes"]
    assert set(check) == {str(train.CHECK_PREFIX[family])} | ({str(2 * train.CHECK_PREFIX["rar"])} if family == "rar" else set())
    counts = check[str(train.CHECK_PREFIX[family])]
    assert list(counts) == ["control", "3x", "other_train", "heldout"]  # by group, in dose order
    assert counts["3x"].endswith("/2") and counts["control"].endswith("/2") and counts["other_train"].endswith("/12")

    generator = load_generator(config, weights, tokenizer_weights)
    saved = read_state_dict(weights)
    for name, tensor in generator.transformer.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    images = mdata.to_float_images(small_data.train_images[:2])
    assert generator.images_to_tokens(images).shape == (2, generator.seq_len)


def test_tokenizer_training_lowers_reconstruction_error(small_data):
    torch.set_num_threads(1)
    generator = build_generator(tiny_config("rar"))
    before, _ = train.reconstruction_mse(generator, mdata.testbed_views(small_data.train_images, "rar"))
    settings = train.TokenizerSettings(steps=6, batch_size=16, warmup_steps=1, restart_every=2, log_every=6)
    images = small_data.train_images
    result = train.train_tokenizer(generator, images, images, settings, seed=0, progress=False)
    assert result["final"]["heldout_recon_mse_01"] < before


def test_kept_weights_are_the_best_heldout_epoch(small_data):
    """With a destructive learning rate every epoch is worse than the start: the initial weights are kept."""
    torch.set_num_threads(1)
    generator = build_generator(tiny_config("rar"))
    tokens = train.tokenize(generator, mdata.testbed_views(small_data.train_images, "rar"))
    labels = torch.as_tensor(small_data.train_labels)
    initial = {k: v.clone() for k, v in generator.transformer.state_dict().items()}
    settings = train.GeneratorSettings(epochs=3, patience=2, batch_size=8, lr=50.0, warmup_frac=0.0)
    result = train.train_transformer(
        generator, small_data.train_images, labels, np.arange(16), tokens, labels, settings, seed=0, progress=False
    )
    assert result["kept_epoch"] == 0 and result["epochs_run"] == 2  # stopped by patience
    assert all(e["heldout_loss"] > result["log"][0]["heldout_loss"] for e in result["log"][1:])
    for name, tensor in generator.transformer.state_dict().items():
        assert torch.equal(tensor, initial[name]), name


def test_lr_schedule():
    peak, total, warmup = 1.0, 100, 10
    assert train.lr_at(0, total, warmup, peak) == pytest.approx(0.1)
    assert train.lr_at(9, total, warmup, peak) == pytest.approx(1.0)
    assert train.lr_at(55, total, warmup, peak) == pytest.approx(0.5)
    assert train.lr_at(100, total, warmup, peak) == pytest.approx(0.0)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(state, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(train, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "m.safetensors", {})
    assert list(tmp_path.iterdir()) == []


def test_parser_defaults():
    args = train.build_parser().parse_args(["all"])
    assert args.stage == "all" and args.seed == 0 and args.threads <= 2
    assert args.no_augment is False  # the family's augmentation is the default
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["vae"])


@pytest.mark.parametrize("family", ["var", "rar"])
def test_shipped_checkpoints_load_strictly(family):
    weights, tokenizer_weights = train.checkpoint_paths(CHECKPOINTS, family)
    if not (weights.is_file() and tokenizer_weights.is_file()):
        pytest.skip(f"shipped checkpoints not present yet ({weights.name}); run `make checkpoints`")
    record = json.loads(weights.with_suffix(".json").read_text())
    assert record["weights_sha256"] == file_sha256(weights)
    assert record["tokenizer_sha256"] == file_sha256(tokenizer_weights)
    generator = load_generator(train.MODEL_NAMES[family], weights, tokenizer_weights)
    data = mdata.load_testbed()
    most_copied = data.groups()[f"{max(data.levels)}x"][:4]
    tokens = generator.images_to_tokens(mdata.testbed_views(data.train_images[most_copied], family))
    logits = generator.teacher_forced_logits(tokens, torch.as_tensor(data.train_labels[most_copied]))
    # the most duplicated images are memorized: teacher-forced top-1 accuracy far above chance (1/512)
    assert (logits.argmax(-1) == tokens).float().mean() > 0.5
