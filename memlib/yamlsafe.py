"""Parameter files read so that what the file says is what the run gets.

PyYAML's ``safe_load`` follows YAML 1.1, which misreads values a person writes in a parameter
file: ``1:30`` is the sexagesimal integer 90, ``010`` is octal 8, ``yes``/``no``/``on``/``off``
are booleans, ``2026-01-01`` is a date, and a key given twice silently keeps its last value.
:func:`load_yaml` reads the YAML 1.2 core schema instead and refuses what it cannot read
faithfully:

- ``true``/``false`` (also ``True``, ``TRUE``, ...) are the only booleans; ``yes``, ``no``, ``on``,
  ``off``, ``y``, ``n`` stay strings, so a check that expects a boolean names the key;
- integers are decimal (``010`` is 10), ``0o17`` or ``0x1f``; ``1:30``, ``1_000`` and dates stay
  strings; ``1e-3`` is a float (YAML 1.1 needs a dot);
- an integer outside the 64-bit range (``-2**63 .. 2**63 - 1``, what numpy and torch seeds take)
  is an error naming the key and line, not an overflow deep inside a stage;
- a key given twice in one mapping is an error naming the key and both lines;
- a file that is not UTF-8, or not valid YAML, is one line naming the file and line.

Every problem raises :class:`ParameterFileError` (a ``ValueError``) with one line
``<file>, line N: <what is wrong>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_INT_TAG = "tag:yaml.org,2002:int"


class ParameterFileError(ValueError):
    """A parameter file that cannot be read faithfully; the message is one line naming the file."""


class _CoreSchemaLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types and checked mappings.
    ``source`` (the file name for messages) is set by :func:`load_yaml_string`."""

    source = "<string>"
    yaml_implicit_resolvers: dict = {}  # replaced below: YAML 1.1's resolvers are not inherited

    def _problem(self, node, text: str) -> ParameterFileError:
        return ParameterFileError(f"{self.source}, line {node.start_mark.line + 1}: {text}")

    def construct_yaml_int(self, node) -> int:
        text = self.construct_scalar(node)
        sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits, 10)

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, MappingNode):
            raise self._problem(node, f"expected a mapping, got {node.id}")
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen_at = first_line.get(key)
            except TypeError:
                raise self._problem(key_node, f"a key must be a name or a number, got {type(key).__name__}") from None
            if seen_at is not None:
                raise self._problem(key_node, f"duplicate key {key!r} (first given at line {seen_at}); "
                                              "give each key once")
            first_line[key] = key_node.start_mark.line + 1
            self._check_int_range(key, value_node)
        return super().construct_mapping(node, deep=deep)

    def _check_int_range(self, key: Any, node) -> None:
        """Integers under ``key`` (directly or in its lists) must fit in 64 bits; nested
        mappings check their own keys."""
        if isinstance(node, SequenceNode):
            for item in node.value:
                self._check_int_range(key, item)
        elif isinstance(node, ScalarNode) and node.tag == _INT_TAG:
            value = self.construct_object(node)
            if not INT64_MIN <= value <= INT64_MAX:
                raise self._problem(node, f"key {key!r}: integer {value} does not fit in 64 bits "
                                          "(expected -2**63 <= n < 2**63)")


_CoreSchemaLoader.add_constructor(_INT_TAG, _CoreSchemaLoader.construct_yaml_int)
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_CoreSchemaLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def load_yaml_string(text: str, source: str = "<string>") -> dict:
    """The mapping in YAML ``text`` (an empty document: ``{}``), read as described in the module
    docstring; ``source`` names the text in messages. Top-level keys must be strings."""
    loader = _CoreSchemaLoader(text)
    loader.source = source
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = str(err.problem or err.context or "")
        if problem.startswith("but ") and err.context:  # "expected a single document ..., but found another"
            problem = f"{err.context}, {problem}"
        problem = " ".join(problem.split())
        raise ParameterFileError(f"{source}{where}: not valid YAML ({problem})") from None
    except yaml.YAMLError as err:
        raise ParameterFileError(f"{source}: not valid YAML ({' '.join(str(err).split())})") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterFileError(f"{source}: expected a mapping of parameter names to values, "
                                 f"got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise ParameterFileError(f"{source}: key {key!r} is not a name (expected a mapping of names to values)")
    return data


def load_yaml(path: str | os.PathLike) -> dict:
    """The mapping in the YAML file ``path`` (UTF-8, an optional byte-order mark), read with
    :func:`load_yaml_string`. A missing file is ``FileNotFoundError``; a folder, a file that is
    not UTF-8 or not valid YAML is :class:`ParameterFileError`, each naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ParameterFileError(f"{path}: is a folder, expected a YAML parameter file")
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ParameterFileError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); "
                                 "save the file as UTF-8") from None
    return load_yaml_string(text, source=str(path))
