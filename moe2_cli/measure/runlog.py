"""The raw log, ``DIR/requests.jsonl``: one JSON object per line, appended and flushed as each
request ends, so an interrupted run loses at most the requests in flight.

Three kinds of line: ``{"kind": "power", "server", "method"}`` saying how a server's power is
read, ``{"kind": "idle", "server", "watts", "seconds"}`` for a measured idle baseline, and
``{"kind": "request", ...}`` (:class:`RequestRecord`). On ``--resume`` the log is
read back: a torn last line (the process died while writing it) is cut off, successful requests
are kept, and failed ones are asked again; the last line for a request wins. Every field of a
line read back is checked for its type and range: a line that could not have been written by
moe2 measure is refused with ``path:line``, never trusted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO

from moe2_cli.errors import Diagnostic, InputError

LOG_NAME = "requests.jsonl"
# Fields that differ from run to run even when every answer is the same.
TIMING_FIELDS = ("started_at", "latency_s", "ttft_s", "energy_j", "busy_s", "attempts")


@dataclass(frozen=True)
class RequestRecord:
    server: str
    llm: str
    model: str  # the served model id
    prompt_id: str
    category: str
    prompt_digest: str
    ok: bool
    score: float  # 0 for a failed request
    answer: str
    error: str | None
    started_at: float  # Unix time
    latency_s: float
    ttft_s: float | None
    energy_j: float | None
    busy_s: float | None  # the request's own share of time, when requests overlap
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int
    reason: str | None = None  # a failure's kind (see moe2_cli.measure.client.Completion)
    scorer_matched: str | None = None  # the text of the answer its score rests on, for audit

    @property
    def key(self) -> tuple[str, str, str]:
        return self.server, self.llm, self.prompt_id

    def to_json(self) -> str:
        return json.dumps({"kind": "request", **asdict(self)}, ensure_ascii=False)


@dataclass
class LogState:
    """What a log already holds: the last record of each request, and idle baselines."""

    records: dict[tuple[str, str, str], RequestRecord]
    idle_watts: dict[str, float]
    power_methods: dict[str, str] = field(default_factory=dict)


def read_log(path: Path) -> LogState:
    """Read a log back, cutting off a torn last line first."""
    state = LogState(records={}, idle_watts={})
    if not path.exists():
        return state
    _cut_torn_tail(path)
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            _read_line(state, json.loads(line))
        except (ValueError, RecursionError) as err:
            message = str(err) if isinstance(err, _BadField) else "not JSON"
            raise InputError(Diagnostic(str(path), number, None, f"not a moe2 measure log line ({message})")) from None
    return state


class _BadField(ValueError):
    """A log line with a field of the wrong type or range."""


# Each field of a request line: its kind, and whether it may be null.
_FIELDS: dict[str, tuple[str, bool]] = {
    "server": ("text", False), "llm": ("text", False), "model": ("text", False), "prompt_id": ("text", False),
    "category": ("text", False), "prompt_digest": ("text", False), "ok": ("bool", False),
    "score": ("fraction", False), "answer": ("text", False), "error": ("text", True),
    "started_at": ("number", False), "latency_s": ("number", False), "ttft_s": ("number", True),
    "energy_j": ("number", True), "busy_s": ("number", True), "prompt_tokens": ("count", True),
    "completion_tokens": ("count", True), "attempts": ("count", False), "reason": ("text", True),
    "scorer_matched": ("text", True),
}
# Fields that older logs lack: read as None.
_OPTIONAL = ("reason", "scorer_matched")
_KINDS = {"text": "text", "bool": "true or false", "fraction": "a number in [0, 1]",
          "number": "a finite number >= 0", "count": "a whole number >= 0"}


def _read_line(state: LogState, row: object) -> None:
    if not isinstance(row, dict):
        raise _BadField("not a JSON object")
    kind = row.get("kind")
    if kind == "idle":
        _check(row, {"server": ("text", False), "watts": ("number", False)})
        state.idle_watts[row["server"]] = float(row["watts"])
    elif kind == "power":
        _check(row, {"server": ("text", False), "method": ("text", False)})
        state.power_methods[row["server"]] = row["method"]
    elif kind == "request":
        _check(row, {k: v for k, v in _FIELDS.items() if k not in _OPTIONAL or k in row})
        record = RequestRecord(**{f.name: row[f.name] for f in fields(RequestRecord) if f.name in row})
        state.records[record.key] = record
    else:
        raise _BadField(f"kind must be request, idle or power (got {str(kind)[:40]!r})")


def _check(row: dict, expected: dict[str, tuple[str, bool]]) -> None:
    for name, (kind, nullable) in expected.items():
        if name not in row:
            raise _BadField(f"{name} is missing")
        value = row[name]
        if not ((nullable and value is None) or _is(kind, value)):
            raise _BadField(f"{name} must be {_KINDS[kind]}{' or null' * nullable} (got {json.dumps(value)[:40]})")


def _is(kind: str, value: object) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "count":
        return isinstance(value, int) and value >= 0
    return math.isfinite(value) and value >= 0 and (kind != "fraction" or value <= 1)


def _cut_torn_tail(path: Path) -> None:
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(end)


class LogWriter:
    """Appends lines and flushes each one before the next request is counted."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: IO[str] | None = None

    def __enter__(self) -> LogWriter:
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()

    def write(self, line: str) -> None:
        assert self._fh is not None
        # One write call per whole line, then flushed: a killed process leaves whole lines (or a
        # torn last one, cut off on resume). No fsync: it guards against power loss, not a kill,
        # and on a busy disk it would stall the requests in flight.
        self._fh.write(line + "\n")
        self._fh.flush()

    def power(self, server: str, method: str) -> None:
        self.write(json.dumps({"kind": "power", "server": server, "method": method}, ensure_ascii=False))

    def idle(self, server: str, watts: float, seconds: float) -> None:
        self.write(json.dumps({"kind": "idle", "server": server, "watts": watts, "seconds": seconds}))
