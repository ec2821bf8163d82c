"""Safe YAML reading that keeps every node's place, and a checker that collects every problem.

Files are parsed once, by libyaml's event parser when PyYAML has it, into PyYAML's node tree:
nodes carry line and column marks, duplicate keys stay visible, and no tag can build an object.
The tree is built here, from the event stream, so that size, depth and alias limits hold before
any node exists: aliases are refused outright (which refuses alias bombs), and nesting deeper
than :data:`MAX_DEPTH` never reaches a recursive function. Plain scalars follow YAML 1.2 for
floats, so ``1e-3`` is a number, not text. When libyaml finds a syntax error, the pure-Python
parser reads the file again only to word the diagnostic.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.ids import lookalike_key, lookalike_message
from moe2_cli.inputs import refuse_special

MAX_FILE_BYTES = 1_048_576
MAX_NODES = 100_000
MAX_DEPTH = 64
# No number in a moe2 file means anything beyond this; larger ones only overflow arithmetic.
MAX_NUMBER = 1e12
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq")
}
_REPORTED = object()  # what the checker's readers return after reporting a problem
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Characters YAML forbids in a stream (PyYAML's own rule, checked here to report line:col).
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]")
# The float forms YAML 1.2 adds to YAML 1.1's (which needs a dot and a signed exponent).
_YAML12_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$")
# Constructor failures on a tagged or malformed scalar, e.g. ``!!bool maybe`` (KeyError).
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, OverflowError, KeyError, TypeError, AttributeError)


class _Resolver(Resolver):
    """YAML 1.1 implicit types, plus YAML 1.2's exponent floats (``1e-3``, ``2E+5``)."""


_Resolver.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+.0123456789"))


def _at(path: str, mark, message: str) -> Diagnostic:
    if mark is None:
        return Diagnostic(path, None, None, message)
    return Diagnostic(path, mark.line + 1, mark.column + 1, message)


def _syntax_diagnostic(path: str, err: yaml.MarkedYAMLError) -> Diagnostic:
    problem = err.problem or err.context or "invalid YAML"
    return _at(path, err.problem_mark or err.context_mark, f"invalid YAML: {problem}")


def _decode(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise InputError(Diagnostic(path, line, col, f"not UTF-8 text (got byte 0x{raw[err.start]:02x})")) from None


def _check_printable(path: str, text: str) -> None:
    match = _NOT_PRINTABLE.search(text)
    if match is None:
        return
    before = text[: match.start()]
    line = before.count("\n") + 1
    col = match.start() - (before.rfind("\n") + 1) + 1
    raise InputError(Diagnostic(path, line, col, f"control character U+{ord(match.group()):04X} "
                                                 "is not allowed in YAML"))


class _Builder:
    """Builds the node tree from parser events, refusing aliases, deep nesting and huge trees."""

    def __init__(self, path: str):
        self.path = path
        self.resolver = _Resolver()
        self.stack: list[tuple[Node, list[Node | None]]] = []  # open containers, each with its pending key
        self.root: Node | None = None
        self.documents = self.nodes = 0

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):  # the most frequent event first
            # libyaml's marks have the same fields as PyYAML's, only another class.
            self._attach(ScalarNode(self._tag(event, ScalarNode, event.value), event.value,
                                    event.start_mark, event.end_mark, style=event.style))  # type: ignore[arg-type]
        elif isinstance(event, yaml.AliasEvent):
            raise InputError(_at(self.path, event.start_mark, f"YAML aliases are not allowed (got *{event.anchor})"))
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise InputError(_at(self.path, event.start_mark, "a file must hold one YAML document (got more)"))
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            self._open(event)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            node, _ = self.stack.pop()
            node.end_mark = event.end_mark

    def _tag(self, event, kind, value) -> str:
        if event.tag is None or event.tag == "!":
            return self.resolver.resolve(kind, value, event.implicit)
        return event.tag

    def _open(self, event) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise InputError(_at(self.path, event.start_mark, f"YAML nesting is deeper than {MAX_DEPTH} levels"))
        kind = SequenceNode if isinstance(event, yaml.SequenceStartEvent) else MappingNode
        node = kind(self._tag(event, kind, None), [], event.start_mark, None, flow_style=event.flow_style)
        self._attach(node)
        self.stack.append((node, [None]))

    def _attach(self, node: Node) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InputError(_at(self.path, node.start_mark, f"file has more than {MAX_NODES} YAML nodes"))
        if not self.stack:
            self.root = node
            return
        parent, pending = self.stack[-1]
        if isinstance(parent, SequenceNode):
            parent.value.append(node)
        elif pending[0] is None:
            pending[0] = node
        else:
            parent.value.append((pending[0], node))
            pending[0] = None


def _build(path: str, events: Iterable[yaml.Event]) -> Node | None:
    builder = _Builder(path)
    for event in events:
        builder.feed(event)
    return builder.root


def parse_yaml(text: str, display: str) -> Node:
    """Parse YAML text to its root node, or raise InputError with a located diagnostic. The
    text is read in Unicode normal form C, so names compare by what they spell (:mod:`moe2_cli.ids`)."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    _check_printable(display, text)
    try:
        root = _build(display, yaml.parse(text, Loader=_FAST_LOADER))
    except yaml.YAMLError as err:
        raise InputError(_reworded(display, text, err)) from None
    if root is None or (isinstance(root, ScalarNode) and root.value == "" and root.tag.endswith(":null")):
        raise InputError(Diagnostic(display, 1, 1, "file is empty"))
    return root


def _reworded(display: str, text: str, fast_error: yaml.YAMLError) -> Diagnostic:
    """The pure-Python parser's wording of a syntax error (libyaml's differs, and libyaml's own
    nesting limit may fire before this module's, which the pure parser then reports)."""
    err = fast_error
    try:
        _build(display, yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as slow_error:
        err = slow_error
    if isinstance(err, yaml.MarkedYAMLError):
        return _syntax_diagnostic(display, err)
    return Diagnostic(display, None, None, f"invalid YAML: {err}")


def read_yaml(path: str | Path, display: str | None = None) -> Node:
    """Read and parse one file to its root node, or raise InputError with a located diagnostic."""
    display = display or str(path)
    refuse_special(path, "file", display)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or err
        raise InputError(Diagnostic(display, None, None, f"cannot read file ({reason})")) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(Diagnostic(display, None, None, f"file is larger than {MAX_FILE_BYTES} bytes"))
    return parse_yaml(_decode(display, raw), display)


def construct_scalar(node: ScalarNode) -> Any:
    """The Python value of a core-schema scalar; raises ValueError when it is not a valid one."""
    try:
        return SafeConstructor().construct_object(node)
    except _CONSTRUCT_ERRORS as err:
        raise ValueError(str(err)) from None


def to_python(root: Node, display: str) -> tuple[Any, dict[tuple, tuple[int, int]]]:
    """Plain Python values (dicts, lists, scalars) of a tree from :func:`parse_yaml`, and the
    1-based (line, column) of every value by key path; a node that is not plain YAML, or a
    scalar its tag cannot read, is an InputError at its place."""
    marks: dict[tuple, tuple[int, int]] = {}

    def value(node: Node, path: tuple) -> Any:
        marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in _PLAIN_TAGS:
            raise InputError(_at(display, node.start_mark, f"a tag that is not allowed (got {node.tag})"))
        if isinstance(node, MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = _plain_key(key_node)
                if key is None:
                    raise InputError(_at(display, key_node.start_mark,
                                         f"keys must be plain names (got {describe(key_node)})"))
                out[key] = value(value_node, path + (key,))
            return out
        if isinstance(node, SequenceNode):
            return [value(item, path + (i,)) for i, item in enumerate(node.value)]
        try:
            return construct_scalar(node)  # type: ignore[arg-type]  # neither a mapping nor a list
        except ValueError:
            raise InputError(_at(display, node.start_mark, f"not a valid {node.tag.rsplit(':', 1)[-1]} "
                                                           f"(got {describe(node)})")) from None

    return value(root, ()), marks


def _plain_key(node: Node) -> str | int | float | None:
    """A mapping key that is a plain name or number, or None."""
    if not isinstance(node, ScalarNode) or node.tag not in _PLAIN_TAGS:
        return None
    try:
        key = construct_scalar(node)
    except ValueError:
        return None
    return None if isinstance(key, bool) or not isinstance(key, (str, int, float)) else key


def describe(node: Node) -> str:
    """How a node looks to a user, for 'got X' in messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    if node.tag.endswith(":str"):
        return repr(text)
    return text if text else "nothing"


class Checker:
    """Walks a node tree and collects one Diagnostic per problem; never stops at the first."""

    def __init__(self, path: str):
        self.path = path
        self.diagnostics: list[Diagnostic] = []

    def error(self, node: Node | None, message: str) -> None:
        if node is None:
            self.diagnostics.append(Diagnostic(self.path, None, None, message))
        else:
            m = node.start_mark
            self.diagnostics.append(Diagnostic(self.path, m.line + 1, m.column + 1, message))

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise InputError(self.diagnostics)

    # ---- structure

    def mapping(self, node: Node, what: str, required=(), optional=(), free_keys: bool = False):
        """Check a mapping's keys; return {key: (key_node, value_node)} or None if not a mapping.

        With ``free_keys`` any string key is allowed (e.g. names of LLMs or categories).
        """
        if not self._plain(node, what):
            return None
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping (got {describe(node)})")
            return None
        allowed = list(required) + list(optional)
        out: dict[str, tuple[Node, Node]] = {}
        looks: dict[str, str] = {}  # look-alike key -> the free key first spelled so
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or not key_node.tag.endswith((":str", ":int", ":float")):
                self.error(key_node, f"{what} keys must be plain names (got {describe(key_node)})")
                continue
            key = key_node.value
            if key in out:
                self.error(key_node, f"duplicate key {key!r} in {what}")
                continue
            if not free_keys and key not in allowed:
                self.error(key_node, f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}")
                continue
            earlier = looks.setdefault(lookalike_key(key), key) if free_keys else key
            if earlier != key:
                self.error(key_node, lookalike_message(f"{what} key", earlier, key))
                continue
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                self.error(node, f"{what} is missing required key {key!r}")
        return out

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if not self._plain(node, what):
            return None
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list (got {describe(node)})")
            return None
        return list(node.value)

    # ---- scalars

    def _plain(self, node: Node, what: str) -> bool:
        """Only the core schema's tags: an explicit tag could ask for an object to be built."""
        if node.tag in _PLAIN_TAGS:
            return True
        self.error(node, f"{what} has a tag that is not allowed (got {node.tag})")
        return False

    def _scalar(self, node: Node, what: str, kind: str) -> Any:
        """The scalar's value, or :data:`_REPORTED` after reporting why there is none (a null
        is a value here: the caller says what it should have been)."""
        if not self._plain(node, what):
            return _REPORTED
        if not isinstance(node, ScalarNode):
            self.error(node, f"{what} must be {kind} (got {describe(node)})")
            return _REPORTED
        try:
            return construct_scalar(node)
        except ValueError:
            self.error(node, f"{what} is not a valid {kind} (got {describe(node)})")
            return _REPORTED

    def string(self, node: Node, what: str) -> str | None:
        value = self._scalar(node, what, "text")
        if value is _REPORTED:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(node, f"{what} must be non-empty text (got {describe(node)})")
            return None
        return value

    def flag(self, node: Node, what: str) -> bool | None:
        """``true`` or ``false``; text such as ``"yes"`` or a number is not a flag."""
        value = self._scalar(node, what, "true or false")
        if value is _REPORTED:
            return None
        if not isinstance(value, bool):
            self.error(node, f"{what} must be true or false (got {describe(node)})")
            return None
        return value

    def number(self, node: Node, what: str, *, positive=False, non_negative=False, unit_interval=False,
               integer=False, maximum: float = MAX_NUMBER) -> float | None:
        """A finite number with the stated bounds, at most ``maximum`` in size; booleans are not
        numbers."""
        kind = "an integer" if integer else "a number"
        value = self._scalar(node, what, kind)
        if value is _REPORTED:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.error(node, f"{what} must be {kind} (got {describe(node)})")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.error(node, f"{what} must be finite (got {describe(node)})")
        elif abs(value) > maximum:
            self.error(node, f"{what} must be at most {maximum:g} in size (got {describe(node)})")
        elif positive and value <= 0:
            self.error(node, f"{what} must be > 0 (got {describe(node)})")
        elif non_negative and value < 0:
            self.error(node, f"{what} must be >= 0 (got {describe(node)})")
        elif unit_interval and not 0.0 <= value <= 1.0:
            self.error(node, f"{what} must be between 0 and 1 (got {describe(node)})")
        else:
            return value
        return None


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
