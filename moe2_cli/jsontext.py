"""JSON parsed within limits: nesting depth and the length of one number.

Python's parser recurses once per nesting level (a few thousand levels exhaust the stack) and
turns a number of thousands of digits into an integer slowly, or refuses it with a bare
ValueError. No moe2 file nests deeper than a few levels or needs a number longer than a
float's round-trip form, so both are refused with a message that says which limit was hit.
The checks cost nothing on ordinary text: the exact ones run only when a quick count or
pattern says a limit might be passed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.inputs import read_record, shown_as

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
_LONG_RUN = re.compile(rf"[-+0-9.eE]{{{MAX_NUMBER_CHARS + 1},}}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class JSONLimitError(ValueError):
    """The text is JSON, or may be, but passes a limit; the message says which."""


def loads(text: str) -> Any:
    """``json.loads`` that refuses nesting deeper than :data:`MAX_DEPTH` and numbers longer
    than :data:`MAX_NUMBER_CHARS` characters with :class:`JSONLimitError`. Malformed JSON
    raises ``json.JSONDecodeError`` as usual."""
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(text)
    if _LONG_RUN.search(text) is None:
        return json.loads(text)
    return json.loads(text, parse_int=_number(int), parse_float=_number(float))


def _check_depth(text: str) -> None:
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            raise JSONLimitError(f"nesting deeper than {MAX_DEPTH} levels")


def _number(kind):
    def parse(digits: str):
        if len(digits) > MAX_NUMBER_CHARS:
            raise JSONLimitError(f"a number longer than {MAX_NUMBER_CHARS} characters")
        return kind(digits)
    return parse


def why(err: Exception) -> str:
    """What a failed :func:`loads` says about the text, in a few words."""
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} (line {err.lineno}, column {err.colno})"
    if isinstance(err, RecursionError):
        return f"nesting deeper than {MAX_DEPTH} levels"
    return str(err).split(";")[0]


def load_record(path: str | Path, what: str) -> Any:
    """The JSON value of a small file (a saved ``moe2 select`` record), read within the record
    cap of :mod:`moe2_cli.inputs`; unreadable or malformed JSON is an InputError at its place."""
    text = read_record(path, what)
    try:
        return loads(text)
    except json.JSONDecodeError as err:
        raise InputError(Diagnostic(shown_as(path), err.lineno, err.colno, f"invalid JSON: {err.msg}")) from None
    except (ValueError, RecursionError) as err:
        raise InputError(Diagnostic(shown_as(path), None, None, f"invalid JSON: {why(err)}")) from None
