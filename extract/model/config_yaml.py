"""Config YAML files read safely: their text, parsed to plain values under size and depth limits, with
their `_BASE_` chain merged. `ConfigError` (every problem of a detector config) lives here, with the
bounded quoting its messages use.

Whatever is wrong with a file (unreadable, not UTF-8, invalid YAML, a key spelled twice, a Python tag,
over the MAX_CONFIG_* limits, a bad _BASE_) raises ConfigError naming it, with the line and column
YAML reports. PyYAML's safe loader builds plain values only; the limits are checked on the parser's
events first, so an alias bomb is refused before it is expanded. A missing `Base-RCNN-C4.yaml`
(py-bottom-up-attention's configs name `../Base-RCNN-C4.yaml`, which lives in the detectron2 tree) is
skipped: the bundled defaults stand in for it (see extract/model/config.py).
"""

from __future__ import annotations

import os
import reprlib
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..image_errors import os_error_reason

# What a config YAML may hold. A detectron2 config is a few KB: a few hundred values, nested four or five
# deep, two or three files in its _BASE_ chain. The limits are far above that and far below what hurts.
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB, per file
MAX_CONFIG_NODES = 100_000  # values, lists and mappings after aliases are expanded ("billion laughs")
MAX_CONFIG_DEPTH = 32  # nested lists / mappings
MAX_BASE_DEPTH = 16  # files in one _BASE_ chain
# Error messages quote at most this many characters of a value, key or path.
_QUOTE_LIMIT = 200


class ConfigError(ValueError):
    """A YAML key or value that this detector cannot honour; the message names the key path (also in
    `key` where one key is at fault)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# What error messages quote of a value, key or path: a bounded repr (its work is bounded too, whatever
# the value holds), cut in the middle past _QUOTE_LIMIT characters.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = _QUOTE_LIMIT
_REPR.maxlong = 40


def quote(value: Any) -> str:
    return clip(_REPR.repr(value))


def clip(text: str) -> str:
    if len(text) <= _QUOTE_LIMIT:
        return text
    return f"{text[: _QUOTE_LIMIT - 40]}...{text[-20:]} ({len(text)} characters)"


def import_yaml():
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - PyYAML is a dependency of the package
        raise ImportError("reading or writing detectron2 YAML configs needs PyYAML: pip install pyyaml") from e
    return yaml


def as_path(source: str | os.PathLike) -> Path | None:
    # A one-line str names a file when something exists at that path (also a directory, a broken link or
    # a symlink loop: reading it then says what is wrong); otherwise it is YAML text.
    if isinstance(source, os.PathLike):
        return Path(source)
    if "\n" not in source and source.strip() and os.path.lexists(source):
        return Path(source)
    return None


def _read_text(path: Path, label: str) -> str:
    """The text of a config file; what keeps it from being one (missing, a directory, unreadable, over
    MAX_CONFIG_BYTES, not UTF-8) raises ConfigError starting with `label`."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):  # not a FIFO or a device, which could block or never end
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        broken = " (a symlink to a missing file)" if os.path.islink(path) else ""
        raise ConfigError(f"{label} does not exist{broken}") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL character in the path
        raise ConfigError(f"cannot read {label}: {os_error_reason(e, path)}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{label} is a directory, not a YAML file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{label} is not a regular file")
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{label} is larger than {MAX_CONFIG_BYTES} bytes (1 MiB), the most a detector config may be "
            "(a detectron2 config is a few KB)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise ConfigError(
            f"{label} is not UTF-8 text: byte 0x{data[e.start]:02x} at line {line}, column {column} ({e.reason}); "
            "save it as UTF-8"
        ) from None


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    """Parse YAML text into plain values, refusing (ConfigError naming `where`, the line and the column)
    invalid YAML, Python tags, recursive aliases, keys spelled twice in one mapping, and documents over
    the MAX_CONFIG_* limits. The limits are checked on the parser's events, before any Python object is
    built, so an alias bomb fails in milliseconds."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{where} has {len(text)} characters, more than a detector config may have ({MAX_CONFIG_BYTES})"
        )
    yaml = import_yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # CSafeLoader when PyYAML is built with libyaml
    try:
        _check_yaml_events(yaml.parse(text, Loader=loader), where)
        tree = yaml.load(text, Loader=loader)  # a safe loader: plain values only
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as e:
        problem = clip(e.problem or e.context or "invalid YAML")
        if e.problem and e.context:  # e.g. "while parsing a flow sequence" and where that began
            problem += f" ({clip(e.context)}{_at(e.context_mark)})"
        raise ConfigError(f"{where}: invalid YAML{_at(e.problem_mark or e.context_mark, text)}: {problem}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a control character, ...)
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{where}: invalid YAML at line {line}: {clip(str(e).splitlines()[0])}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {clip(' '.join(str(e).split()))}") from None
    except ValueError as e:  # a value PyYAML cannot build: a date such as 2001-13-45, an int of 5000 digits
        raise ConfigError(f"{where}: a YAML value cannot be read: {clip(str(e))}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{where} is not a YAML mapping of detectron2 keys (its top level is of type {type(tree).__name__})"
        )
    return tree


@dataclass
class _OpenCollection:
    is_mapping: bool
    anchor: str | None
    nodes: int = 1  # this collection and everything in it so far, aliases expanded
    children: int = 0
    keys: dict[str, int] = field(default_factory=dict)  # mapping key -> line


def _check_yaml_events(events: Iterable[Any], where: str) -> None:
    yaml = import_yaml()
    open_collections: list[_OpenCollection] = []
    anchor_nodes: dict[str, int] = {}  # anchor -> nodes in what it names

    def refused(event: Any, problem: str) -> ConfigError:
        return ConfigError(f"{where}{_at(event.start_mark)}: {problem}")

    for event in events:
        if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
            continue  # stream and document boundaries
        tag = getattr(event, "tag", None) or ""
        if tag.startswith("tag:yaml.org,2002:python/"):
            raise refused(
                event,
                f"the YAML tag {clip(tag.replace('tag:yaml.org,2002:', '!!'))} is not allowed: a detector config "
                "holds plain values (numbers, strings, lists, mappings); Python objects are never built",
            )
        parent = open_collections[-1] if open_collections else None
        is_key = parent is not None and parent.is_mapping and parent.children % 2 == 0
        if is_key and isinstance(event, yaml.ScalarEvent) and event.value != "<<":  # a merge key may repeat
            if event.value in parent.keys:
                raise refused(
                    event,
                    f"key {quote(event.value)} appears twice in one mapping (also on line "
                    f"{parent.keys[event.value]}); YAML would silently keep only the last one",
                )
            parent.keys[event.value] = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_collections) >= MAX_CONFIG_DEPTH:
                raise refused(event, f"lists / mappings nested more than {MAX_CONFIG_DEPTH} deep")
            open_collections.append(_OpenCollection(isinstance(event, yaml.MappingStartEvent), event.anchor))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            closed = open_collections.pop()
            nodes, anchor = closed.nodes, closed.anchor
        elif isinstance(event, yaml.AliasEvent):
            if any(c.anchor == event.anchor for c in open_collections):
                raise refused(
                    event,
                    f"alias *{clip(event.anchor)} refers to a list / mapping that contains it (a recursive value)",
                )
            nodes, anchor = anchor_nodes.get(event.anchor, 1), None  # an undefined alias: the loader names it
        else:
            nodes, anchor = 1, event.anchor
        if anchor is not None:
            anchor_nodes[anchor] = nodes
        if open_collections:
            open_collections[-1].nodes += nodes
            open_collections[-1].children += 1
            nodes = open_collections[-1].nodes
        if nodes > MAX_CONFIG_NODES:
            aliased = " once aliases are expanded" if anchor_nodes else ""
            bomb = "; refusing what looks like an alias bomb" if anchor_nodes else ""
            raise refused(
                event, f"more than {MAX_CONFIG_NODES} values{aliased} (a detector config has a few hundred){bomb}"
            )


def _at(mark: Any, text: str | None = None) -> str:
    if mark is None:
        return ""
    where = f" at line {mark.line + 1}, column {mark.column + 1}"
    lines = text.splitlines() if text is not None else []
    if mark.line < len(lines) and lines[mark.line].strip():
        where += f" ({clip(lines[mark.line].strip())!r})"
    return where


def load_yaml_tree(path: Path, label: str, seen: tuple[Path, ...]) -> dict[str, Any]:
    text = _read_text(path, label)
    resolved = Path(os.path.realpath(path))  # never raises, unlike Path.resolve on a link loop
    if resolved in seen:
        raise ConfigError(f"_BASE_ cycle: {' -> '.join(clip(str(p)) for p in (*seen, resolved))}")
    tree = parse_yaml(text, where=clip(str(path)))
    if "_BASE_" in tree:
        if len(seen) + 1 >= MAX_BASE_DEPTH:
            raise ConfigError(f"{label}: its _BASE_ chain is longer than {MAX_BASE_DEPTH} files")
        base = load_base(tree.pop("_BASE_"), path.parent, named_in=clip(str(path)), seen=(*seen, resolved))
        tree = merge_trees(base, tree)
    return tree


def load_base(base: Any, directory: Path, named_in: str, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{named_in}: _BASE_: {quote(base)} is not a file name")
    path = Path(os.path.expanduser(base))  # os.path.expanduser never raises (Path.expanduser may)
    path = path if path.is_absolute() else directory / path
    if path.name == "Base-RCNN-C4.yaml" and not os.path.lexists(path):
        return {}  # the bundled defaults stand in for it (module docstring)
    return load_yaml_tree(path, label=f"_BASE_ file {clip(str(path))} (named in {named_in})", seen=seen)


def merge_trees(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_trees(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged
