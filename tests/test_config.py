"""memlib.config: one typed run config, validated once, every default in one place."""

import dataclasses
import re
from pathlib import Path

import pytest

from memlib import config as cfg
from memlib.config import load_config, make_config, model_configs, require

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "notebooks" / "params"


def test_validation_names_parameter_value_and_expectation(tmp_path):
    with pytest.raises(ValueError) as err:
        make_config({"k_percent": 0, "n_views": -3, "activaton": "post", "model": "var-d99", "checkpoint": "nope.pth"},
                    base_dir=tmp_path)
    message = str(err.value)
    assert "k_percent: got 0; expected null (the paper's k% of the family) or a percentage with 0 < k <= 100" in message
    assert "n_views: got -3; expected a positive integer" in message
    assert "activaton: unknown parameter" in message
    assert "model: got 'var-d99'" in message and "var-d30" in message  # lists the known names
    assert "checkpoint: got 'nope.pth'" in message and "not found" in message


def test_defaults_sections_paths_and_stage_requirements(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"")
    config = make_config({"checkpoint": "w.pth"}, base_dir=tmp_path, random_seeds=[3, 4, 5])
    assert config.model.checkpoint == str(tmp_path / "w.pth") and config.unitmem.n_views == 10 and config.run.seed == 0
    assert config.sweep.random_seeds == [3, 4, 5] and config.model.tokenizer_checkpoint is None
    assert config.flat()["checkpoint"] == config.model.checkpoint and set(config.flat()) == set(cfg.KEYS)
    assert list(config.sections("unitmem")) == ["unitmem"]
    path = tmp_path / "p.yaml"
    path.write_text("checkpoint: w.pth\n")
    with pytest.raises(ValueError, match="stage 'unitmem'(.|\n)*model: got ''(.|\n)*tokenizer_checkpoint"):
        require(load_config(path, base_dir=tmp_path), "unitmem")
    with pytest.raises(ValueError, match=r"random_seeds: got \[1, 2\]; expected a list of >= 3"):
        make_config(random_seeds=[1, 2])
    with pytest.raises(ValueError, match="sscd_torchscript: got ''"):
        make_config(similarity="sscd")
    with pytest.raises(ValueError, match="n_views: got 4; expected 10 when rar_views is 'ten-crop'"):
        make_config(rar_views="ten-crop", n_views=4)
    with pytest.raises(FileNotFoundError, match="parameter file not found"):
        load_config(tmp_path / "absent.yaml")
    path.write_text("seed: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(path)


def test_keys_are_unique_across_sections_and_every_field_is_documented():
    names = [f.name for section in cfg.SECTIONS.values() for f in dataclasses.fields(section)]
    assert len(names) == len(set(names))
    assert {f.name for f in dataclasses.fields(cfg.RunConfig)} == set(cfg.SECTIONS)
    for section in cfg.SECTIONS.values():
        for f in dataclasses.fields(section):
            assert f.metadata["meaning"] and f.metadata["expected"], f.name


def test_choices_that_name_data_options_are_the_data_modules():
    from memlib import data

    assert cfg.CLASS_IDS == data.CLASS_IDS and cfg.RAR_ATTACK_CROPS == data.RAR_ATTACK_CROPS
    config = make_config()
    assert (config.data.class_ids, config.attack.rar_attack_crop, config.run.num_workers) == ("wnid", "resize-centre", "auto")
    with pytest.raises(ValueError) as err:
        make_config(class_ids="index", rar_attack_crop="centre", num_workers=-1)
    for line in ("class_ids: got 'index'; expected 'wnid' or 'sorted'",
                 "rar_attack_crop: got 'centre'; expected 'resize-centre' or 'ten-crop-centre'",
                 "num_workers: got -1; expected 'auto' or an integer >= 0"):
        assert line in str(err.value)


@pytest.mark.parametrize("name", sorted(p.name for p in PARAMS.glob("*.yaml")))
def test_the_repository_parameter_files_use_only_config_keys(name):
    import yaml

    keys = set(yaml.safe_load((PARAMS / name).read_text()) or {})
    assert keys <= set(cfg.KEYS), keys - set(cfg.KEYS)
    if name in ("testbed.yaml", "smoke.yaml"):  # the full-scale files name files that are not shipped
        load_config(PARAMS / name)


def test_readme_parameter_table_is_the_configs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = cfg.parameter_table()
    assert table in readme, "README.md's parameter table differs from memlib.config.parameter_table(); paste it"
    rows = [line for line in readme.splitlines() if re.match(r"\| (run|model|data|unitmem|attack|sweep|fid|book) \| `", line)]
    assert len(rows) == len(cfg.KEYS)


def test_testbed_pair_gets_its_checkpoints_folders_and_the_papers_k(tmp_path):
    models = model_configs(make_config(results_dir=str(tmp_path)), "attack")
    assert list(models) == ["var", "rar"]
    for family, model in models.items():
        name = cfg.TESTBED_MODELS[family]
        assert model.model.model == name and model.run.results_dir == str(tmp_path / name)
        assert model.model.checkpoint == str(cfg.TESTBED_CHECKPOINTS / f"{name}.safetensors")
    # the k% a page reports (and its provenance records) is the paper's for the family, as a float
    assert models["var"].sweep.k_percent == 10.0 and models["rar"].sweep.k_percent == 5.0
    assert isinstance(models["var"].sweep.k_percent, float)
    assert models["var"].flat()["k_percent"] == 10.0
    given = model_configs(make_config(results_dir=str(tmp_path), k_percent=20), "attack")
    assert {f: m.sweep.k_percent for f, m in given.items()} == {"var": 20.0, "rar": 20.0}


def test_a_named_model_needs_its_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="model: got ''(.|\n)*testbed pair"):
        model_configs(make_config(checkpoint=str(PARAMS / "smoke.yaml")), "unitmem")
    with pytest.raises(ValueError, match="stage 'unitmem'(.|\n)*checkpoint: got ''"):
        model_configs(make_config(model="var-d16"), "unitmem")


def test_paper_k_percent_comes_from_the_paper_numbers_file():
    assert cfg.paper_k_percent("var") == 10 and cfg.paper_k_percent("rar") == 5


def test_reported_prefix_is_a_page_setting_checked_against_the_prefix_lengths():
    config = cfg.make_config(prefix_lengths=[0, 8, 30], reported_prefix={"rar": 8})
    assert config.book.reported_prefix == {"rar": 8}
    assert "reported_prefix" not in config.sections("attack")["attack"]  # no stage's cache key sees it
    with pytest.raises(ValueError, match=r"reported_prefix: got rar: 5; expected one of prefix_lengths \[0, 8, 30\]"):
        cfg.make_config(prefix_lengths=[0, 8, 30], reported_prefix={"rar": 5})
    with pytest.raises(ValueError, match="reported_prefix"):
        cfg.make_config(reported_prefix={"dit": 8})


def test_cache_dir_is_optional_and_follows_each_testbed_model(tmp_path):
    assert make_config().run.cache_dir is None and make_config(cache_dir="").run.cache_dir is None
    assert make_config(cache_dir="results/main").run.cache_dir == str(cfg.REPO_ROOT / "results" / "main")
    variant, main = tmp_path / "variant", tmp_path / "main"
    models = model_configs(make_config(results_dir=str(variant), cache_dir=str(main)), "attack")
    for family, model in models.items():
        name = cfg.TESTBED_MODELS[family]
        assert (model.run.results_dir, model.run.cache_dir) == (str(variant / name), str(main / name))
    assert all(m.run.cache_dir is None for m in model_configs(make_config(results_dir=str(variant)), "attack").values())
    with pytest.raises(ValueError, match="results_dir: got ''"):
        make_config(results_dir="")  # results_dir, unlike cache_dir, has no empty form
