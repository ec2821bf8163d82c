"""Telling which kind of moe2 file a path holds, without parsing it: the name says the form
(``.yaml``, ``.json``, ``.jsonl``, ``.csv``, each maybe gzipped), and the keys of the first
record say the kind, since several kinds share every form. A name that says nothing (no
suffix, ``.txt``) is told by the content alone: JSON, then CSV, then YAML.

Only the top-level keys (or a CSV header) are looked at; the kind's own reader then checks
the whole file, so a misjudged kind still ends in that reader's located diagnostics.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from yaml.nodes import MappingNode, ScalarNode

from moe2_cli import jsontext
from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.fileio import exists_as
from moe2_cli.inputs import text_lines
from moe2_cli.serve.requestlog import LOG_NAME
from moe2_cli.yamlio import read_yaml

_FORMS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class UnknownKind(InputError):
    """The file is none of the kinds moe2 reads (as far as its name and first record tell)."""


def detect(path: Path, kinds: Iterable[str]) -> str:
    """The kind of file at ``path``; UnknownKind (its message lists ``kinds``) when it is none."""
    if exists_as(path, "dir"):  # `report` and `score` read a log folder; lm-eval writes one per run
        return "log" if any(path.glob(LOG_NAME + "*")) else "outcomes"
    form = _FORMS.get(Path(path.name.removesuffix(".gz")).suffix.lower())
    if form == "yaml":
        return _yaml_kind(path, kinds)
    number, first = first_line(path)
    if number is None:
        raise UnknownKind(Diagnostic(str(path), None, None, "file is empty"))
    if form == "csv":
        return _csv_kind(first) or _unknown(path, number, kinds)
    row = _json_object(first)
    if row is not None:
        kind = _line_kind(set(row)) or (_document_kind(set(row)) if form != "jsonl" else None)
        return kind or _unknown(path, number, kinds)
    if form == "jsonl":
        return _unknown(path, number, kinds, "its first line is not a JSON object")
    if first.lstrip().startswith(("{", "[")):  # one JSON document over several lines: a saved selection
        record = jsontext.load_record(path, "the file")
        return _document_kind(set(record) if isinstance(record, dict) else set()) or _unknown(path, None, kinds)
    if form is None:
        return _unnamed_kind(path, number, first, kinds)
    return _yaml_kind(path, kinds)  # a .json name over YAML text, which `select --mix` reads too


def _unnamed_kind(path: Path, number: int, first: str, kinds: Iterable[str]) -> str:
    """A name that says nothing, over text that is not JSON: a CSV header, else YAML."""
    header = _csv_kind(first)
    if header == "samples":
        return header
    if header == "outcomes":  # their reader tells CSV from JSON lines by the name
        raise UnknownKind(Diagnostic(str(path), number, 1, "CSV outcomes are read only from a name ending in .csv "
                                                           "or .csv.gz; rename the file"))
    try:
        return _yaml_kind(path, kinds)
    except UnknownKind:
        raise
    except InputError as err:  # not YAML either: say what was tried
        where = err.diagnostics[0]
        line, col, why = ((where.line, where.col, where.message) if isinstance(where, Diagnostic)
                          else (None, None, str(where)))
        raise UnknownKind(Diagnostic(str(path), line, col, _what_not(kinds, f"not JSON, CSV or YAML: {why}"))) from None


def _line_kind(keys: set[str]) -> str | None:
    """The kind whose JSON lines carry these keys (the row formats' defining fields)."""
    if "scores" in keys:
        return "outcomes"
    if keys & {"scorer", "reference"}:
        return "prompts"
    if {"x", "y"} <= keys:
        return "samples"
    if {"status", "latency_s"} <= keys:
        return "log"
    if keys & {"text", "messages"}:
        return "queries"
    return None


def _document_kind(keys: set[str]) -> str | None:
    """The kind of a YAML or JSON mapping with these top-level keys. A parameter file and a
    scenario both have ``top_k``, so the keys only one of them has decide first."""
    if keys & {"schema", "selection"}:
        return "selection"
    if keys & {"servers", "budgets"}:
        return "scenario"
    if keys & {"llms", "device"}:
        return "profile"
    if keys & {"experts", "select_on", "x"}:
        return "params"
    if "top_k" in keys:
        return "scenario"
    if keys and keys <= {"categories", "tags"}:
        return "mix"
    return None


def _csv_kind(header: str) -> str | None:
    """Outcomes have ``qid`` and ``score:<llm>`` columns; samples ``x1, ..., xd, y``."""
    columns = [c.strip() for c in next(csv.reader([header]), [])]
    if "qid" in columns or any(c.startswith("score:") for c in columns):
        return "outcomes"
    if len(columns) >= 2 and columns[-1] == "y" and all(c.startswith("x") for c in columns[:-1]):
        return "samples"
    return None


def _yaml_kind(path: Path, kinds: Iterable[str]) -> str:
    root = read_yaml(path)
    # Only plain keys name a kind; a sequence or mapping used as a key is the reader's to report.
    keys = {k.value for k, _ in root.value if isinstance(k, ScalarNode)} if isinstance(root, MappingNode) else set()
    kind = _document_kind(keys)
    if kind is None:
        mark = root.start_mark
        raise UnknownKind(Diagnostic(str(path), mark.line + 1, mark.column + 1, _what_not(kinds)))
    return kind


def first_line(path: Path) -> tuple[int | None, str]:
    """The first non-blank line of a file and its number (None, "" for a file without one)."""
    with contextlib.closing(text_lines(path, "file")) as lines:
        return next(((n, line.rstrip("\r\n")) for n, line in lines if line.strip()), (None, ""))


def _json_object(line: str) -> dict | None:
    try:
        value = jsontext.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _what_not(kinds: Iterable[str], why: str | None = None) -> str:
    return (f"cannot tell which kind of moe2 file this is{f' ({why})' if why else ''}; known kinds: "
            f"{', '.join(kinds)} (give --kind KIND to check it as one)")


def _unknown(path: Path, line: int | None, kinds: Iterable[str], why: str | None = None) -> NoReturn:
    raise UnknownKind(Diagnostic(str(path), line, 1 if line else None, _what_not(kinds, why)))
