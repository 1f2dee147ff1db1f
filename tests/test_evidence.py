"""The testbed's fitness evidence: data/testbed_evidence.json, written by scripts/testbed_evidence.py.

The shipped JSON must come from the current script (its version and default parameters) run
on the shipped checkpoints and data (sha256 of each), and meet the issue's targets; a tiny
run of the script's ``main`` on a few images must work.
"""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from memlib.results import to_jsonable

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
EVIDENCE = DATA / "testbed_evidence.json"


def _load_script():
    spec = importlib.util.spec_from_file_location("testbed_evidence", ROOT / "scripts" / "testbed_evidence.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


evidence_script = _load_script()


@pytest.fixture(scope="module")
def evidence() -> dict:
    assert EVIDENCE.is_file(), f"{EVIDENCE} missing: run `python scripts/testbed_evidence.py`"
    return json.loads(EVIDENCE.read_text(encoding="utf-8"))


def test_written_by_the_current_script_with_its_defaults(evidence):
    assert evidence["script"] == "scripts/testbed_evidence.py"
    assert evidence["script_version"] == evidence_script.SCRIPT_VERSION
    assert evidence["params"] == dataclasses.asdict(evidence_script.EvidenceParams())
    assert evidence["training_images"] == 6000 and evidence["planted_images"] == 50
    assert evidence["code_version"] and evidence["wall_seconds"] > 0
    assert set(evidence["families"]) == {"var", "rar"}
    for name in evidence["figures"].values():
        assert (DATA / name).is_file(), f"figure {name} listed in the evidence but missing"


def test_checksums_match_the_shipped_files(evidence):
    assert set(evidence["checkpoints_sha256"]) == {
        "var-testbed.safetensors", "var-testbed-tokenizer.safetensors",
        "rar-testbed.safetensors", "rar-testbed-tokenizer.safetensors"}
    for name, sha in evidence["checkpoints_sha256"].items():
        assert evidence_script.file_sha256(DATA / "checkpoints" / name) == sha, f"{name} changed since the evidence was written"
    assert evidence_script.file_sha256(DATA / "checkpoints" / "classifier.safetensors") == evidence["classifier_sha256"]
    assert evidence_script.file_sha256(DATA / evidence["data_file"]) == evidence["data_sha256"]


@pytest.mark.parametrize("family", ["var", "rar"])
def test_targets_met(evidence, family):
    record = evidence["families"][family]
    attack = record["attack"]
    assert attack["headline_prefix"] == evidence_script.PREFIXES[family][0]
    assert attack["candidates"] > evidence["planted_images"]  # the pool is bigger than the planted set
    counts = attack["by_prefix"][str(attack["headline_prefix"])]
    assert counts["extracted"] == counts["planted_extracted"] + counts["non_planted_extracted"]
    by_level = attack["by_level_at_headline_prefix"]
    assert set(by_level) == {"control", "2x", "4x", "8x", "16x", "32x", "ordinary"}
    assert sum(level["images"] for level in by_level.values()) == evidence["training_images"]
    assert sum(level["extracted"] for level in by_level.values()) == counts["extracted"]
    top = by_level["32x"]
    # memorization exists where it was planted most: the testbed is of no use for the study without it
    assert top["extracted"] / top["images"] >= 0.5, f"{family}: the most duplicated level is not memorized: {by_level}"
    assert by_level["control"]["extracted"] == 0, f"{family}: control images (seen once) extracted: {by_level}"
    # the second target (at least 80% of what is extracted is planted) is recorded, met or not; data/README.md
    # and the testbed page report the outcome
    targets = record["targets"]
    assert targets["top_level_extracted_fraction"] == top["extracted"] / top["images"]
    assert targets["met"] == (targets["top_level_extracted_fraction"] >= targets["top_level_extracted_fraction_at_least"]
                              and counts["precision"] >= targets["planted_fraction_at_least"])
    # the threshold used is the calibrated one, and it keeps the nearest-other rate within the rule
    calibration = record["calibration"]
    assert attack["threshold"] == calibration["chosen"]["threshold"]
    assert calibration["chosen"]["false_positive_rate"] <= evidence["params"]["max_fpr"]
    assert calibration["to_source"]["n"] == calibration["to_nearest_other"]["n"] == attack["candidates"]
    assert 0.0 < record["tokenizer"]["mse"] < 0.05
    assert record["samples"]["classifier_accuracy"] > 5 * record["samples"]["chance"]


def test_auc_oracle():
    auc = evidence_script.auc
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # ties count one half


def test_tiny_run_of_main(tmp_path):
    out, figures = tmp_path / "evidence.json", tmp_path / "figures"
    record = evidence_script.main(["--out", str(out), "--figures", str(figures), "--max-images", "40",
                                   "--max-heldout", "20", "--samples-per-class", "1", "--grid-per-class", "1",
                                   "--per-class", "2"])
    assert json.loads(out.read_text(encoding="utf-8")) == to_jsonable(record)
    assert record["training_images"] == 40 and record["params"]["max_images"] == 40
    for name in record["figures"].values():
        assert (tmp_path / name).is_file()
    for family, result in record["families"].items():
        attack = result["attack"]
        assert attack["candidates"] <= 2 * 10 and set(attack["by_prefix"]) == {str(n) for n in evidence_script.PREFIXES[family]}
        assert result["tokenizer"]["heldout_images"] == 20
        for counts in attack["by_prefix"].values():
            assert 0 <= counts["planted_extracted"] <= counts["extracted"] <= attack["candidates"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary file left


def test_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="--per-class"):
        evidence_script.main(["--out", str(tmp_path / "x.json"), "--per-class", "0"])
