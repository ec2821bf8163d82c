"""Safe YAML reading that keeps every node's place, and a checker that collects every problem.

Files are parsed to PyYAML's node tree (``yaml.compose`` with the safe loader), never to Python
objects directly: nodes carry line and column marks, duplicate keys stay visible, and no tag can
build an object. Aliases are refused outright, which also refuses alias bombs.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from moe2_cli.errors import Diagnostic, InputError

MAX_FILE_BYTES = 1_048_576
MAX_NODES = 100_000
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq")
}
MAX_DEPTH = 64


def _syntax_diagnostic(path: str, err: yaml.MarkedYAMLError) -> Diagnostic:
    mark = err.problem_mark or err.context_mark
    problem = err.problem or err.context or "invalid YAML"
    if mark is None:
        return Diagnostic(path, None, None, f"invalid YAML: {problem}")
    return Diagnostic(path, mark.line + 1, mark.column + 1, f"invalid YAML: {problem}")


def _decode(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise InputError(Diagnostic(path, line, col, f"not UTF-8 text (got byte 0x{raw[err.start]:02x})"))


def _prescan(path: str, text: str) -> None:
    """Refuse aliases, deep nesting and huge files from the event stream, before any tree exists."""
    count = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        count += 1
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                m = event.start_mark
                raise InputError(Diagnostic(path, m.line + 1, m.column + 1,
                                            f"YAML nesting is deeper than {MAX_DEPTH} levels"))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            m = event.start_mark
            raise InputError(Diagnostic(path, m.line + 1, m.column + 1,
                                        f"YAML aliases are not allowed (got *{event.anchor})"))
        if count > MAX_NODES:
            raise InputError(Diagnostic(path, None, None, f"file has more than {MAX_NODES} YAML nodes"))


def read_yaml(path: str | Path, display: str | None = None) -> Node:
    """Parse one file to its root node, or raise InputError with a located diagnostic."""
    display = display or str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise InputError(Diagnostic(display, None, None, f"cannot read file ({err.strerror or err})"))
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(Diagnostic(display, None, None, f"file is larger than {MAX_FILE_BYTES} bytes"))
    text = _decode(display, raw)
    try:
        _prescan(display, text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        raise InputError(_syntax_diagnostic(display, err))
    except yaml.YAMLError as err:
        raise InputError(Diagnostic(display, None, None, f"invalid YAML: {err}"))
    if root is None or (isinstance(root, ScalarNode) and root.value == ""):
        raise InputError(Diagnostic(display, 1, 1, "file is empty"))
    return root


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

    def _scalar(self, node: Node, what: str, kind: str):
        if not self._plain(node, what):
            return None
        if not isinstance(node, ScalarNode):
            self.error(node, f"{what} must be {kind} (got {describe(node)})")
            return None
        try:
            return SafeConstructor().construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError):
            self.error(node, f"{what} is not a valid {kind} (got {describe(node)})")
            return None

    def string(self, node: Node, what: str) -> str | None:
        value = self._scalar(node, what, "text")
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(node, f"{what} must be non-empty text (got {describe(node)})")
            return None
        return value

    def number(self, node: Node, what: str, *, positive=False, non_negative=False, unit_interval=False,
               integer=False) -> float | None:
        """A finite number with the stated bounds; booleans are not numbers."""
        kind = "an integer" if integer else "a number"
        value = self._scalar(node, what, kind)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.error(node, f"{what} must be {kind} (got {describe(node)})")
            return None
        if not math.isfinite(value):
            self.error(node, f"{what} must be finite (got {describe(node)})")
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
