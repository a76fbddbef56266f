"""train.py's ``--config`` files, checked before jsonargparse reads them.

jsonargparse loads YAML as PyYAML does: a later duplicate key silently wins, aliases are expanded by
every copy it makes (a "billion laughs" file of a few hundred bytes runs for minutes), bytes that are not
UTF-8 and a scalar where a group of settings belongs end in a traceback. Here each is one line
``error: --config FILE ...`` instead, and the file is read once, bounded, after :func:`check_readable`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from charrnn.errors import UsageError
from charrnn.files import check_readable

MAX_BYTES = 1 << 20  # a config holds settings, not data
MAX_VALUES = 100_000  # values once every alias is expanded; a config has a few hundred
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class _CheckedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (as jsonargparse's is), refusing duplicate keys and aliases that expand too far."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _ConfigProblem(f"has the key {key!r} twice (line {line}); YAML keeps only the last, so remove "
                                     "the one you do not mean")
            seen.add(key)
        return super().construct_mapping(node, deep)


class _ConfigProblem(yaml.YAMLError):
    """What is wrong with a config, to follow its name."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values ``node`` stands for with every alias expanded; raises beyond MAX_VALUES."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise _ConfigProblem("has an alias inside the value it names (a value that contains itself)")
    open_.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_) for k, v in node.value)
    open_.discard(id(node))
    if size > MAX_VALUES:
        raise _ConfigProblem(f"expands to more than {MAX_VALUES:,} values through its aliases (*name); write the "
                             "values out, or use fewer aliases")
    sizes[id(node)] = size
    return size


def config_values(args: Sequence[str]) -> list[str]:
    """The values of ``-c``/``--config`` in ``args``."""
    out = []
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith("--config="):
            out.append(arg.removeprefix("--config="))
    return out


def check_config_args(args: Sequence[str], groups: Iterable[str]) -> None:
    """Checks every ``--config`` in ``args``: a file (or YAML given inline) that jsonargparse would hang on,
    fail on with a traceback, or read other than as written. ``groups``: the top-level keys that hold a group
    of settings (a mapping)."""
    groups = tuple(groups)
    for value in config_values(args):
        if os.path.lexists(value) or not any(c in value for c in ":{\n"):  # a path, or jsonargparse's to judge
            check_config_file(value, groups)
        else:
            check_config_text(value, "--config (inline YAML)", groups)


def check_config_file(path: str, groups: tuple[str, ...]) -> None:
    name = f"--config {path}"
    if not os.path.lexists(path):
        return  # jsonargparse says so itself
    check_readable(path, "--config")
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UsageError(f"{name} is larger than {MAX_BYTES >> 20} MiB; a config holds settings, not data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UsageError(f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); save it as "
                         "UTF-8") from None
    check_config_text(text, name, groups)


def check_config_text(text: str, name: str, groups: tuple[str, ...]) -> None:
    try:
        value = yaml.load(text, Loader=_CheckedLoader)
    except _ConfigProblem as e:
        raise UsageError(f"{name} {e}") from None
    except RecursionError:
        raise UsageError(f"{name} is nested too deeply") from None
    except yaml.YAMLError as e:  # jsonargparse would print its usage and a message without the file's name
        if "nesting depth" in str(getattr(e, "problem", "")):  # libyaml's own limit, where its build has one
            raise UsageError(f"{name} is nested too deeply") from None
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        said = [getattr(e, "context", None), getattr(e, "problem", None)]
        problem = ", ".join(str(x) for x in said if x) or str(e).splitlines()[0]
        raise UsageError(f"{name} is not valid YAML: {problem}{where}") from None
    if not isinstance(value, dict):
        return
    sections = [(f"{sub}: ", value[sub]) for sub in SUBCOMMANDS if isinstance(value.get(sub), dict)]
    for prefix, section in [("", value), *sections]:
        for key in groups:
            if key in section and not isinstance(section[key], dict):
                raise UsageError(f"{name}: {prefix}{key}: {_shown(section[key])} is not a group of settings: "
                                 f"write its settings indented below {key}: (key: value), or leave {key}: out")


def _shown(value: Any) -> str:
    return "null" if value is None else "[...]" if isinstance(value, list) else repr(value)[:40]
