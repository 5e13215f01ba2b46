"""Reading the YAML and JSON files users write, refusing harmful input before it is built.

A spec or settings file is read in three passes over libyaml (or PyYAML's pure-Python
parser where libyaml is missing): the event stream is checked for depth without recursion,
the node graph is measured with aliases counted as expanded (a "billion laughs" file is
refused at its size, not after it has been expanded), and only then are Python values
built, refusing duplicate keys and non-finite numbers on the way. Every refusal names the
file, the place and the fix on one line; no message ever shows an expanded value.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from typing import Any

import yaml

from planner.spec.errors import ConfigError

# Deeper than any spec or settings file needs; PyYAML and json recurse per level.
MAX_DEPTH = 64
# Expanded nodes (aliases counted at their expanded size): a 10,000-run grid takes hundreds.
MAX_NODES = 200_000

try:  # libyaml is many times faster; PyYAML's pure-Python classes give the same values.
    _BaseLoader: Any = yaml.CSafeLoader
    SAFE_DUMPER: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader
    SAFE_DUMPER = yaml.SafeDumper

_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr`` cut to a line: deep or huge values (an alias bomb) are never expanded."""
    return _SHORT.repr(value)


# Text libyaml's emitter writes exactly as PyYAML's does: printable characters only. Line
# breaks, tabs and other control characters are quoted and folded differently by the two.
_EMITTED_ALIKE = re.compile("^[\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd]*$")
# PyYAML writes a string key as an explicit "? key" entry from 123 characters (the key and
# its "!!str" tag reach 128); libyaml only from 129. Keys in between take PyYAML's emitter.
_SIMPLE_KEY = 123
_LIBYAML_SIMPLE_KEY = 129


def _emitted_alike(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not _EMITTED_ALIKE.fullmatch(item):
                return False
        elif isinstance(item, dict):
            if any(isinstance(k, str) and _SIMPLE_KEY <= len(k) < _LIBYAML_SIMPLE_KEY for k in item):
                return False
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True


def dump_yaml(value: Any, **options: Any) -> str:
    """``yaml.safe_dump``, through libyaml when present and the text comes out the same.

    libyaml is several times faster; for strings with line breaks or control characters
    its emitter quotes and folds differently, so those values take PyYAML's own emitter.
    """
    dumper = SAFE_DUMPER if SAFE_DUMPER is yaml.SafeDumper or _emitted_alike(value) else yaml.SafeDumper
    return str(yaml.dump(value, Dumper=dumper, **options))


_PIECES: dict[tuple[Any, ...], str] = {}
# Printable, yet line breaks to YAML: a quoted scalar holding one spans lines, indented.
_UNICODE_BREAK = re.compile("[\x85\u2028\u2029]")
_SHORT_TEXT = 40  # strings this short cannot reach the wrap width (100) at the depths split below


def _short_strings(value: Any, depth: int = 0) -> bool:
    """True when no string in ``value`` can be wrapped, at any indentation used here."""
    if depth > 5:
        return False
    if isinstance(value, str):
        # One line, never wrapped: PyYAML folds printable text only at spaces, so a long
        # path without spaces stays whole at any indentation.
        return (bool(_EMITTED_ALIKE.fullmatch(value)) and not _UNICODE_BREAK.search(value)
                and (len(value) <= _SHORT_TEXT or " " not in value))
    if isinstance(value, dict):
        return all(_short_strings(k, depth) and _short_strings(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_short_strings(v, depth + 1) for v in value)
    return True


_SCALARS: dict[tuple[Any, ...], str] = {}
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./-]*")
_RESOLVER = yaml.resolver.Resolver()


_PLAIN_SEEN: dict[str, bool] = {}


def _plain(value: Any) -> bool:
    """A string PyYAML writes as is: path-like characters, and read back as a string (not 1e-5, yes, null)."""
    if not isinstance(value, str) or not _PLAIN_TEXT.fullmatch(value):
        return False
    if value[0] == "/":  # no implicit type (number, bool, null, date) starts with a slash
        return True
    known = _PLAIN_SEEN.get(value)
    if known is None:
        if len(_PLAIN_SEEN) > 100_000:
            _PLAIN_SEEN.clear()
        known = _PLAIN_SEEN[value] = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == "tag:yaml.org,2002:str"
    return known


def _scalar_text(item: Any, options: dict[str, Any], opts: str) -> str:
    """A scalar value's text after ``key: `` (newline included), dumped once per distinct value."""
    # The type keeps 1, 1.0 and true apart; repr keeps 0.0 and -0.0 apart.
    scalar = (type(item), repr(item), opts)
    text = _SCALARS.get(scalar)
    if text is None:
        if len(_SCALARS) > 100_000:
            _SCALARS.clear()
        text = _SCALARS[scalar] = dump_yaml({"k": item}, **options)[len("k: "):]
    return text


_SCALAR_TYPES = (str, int, float, bool, type(None))
# (options, indentation, key, type, value) -> the entry's line, or "" where PyYAML must decide.
_LINES: dict[tuple[Any, ...], str] = {}


def _fast_block(mapping: dict[Any, Any], pad: str, options: dict[str, Any], opts: str, width: int) -> str | None:
    """The block-style text of ``mapping``'s entries at indentation ``pad``, or None where PyYAML must decide.

    Written directly: plain keys; plain strings, numbers, booleans and nulls; nested
    mappings; lists of those scalars. A quoted string is taken from PyYAML once per value
    and used only where its line cannot reach the wrap width. Anything else (long keys,
    double-quoted or folding text, lists of mappings) returns None, and the caller dumps
    the whole entry the slow way. 10,000 run configs differ in a few values per section:
    each scalar entry's line is made once per distinct value and indentation.
    """
    out: list[str] = []
    lines = _LINES
    for key, item in mapping.items():
        kind = type(item)
        if kind in _SCALAR_TYPES:
            # The type keeps 1, 1.0 and true apart; repr keeps 0.0 and -0.0 apart.
            ident = (opts, pad, key, kind, repr(item) if kind is float else item)
            line = lines.get(ident)
            if line is None:
                text = _fast_scalar(item, len(pad) + len(key) + 2, options, opts, width) if _simple_key(key) else None
                line = "" if text is None else f"{pad}{key}: {text}"
                if len(lines) > 200_000:
                    lines.clear()
                lines[ident] = line
            if not line:
                return None
            out.append(line)
        elif not _simple_key(key):
            return None
        elif kind is dict:
            if not item:
                out.append(f"{pad}{key}: {{}}\n")
                continue
            body = _fast_block(item, pad + "  ", options, opts, width)
            if body is None:
                return None
            out.append(f"{pad}{key}:\n")
            out.append(body)
        elif kind is list:
            if not item:
                out.append(f"{pad}{key}: []\n")
                continue
            out.append(f"{pad}{key}:\n")
            for element in item:
                # A block sequence under a mapping key is not indented ("indentless").
                text = _fast_scalar(element, len(pad) + 2, options, opts, width)
                if text is None:
                    return None
                out.append(f"{pad}- {text}")
        else:
            return None
    return "".join(out)


_SIMPLE_KEYS: dict[Any, bool] = {}


def _simple_key(key: Any) -> bool:
    """A key PyYAML writes as ``key:``: a plain string shorter than its explicit-key length."""
    known = _SIMPLE_KEYS.get(key) if type(key) is str else False
    if known is None:
        if len(_SIMPLE_KEYS) > 100_000:
            _SIMPLE_KEYS.clear()
        known = _SIMPLE_KEYS[key] = len(key) < _SIMPLE_KEY and _plain(key)
    return known


def _fast_scalar(item: Any, column: int, options: dict[str, Any], opts: str, width: int) -> str | None:
    """A scalar's text (with its newline) starting at ``column``; None if PyYAML might break or escape it."""
    kind = type(item)
    if kind is int:
        return f"{item}\n"
    if kind is str:
        if _plain(item):
            return f"{item}\n"  # no spaces: PyYAML never folds it, at any column
        if not _EMITTED_ALIKE.fullmatch(item) or _UNICODE_BREAK.search(item):
            return None  # line breaks and control characters
        text = _scalar_text(item, options, opts)
        # Single-quoted or plain text folds only at a space past the wrap width: a line that
        # ends before it stays whole. Double-quoted text (escapes) may break anywhere.
        if text.startswith('"') or text.count("\n") != 1 or column + len(text) - 1 > width:
            return None
        return text
    if kind is float or kind is bool or item is None:
        return _scalar_text(item, options, opts)
    return None


def _entry(key: str, item: Any, opts: str, options: dict[str, Any], depth: int) -> str:
    """The block-style text of ``{key: item}``, nested mappings assembled from their own entries.

    A nested block mapping is its key line and its entries' texts indented by two spaces,
    which holds as long as no line can wrap: hence ``_short_strings``.
    """
    ident: tuple[Any, ...]
    if item is None or isinstance(item, (str, int, float)):
        # The type keeps 1, 1.0 and true apart; repr keeps 0.0 and -0.0 apart.
        ident = (key, type(item), repr(item) if isinstance(item, float) else item, opts)
    else:
        try:
            ident = (key, json.dumps(item, sort_keys=False), opts)
        except (TypeError, ValueError):  # not JSON-able (a tuple prints differently): no reuse
            return dump_yaml({key: item}, **options)
    piece = _PIECES.get(ident)
    if piece is not None:
        return piece
    if len(key) < _SIMPLE_KEY and _plain(key):
        if _plain(item) or (isinstance(item, int) and not isinstance(item, bool)):
            piece = f"{key}: {item}\n"  # what the emitter writes for a plain key and plain value
        elif item is None or isinstance(item, (bool, float)):
            # Written the same after any plain key: dumped once per distinct value.
            piece = f"{key}: {_scalar_text(item, options, opts)}"
    if (piece is None and isinstance(item, dict) and item and depth < 5 and options.get("allow_unicode") is True
            and len(key) < _SIMPLE_KEY
            and all(isinstance(k, str) for k in item) and _short_strings(item)):
        head = dump_yaml({key: {}}, **options)
        if head.endswith(" {}\n"):
            body = "".join(_entry(k, v, opts, options, depth + 1) for k, v in item.items())
            piece = head[: -len(" {}\n")] + "\n" + "".join("  " + line for line in body.splitlines(keepends=True))
    if piece is None:
        piece = dump_yaml({key: item}, **options)
    if len(_PIECES) > 100_000:
        _PIECES.clear()
    _PIECES[ident] = piece
    return piece


# Options under which entry texts join into the whole (two-space indentation, block style).
_PIECEWISE_OPTIONS = {"sort_keys", "allow_unicode", "width", "default_flow_style"}


def dump_block_mapping(value: dict[str, Any], **options: Any) -> str:
    """``dump_yaml`` of a block-style mapping, one entry at a time, reusing entries seen before.

    A block mapping's text is its entries' texts one after another, so each entry is
    dumped once per distinct value: 10,000 run configs share most of their sections.
    """
    if (options.get("default_flow_style", False) is not False or options.get("sort_keys", True) is not False
            or set(options) - _PIECEWISE_OPTIONS or not value or not all(isinstance(k, str) for k in value)):
        # Sorted keys, or flow style for leaf collections (None): PyYAML's own order and layout.
        return dump_yaml(value, **options)
    opts = json.dumps(options, sort_keys=True, default=str)
    width = options.get("width") or 80
    width = width if width > 4 else 80  # PyYAML's best_width: the given width if over twice the indent
    fast = options.get("allow_unicode") is True
    whole = _fast_block(value, "", options, opts, width) if fast else None
    if whole is not None:
        return whole
    pieces: list[str] = []
    for key, item in value.items():  # entry by entry: only those PyYAML must decide take the slow way
        piece = _fast_block({key: item}, "", options, opts, width) if fast else None
        pieces.append(piece if piece is not None else _entry(key, item, opts, options, 0))
    return "".join(pieces)


class _CheckedLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loading that refuses duplicate keys and NaN or infinite numbers."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _Refused(
                        f"line {_line(key_node.start_mark)}: key {short_repr(key)} appears twice in one mapping; "
                        "keep one (YAML would silently use the last)"
                    )
                seen.add(key)
        return dict(super().construct_mapping(node, deep=deep))

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = float(super().construct_yaml_float(node))
        if not math.isfinite(value):
            raise _Refused(
                f"line {_line(node.start_mark)}: {node.value!r} is not a usable number (NaN or infinite); give a finite number"
            )
        return value


_CheckedLoader.add_constructor("tag:yaml.org,2002:float", _CheckedLoader.construct_yaml_float)


class _Refused(Exception):
    """A problem found while loading; turned into a ConfigError naming the file."""


def _line(mark: Any) -> int:
    return int(mark.line) + 1 if mark is not None else 0


def _check_events(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` without building anything (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > max_depth:
                raise _Refused(
                    f"line {_line(event.start_mark)}: nested more than {max_depth} levels deep; "
                    "a spec or settings file needs a few levels: flatten it"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _expanded_size(root: yaml.Node, max_nodes: int) -> None:
    """Count nodes as if every alias were expanded, memoised per node, so no expansion happens."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: children before parents.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        sizes[id(node)] = total
        if total > max_nodes:
            raise _Refused(
                f"line {_line(node.start_mark)}: expands to more than {max_nodes:,} values (aliases counted as expanded); "
                "write the values out, or raise limits.max_spec_values in claude.local.md"
            )


def load_yaml(text: str, source: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document safely.

    Raises:
        ConfigError: for invalid YAML, duplicate keys, NaN or infinite numbers, nesting
            deeper than ``max_depth`` or more than ``max_nodes`` values once expanded.
    """
    try:
        _check_events(text, max_depth)
        loader = _CheckedLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, max_nodes)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _Refused as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read; flatten it") from None


def load_json(text: str, source: str) -> Any:
    """Parse JSON; refuse what Python cannot read (too deep) with a one-line message.

    Raises:
        ValueError: with a one-line reason (the callers word their own fix).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({str(exc).splitlines()[0]})") from None


def decode_text(data: bytes, source: str) -> str:
    """Decode a file the user wrote as UTF-8.

    Raises:
        ConfigError: naming the byte offset, when it is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source}: not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r}); save it as UTF-8"
        ) from None
