"""Parameter files are read as written: duplicate keys, YAML 1.1 surprises, huge integers,
non-UTF-8 and invalid files each give one line naming the file (and line and key)."""

from pathlib import Path

import pytest
import yaml

from memlib.config import make_config as validate_params
from memlib.yamlsafe import ParameterFileError, load_yaml, load_yaml_string

PARAMS = Path(__file__).resolve().parents[1] / "notebooks" / "params"


def write(tmp_path, text: str | bytes, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_a_duplicate_key_is_an_error_naming_file_line_and_key(tmp_path):
    path = write(tmp_path, "seed: 0\nmax_images: 200\nthreshold: 0.9\nmax_images: 0\n")
    with pytest.raises(ParameterFileError) as err:
        load_yaml(path)
    assert one_line(err) == (f"{path}, line 4: duplicate key 'max_images' (first given at line 2); give each key once")


def test_a_duplicate_key_in_a_nested_mapping_is_an_error_too(tmp_path):
    path = write(tmp_path, "model_overrides:\n  depth: 2\n  width: 8\n  depth: 3\n")
    with pytest.raises(ParameterFileError, match=r"line 4: duplicate key 'depth' \(first given at line 2\)"):
        load_yaml(path)


def test_sexagesimal_stays_a_string_and_the_check_names_the_key(tmp_path):
    path = write(tmp_path, "seed: 1:30\n")
    assert yaml.safe_load(path.read_text()) == {"seed": 90}  # what YAML 1.1 makes of it
    params = load_yaml(path)
    assert params == {"seed": "1:30"}
    with pytest.raises(ValueError, match=r"seed: got '1:30'; expected an integer >= 0"):
        validate_params(params)


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "OFF", "y", "n"])
def test_yes_no_on_off_are_strings_not_booleans(word):
    params = load_yaml_string(f"strict_images: {word}\n")
    assert params == {"strict_images": word}
    with pytest.raises(ValueError, match=rf"strict_images: got '{word}'; expected true"):
        validate_params(params)


def test_core_schema_values():
    text = ("a: true\nb: False\nc: 010\nd: 0o17\ne: 0x1f\nf: 1e-3\ng: -2.5\nh: 2026-01-01\n"
            "i: 1_000\nj: ~\nk:\nl: [0, 5, -3]\nm: .inf\n")
    assert load_yaml_string(text) == {"a": True, "b": False, "c": 10, "d": 15, "e": 31, "f": 0.001, "g": -2.5,
                                      "h": "2026-01-01", "i": "1_000", "j": None, "k": None, "l": [0, 5, -3],
                                      "m": float("inf")}


@pytest.mark.parametrize("text, line, key", [("seed: 1180591620717411303424\n", 1, "seed"),
                                             ("seed: 0\nprefix_lengths: [0, 5,\n  -99999999999999999999]\n", 3,
                                              "prefix_lengths")])
def test_an_integer_beyond_64_bits_is_an_error_naming_the_key(tmp_path, text, line, key):
    path = write(tmp_path, text)
    with pytest.raises(ParameterFileError) as err:
        load_yaml(path)
    assert one_line(err).startswith(f"{path}, line {line}: key '{key}': integer ")
    assert "does not fit in 64 bits" in str(err.value)


def test_the_largest_64_bit_integers_are_accepted():
    assert load_yaml_string(f"a: {2**63 - 1}\nb: {-(2**63)}\n") == {"a": 2**63 - 1, "b": -(2**63)}


def test_a_non_utf8_file_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "seed: 0\nresults_dir: r\xe9sultats\n".encode("latin-1"))
    with pytest.raises(ParameterFileError) as err:
        load_yaml(path)
    assert one_line(err) == f"{path}, line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    assert load_yaml(write(tmp_path, b"\xef\xbb\xbfseed: 3\n")) == {"seed": 3}


@pytest.mark.parametrize("text, line", [("seed: 0\nprefix_lengths: [0, 5\n", 3), ("seed: 0\n\tk: 1\n", 2),
                                        ("a: b: c\n", 1), ("seed: 0\n---\nseed: 1\n", 2)])
def test_invalid_yaml_is_one_line_naming_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(ParameterFileError) as err:
        load_yaml(path)
    assert one_line(err).startswith(f"{path}, line {line}: not valid YAML (")


@pytest.mark.parametrize("text, expected", [("- 1\n- 2\n", "got list"), ("just text\n", "got str"),
                                            ("1: 2\n", "key 1 is not a name")])
def test_a_file_that_is_not_a_mapping_of_names_is_refused(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ParameterFileError, match=expected):
        load_yaml(path)


def test_empty_file_missing_file_and_folder(tmp_path):
    assert load_yaml(write(tmp_path, "# only a comment\n")) == {}
    with pytest.raises(FileNotFoundError, match="no-such.yaml"):
        load_yaml(tmp_path / "no-such.yaml")
    with pytest.raises(ParameterFileError, match="is a folder"):
        load_yaml(tmp_path)


@pytest.mark.parametrize("path", sorted(PARAMS.glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_parameter_files_read_as_before(path):
    """Switching from yaml.safe_load changes nothing for the book's own files."""
    assert load_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8"))
