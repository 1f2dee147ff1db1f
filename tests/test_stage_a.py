"""Stage A as the attack stage runs it (memlib.stages.stage_a / stage_attack): streamed, decoded
in DataLoader workers, sharded by rank, on the testbed and on an ImageNet-layout folder.

The oracle is the unstreamed implementation: every attacked image's tokens at once,
memlib.extract.score_images, then memlib.extract.select_candidates."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from toy_pipeline import TINY_VAR, write_tiny_var

from memlib import data as mdata
from memlib import stages
from memlib.config import make_config
from memlib.distributed import shard_indices
from memlib.extract import score_images, select_candidates
from memlib.models.registry import build_generator
from memlib.results import ResultFileError, load_result


def _run(tmp_path: Path, **values) -> stages.Run:
    params = write_tiny_var(tmp_path / "ckpt")
    params.update(values)
    return stages.make_run(make_config(params), tmp_path / "out")


def _unstreamed(run: stages.Run, images: stages.TrainingImages, ids_N: np.ndarray):
    """The attack's stage A and B before streaming: all tokens in memory, one selection."""
    gen, batch = run.generator(), run.config.run.batch_size
    pairs = [images.dataset[int(i)] for i in ids_N]
    views_N3HW = torch.stack([images.ground_truth(image) for image, _ in pairs])
    labels_N = torch.tensor([int(label) for _, label in pairs])
    with torch.no_grad():
        tokens_NL = torch.cat([gen.images_to_tokens(views_N3HW[i : i + batch]) for i in range(0, len(ids_N), batch)])
    scores_N = score_images(gen, tokens_NL, labels_N, batch_size=batch)
    chosen = select_candidates(scores_N, labels_N, per_class=run.config.attack.per_class)
    return scores_N, torch.as_tensor(ids_N)[chosen], tokens_NL[chosen]


def test_streamed_sharded_stage_a_equals_the_unstreamed_selection_ties_included(tmp_path):
    torch.manual_seed(0)
    run = _run(tmp_path, max_images=60, per_class=3, shard_size=7, batch_size=4)
    images = stages.training_images(run, 1.0)
    ids_N = images.reduce(np.arange(len(images)), 60, seed=0)
    # max_images: a seeded class-spread sample (6 of each of the 10 classes), not the first 60
    assert np.array_equal(ids_N, mdata.sample_across_classes(images.labels_N, 60, seed=0))
    assert np.bincount(images.labels_N[ids_N]).tolist() == [6] * 10 and not np.array_equal(ids_N, np.arange(60))
    scores_N, ids_C, tokens_CL = _unstreamed(run, images, ids_N)
    assert len(torch.unique(scores_N)) < len(scores_N) / 2  # a random tiny model: many equal scores (ties)

    folder = tmp_path / "shards"
    rank1 = stages.Run(run.config, run.out, run.device, rank=1, world_size=2, _gen=run.generator())
    with pytest.raises(ResultFileError, match="shard-00000"):  # rank 1 computes its block, then finds rank 0's missing
        stages.stage_a(rank1, images, ids_N, folder, {})
    written = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.json")}
    assert sorted(written) == [f"shard-{j:05d}.json" for j in shard_indices(9, 1, 2)]  # 9 shards of 7
    rank0 = stages.Run(run.config, run.out, run.device, rank=0, world_size=2, _gen=run.generator())
    top, streamed_N = stages.stage_a(rank0, images, ids_N, folder, {})
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.json") if p.name in written} == written
    ids, labels, scores, tokens = top.result()
    assert torch.equal(streamed_N, scores_N) and torch.equal(ids, ids_C) and torch.equal(tokens, tokens_CL)
    assert torch.equal(labels, torch.as_tensor(images.labels_N)[ids]) and torch.equal(scores, scores_N[torch.searchsorted(torch.as_tensor(ids_N), ids)])
    # a shard stores the tokens of its own top per_class per class only, never all of its images
    shard = load_result(folder / "shard-00000").tensors
    assert len(shard["image_ids"]) == 7 and len(shard["top_tokens"]) <= 7
    assert all(len(load_result(p.with_suffix("")).tensors["top_tokens"]) <= 3 * 10 for p in folder.glob("shard-*.json"))


def test_the_attack_stage_reports_the_scored_images_and_unitmem_reduces_dprime_across_classes(tmp_path):
    torch.manual_seed(0)
    run = _run(tmp_path, max_images=30, per_class=1, prefix_lengths=[0, 1])
    outcome = stages.stage_attack(run)
    images = stages.training_images(run, 1.0)
    expected = mdata.sample_across_classes(images.labels_N, 30, seed=0)
    assert np.array_equal(outcome.image_ids_N.numpy(), expected) and len(outcome.scores_N) == 30
    assert set(outcome.result.candidate_ids.tolist()) <= set(expected.tolist())
    assert outcome.result.candidate_labels.tolist() == sorted(set(images.labels_N[expected].tolist()))
    unitmem = stages.stage_unitmem(run)
    assert unitmem.params["images"] == expected.tolist()  # D' = every image here, reduced the same way


def _write_tiny_var_weights(run: stages.Run) -> None:
    """Random weights for the run's model (its overrides) in the run's checkpoint files."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    gen = build_generator(stages.model_config(run.config))
    for module, path in ((gen.transformer, run.config.model.checkpoint), (gen.tokenizer, run.config.model.tokenizer_checkpoint)):
        save_file({k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}, path)


def _jpegs(root: Path, per_class: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, n in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(root / name / f"{i}.JPEG")


def test_a_wnid_folder_feeds_official_class_ids_decodes_after_the_cache_check_and_skips_bad_files(tmp_path, monkeypatch):
    _jpegs(tmp_path / "train", {"n01440764": 3, "n02102040": 4})  # official indices 0 and 217
    damaged = tmp_path / "train" / "n02102040" / "3.JPEG"
    damaged.write_bytes(damaged.read_bytes()[:300])  # decoding fails (verify() would pass it)
    run = _run(tmp_path, dataset="imagenet", imagenet_train_dir=str(tmp_path / "train"), max_images=0, per_class=2,
               prefix_lengths=[0, 1], num_workers=2, model_overrides={**TINY_VAR, "num_classes": 1000})
    _write_tiny_var_weights(run)

    opened = []
    original = mdata.ImageFolderSample.read
    monkeypatch.setattr(mdata.ImageFolderSample, "read", lambda self, i, draft=False: opened.append(i) or original(self, i, draft))
    images = stages.training_images(run, 1.0)
    assert opened == [] and images.labels_N.tolist() == [0, 0, 0, 217, 217, 217, 217]
    outcome = stages.stage_attack(run)
    assert outcome.result.candidate_labels.tolist() == [0, 0, 217, 217]
    assert torch.isnan(outcome.scores_N[6]) and not torch.isnan(outcome.scores_N[:6]).any()
    assert 6 not in outcome.result.candidate_ids.tolist()
    info = load_result(run.out / "attack").meta["info"]["images"]
    assert info["unreadable"] == 1 and "2 of 1000 ImageNet-1k classes" in info["classes"] and "n02102040=217" in info["classes"]

    # a second call finds its result before decoding anything
    monkeypatch.setattr(mdata.ImageFolderSample, "read", lambda *a, **k: pytest.fail("decoded before the cache check"))
    again = stages.stage_attack(run)
    assert torch.equal(again.result.candidate_ids, outcome.result.candidate_ids)
    monkeypatch.setattr(mdata.ImageFolderSample, "read", original)

    # decoding in the main process gives the same result (num_workers is in no cache key)
    same = stages.stage_attack(stages.make_run(run.config.replace(num_workers=0), tmp_path / "out0"))
    for name in ("candidate_ids", "candidate_scores", "similarity", "generated_tokens"):
        assert torch.equal(getattr(same.result, name), getattr(outcome.result, name)), name
    torch.testing.assert_close(same.scores_N, outcome.scores_N, rtol=0, atol=0, equal_nan=True)

    # strict: the damaged file is an error naming it
    with pytest.raises(ValueError, match=r"n02102040/3\.JPEG: unreadable image .*strict=True"):
        stages.stage_attack(stages.make_run(run.config.replace(strict_images=True, num_workers=0), tmp_path / "strict"))


def test_an_unknown_wnid_is_refused_by_name_and_class_ids_sorted_is_the_option(tmp_path):
    _jpegs(tmp_path / "train", {"n01440764": 1, "n99999999": 1})
    run = _run(tmp_path, dataset="imagenet", imagenet_train_dir=str(tmp_path / "train"))
    with pytest.raises(ValueError, match=r"class folder\(s\) n99999999 are not ImageNet-1k wnids"):
        stages.training_images(run, 1.0)
    sorted_run = stages.make_run(run.config.replace(class_ids="sorted"), tmp_path / "out")
    assert stages.training_images(sorted_run, 1.0).labels_N.tolist() == [0, 1]


@pytest.mark.parametrize("crop", ["resize-centre", "ten-crop-centre"])
def test_the_rar_attack_crop_of_a_folder_follows_the_setting(tmp_path, crop):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "x.png").rename(tmp_path / "train" / "n01440764" / "0.png")
    run = _run(tmp_path, dataset="imagenet", imagenet_train_dir=str(tmp_path / "train"), rar_attack_crop=crop)
    run._gen = SimpleNamespace(family="rar", image_size=32)  # training_images reads only these two
    images = stages.training_images(run, 1.0)
    image, _ = images.dataset[0]
    expected = mdata.rar_attack_view(image, 32) if crop == "resize-centre" else mdata.rar_ten_crop(image, 32)[4]
    assert torch.equal(images.ground_truth(image), expected)
    assert not torch.equal(mdata.rar_attack_view(image, 32), mdata.rar_ten_crop(image, 32)[4])  # the two differ


def test_decode_workers_auto_is_zero_for_the_testbed_and_cpu_derived_for_a_folder(tmp_path):
    run = _run(tmp_path)
    assert stages.decode_workers(run, stages.training_images(run, 1.0)) == 0
    folder_images = SimpleNamespace(folder=object())
    assert 0 <= stages.decode_workers(run, folder_images) <= 8
    assert stages.decode_workers(stages.make_run(run.config.replace(num_workers=3)), folder_images) == 3
