"""The request log of ``moe2 serve --log DIR``: one JSON line per completion request, written by a
thread of its own, in files rotated by size.

The event loop only puts a record on a bounded queue (``put_nowait``), so a slow or failing
disk never holds a request back: a full queue or a write that fails (``OSError``) costs that
log line, which is counted as dropped, never the request. On shutdown the writer drains the
queue, flushes and closes the file.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from moe2_cli.serve.intake import Asked

LOG_NAME = "requests.jsonl"
KEEP_FILES = 5  # the file written and the four before it
QUEUE_LINES = 10_000  # records waiting for the writer before new ones are dropped
# The writer wakes at most this often, and then writes what has queued up. Woken for every line,
# it would take the interpreter lock from the event loop once per request.
BATCH_S = 0.1
RECENT_IDS = 100_000  # request and completion ids remembered, so feedback can name a request answered
_STOP = object()


@dataclass(frozen=True)
class Served:
    """What a request got back, as the log tells it: the expert whose answer was returned, that
    answer's usage and the tokens of every expert that answered, the time to the first token (a
    stream's), the text of each choice (kept only for ``--log-text``) and the time spent waiting for
    the experts (the rest of the latency is the proxy's own)."""

    answer_from: str | None = None
    usage: dict | None = None
    tokens_spent: dict | None = None
    ttft_s: float | None = None
    answer: list[str | None] | None = None
    completion_id: str | None = None  # the ``id`` of the reply the client got
    upstream_s: float = 0.0
    other_answers: dict[str, str | None] | None = None  # the other experts' first choices (--log-text)


def entry(asked: Asked, status: int, latency_s: float, energy_j: dict[str, float], overruns: list[dict],
          served: Served, with_text: bool) -> dict:
    """One request's line; ``energy_j`` is each called expert's estimate (the profile's J per
    query of the category), in calling order. The measured joules are null until a meter fills
    them in (:mod:`moe2_cli.serve.energy`)."""
    query, started = asked.query, time.time() - latency_s
    record: dict[str, Any] = {"id": query.id, "completion_id": served.completion_id, "time": _iso(started),
              "unix": round(started, 6), "endpoint": asked.endpoint,
              "stream": asked.stream, "category": query.category, "category_source": query.category_source,
              "category_probability": query.category_probability, "experts": list(energy_j),
              "answer_from": served.answer_from, "status": status, "latency_s": round(latency_s, 6),
              "upstream_s": round(served.upstream_s, 6),
              "ttft_s": None if served.ttft_s is None else round(served.ttft_s, 6),
              "usage": None if served.usage is None else dict(served.usage),
              "tokens_spent": None if served.tokens_spent is None else dict(served.tokens_spent),
              "estimated_j": round(sum(energy_j.values()), 6), "estimated_j_by_expert": dict(energy_j),
              "measured_j": None, "measured_j_by_expert": dict.fromkeys(energy_j), "overruns": overruns}
    if with_text:
        record["prompt"] = asked.body.get("messages", asked.body.get("prompt"))
        record["answer"] = served.answer
        record["other_answers"] = served.other_answers
    return record


def _iso(unix: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix))
    return f"{whole}.{int(unix % 1 * 1000):03d}Z"


class Sink(Protocol):
    """Where the writer puts lines; any method may raise ``OSError``."""

    def write(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class RotatingFile:
    """``requests.jsonl`` in ``directory``; past ``max_bytes`` it becomes ``requests.jsonl.1``
    (the older ones move up one, the oldest of ``keep`` files is deleted) and a new one begins."""

    def __init__(self, directory: Path, max_bytes: int, keep: int = KEEP_FILES, name: str = LOG_NAME):
        self.path, self.max_bytes, self.keep = directory / name, max_bytes, keep
        self._file: BinaryIO | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._file = self.path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        if self._file is None:  # the last write failed: the disk may be back
            self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        assert self._file is not None
        self._file.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        names = [self.path, *(self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self.keep))]
        names[-1].unlink(missing_ok=True)
        for newer, older in zip(names[-2::-1], names[:0:-1]):
            if newer.exists():
                os.replace(newer, older)
        self._open()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


class RequestLog:
    """Records in, JSON lines out on a writer thread; :meth:`counts` says how many lines were
    written and dropped (``/metrics`` shows them)."""

    def __init__(self, sink: Sink, with_text: bool = False, queue_lines: int = QUEUE_LINES,
                 batch_s: float = BATCH_S):
        self.sink, self.with_text, self.batch_s = sink, with_text, batch_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_lines)
        self._lock = threading.Lock()  # the counts change on both the event loop and the writer
        self._counts = {"written": 0, "dropped": 0}
        self._pending = 0  # lines written to the sink since its last flush
        self._closed = False
        self._closing = threading.Event()  # cuts the writer's wait short
        self._recent: OrderedDict[str, None] = OrderedDict()  # touched on the event loop only
        self._thread = threading.Thread(target=self._drain, name="moe2-request-log", daemon=True)
        self._thread.start()

    def knows(self, rid: str) -> bool:
        """Whether ``rid`` is the request id or completion id of one of the last RECENT_IDS records."""
        return rid in self._recent

    def write(self, record: dict) -> None:
        """Queue ``record`` (its values are not changed afterwards), or drop it at once."""
        for key in ("id", "completion_id"):
            if isinstance(record.get(key), str):
                self._recent[record[key]] = None
        while len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
        if self._closed:
            self._count("dropped")
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._count("dropped")

    def close(self) -> None:
        """Write what is queued, flush and close; blocks until then (call it off the event loop)."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._queue.put(_STOP)
        self._thread.join()

    def counts(self) -> dict[tuple[tuple[str, str], ...], float]:
        with self._lock:
            return {(("outcome", k),): float(v) for k, v in self._counts.items()}

    def _count(self, outcome: str, lines: int = 1) -> None:
        with self._lock:
            self._counts[outcome] += lines

    def _drain(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]  # an idle server's writer sleeps here
            self._closing.wait(self.batch_s)
            while batch[-1] is not _STOP and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stopping = batch[-1] is _STOP
            for record in batch[:-1] if stopping else batch:
                self._put((json.dumps(record, ensure_ascii=False) + "\n").encode())
            self._settle(self.sink.flush)
        self._settle(self.sink.close)

    def _put(self, line: bytes) -> None:
        try:
            self.sink.write(line)
        except OSError:
            self._lost(1)
        else:
            self._pending += 1

    def _settle(self, action) -> None:
        """Flush (or close): the lines since the last flush are written now, or lost."""
        try:
            action()
        except OSError:
            self._lost(0)
        else:
            self._count("written", self._pending)
            self._pending = 0

    def _lost(self, extra: int) -> None:
        # The buffered lines go with a failed write: the file is dropped and reopened next time.
        self._count("dropped", self._pending + extra)
        self._pending = 0
        try:
            self.sink.close()
        except OSError:
            pass


def open_log(directory: Path, max_mb: float, with_text: bool = False, name: str = LOG_NAME) -> RequestLog:
    """The log ``name`` in ``directory`` (made if missing); an ``OSError`` if it cannot be written."""
    directory.mkdir(parents=True, exist_ok=True)
    return RequestLog(RotatingFile(directory, max(1, int(max_mb * 1024 * 1024)), name=name), with_text=with_text)
