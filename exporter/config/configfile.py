"""The configuration file's mechanics, apart from what its settings mean: reading within size
and alias bounds, `${VAR}` expansion, environment overrides by path, and one line per validation
problem.

Environment overrides: `WORKFLOW_EXPORTER_<PATH>`, path parts joined by `__`, list items by index:
`WORKFLOW_EXPORTER_INTERVAL=1m`, `WORKFLOW_EXPORTER_SOURCES__0__API_KEY_FILE=/run/secrets/key`.
Values are read as YAML scalars, so `60`, `true` and `[1, 5, 30]` keep their types.

The web configuration file (`exporter.config.webconfig`) is read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

ENV_PREFIX = "WORKFLOW_EXPORTER_"
# Bounds on what a configuration file may cost to read. Anchors and aliases stay allowed (shared
# source defaults), but a few hundred bytes of nested aliases ("billion laughs") expand to
# billions of values, and `${VAR}` expansion walks every one of them.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_VALUES = 100_000
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read_document(
    path: Path | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any] | None, list[str]]:
    if path is None:
        return None, ["config.file: no configuration file given (--config.file)"]
    try:
        text = read_bounded(path)
    except OSError as exc:
        return None, [f"config.file: cannot read {str(path)!r}: {exc.strerror}"]
    except UnicodeDecodeError:
        return None, [f"config.file: {str(path)!r} is not UTF-8 text"]
    except ValueError as exc:
        return None, [f"config.file: {str(path)!r} {exc}"]
    try:
        data = bounded_yaml(text)
    except YamlBoundError as exc:
        return None, [f"config.file: refused: {exc}"]
    except yaml.YAMLError as exc:
        # Only the position and the parser's complaint, never the snippet of the line.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        return None, [f"config.file: invalid YAML{where}: {problem}"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, ["config.file: the top level must be a mapping of settings"]
    expanded, problems = expand_tree(data, environ)
    return expanded, problems


def read_bounded(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """The file's text; ValueError if it is larger than `limit` bytes (checked while reading, so
    a file growing or a named pipe cannot get past it)."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data.decode("utf-8")


class YamlBoundError(yaml.YAMLError):
    """The document is valid YAML, but larger once its aliases are expanded than allowed."""


def bounded_yaml(text: str, max_values: int = MAX_CONFIG_VALUES) -> Any:
    """`yaml.safe_load`, refusing documents whose aliases expand past `max_values` nodes (or
    refer to themselves) before anything is built from them."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_expanded(node, max_values)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _count_expanded(root: yaml.Node, limit: int) -> int:
    """Nodes in the document with every alias expanded, counted over the shared node graph in
    linear time (each node's expanded size is computed once)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlBoundError(f"an alias refers to a node that contains it{_at(node)}")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > limit:
            raise YamlBoundError(
                f"aliases expand to more than {limit} values{_at(node)} (an alias bomb?)"
            )
        sizes[key] = total
        return total

    return size(root)


def _at(node: yaml.Node) -> str:
    mark = node.start_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def expand_variables(
    text: str, environ: Mapping[str, str], where: str = "config"
) -> tuple[str, list[str]]:
    """`${VAR}` and `${VAR:-default}` from the environment; `$$` is a literal `$`."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{where}: environment variable {name} is not set")
        return ""

    return _VAR.sub(replace, text), problems


def expand_tree(node: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, list[str]]:
    """Expands variables in every string value of the parsed document.

    After parsing, not before: an expanded value is data, never YAML, so a key holding `#` or
    `: ` stays whole, and commented-out lines need no variables set."""
    if isinstance(node, str):
        return expand_variables(node, environ, path or "config")
    problems: list[str] = []
    if isinstance(node, list):
        items = []
        for index, item in enumerate(node):
            value, found = expand_tree(item, environ, f"{path}[{index}]")
            items.append(value)
            problems += found
        return items, problems
    if isinstance(node, dict):
        mapping = {}
        for key, item in node.items():
            value, found = expand_tree(item, environ, f"{path}.{key}" if path else str(key))
            mapping[key] = value
            problems += found
        return mapping, problems
    return node, problems


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = bounded_yaml(environ[name]) if environ[name] else ""
        except yaml.YAMLError:
            value = environ[name]
        if value is None:
            value = ""
        problem = _set_path(data, path, value)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def _set_path(data: Any, path: list[str], value: Any) -> str | None:
    node = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return f"no list item {part!r} at {'.'.join(path[:depth]) or 'top level'}"
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            return f"cannot set {'.'.join(path)}: {'.'.join(path[:depth])} is not a mapping"
    return None


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for error in exc.errors():
        path = prefix
        for part in error["loc"]:
            if part == "[key]":  # pydantic's mark of a mapping's key: the key is named already
                continue
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(error["msg"])
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        # A model-level check names its field at the start of its message.
        field_match = re.match(r"^([a-z_]+): (.*)$", message)
        if field_match and error["type"] == "value_error" and not error["loc"]:
            path = f"{path}.{field_match.group(1)}" if path else field_match.group(1)
            message = field_match.group(2)
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        if message[:1].isupper() and not message[1:2].isupper():
            message = message[0].lower() + message[1:]
        lines.append(f"{path or 'config'}: {message}")
    return lines
