"""Reading input files within caps: line by line, plain or gzip, from a regular file or stdin.

Every data reader (outcomes, samples, query files, prompt files, saved selections) reads
through here, so every one has the same bounds and the same refusals:

- a path that is not a regular file (a FIFO, a device, a directory) is refused before any
  byte is read, since opening a FIFO would wait for a writer and a device may never end; ``-``
  is standard input, which gets the same caps as a file;
- a gzip stream (recognised by its magic bytes, whatever the name) is inflated as it is read;
- the size (after inflating), the number of lines and the size of one line are capped, and a
  source is refused as soon as a cap is passed. A regular file is measured before it is
  parsed (its size from the file system; its lines, or its inflated size, in one quick pass),
  so a file over a cap is refused in about the time it takes to read, not to parse;
- a UTF-8 byte order mark at the start is dropped, and each line is decoded and put in
  Unicode normal form C, so look-alike spellings of one name compare equal.

The caps are read from the environment (:data:`BYTES_VARIABLE`, :data:`ROWS_VARIABLE`,
:data:`RECORD_VARIABLE`), so every command and the Python API honour the same settings.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import sys
import unicodedata
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, cast

from moe2_cli.errors import Diagnostic, InputError, UsageError

STDIN = "-"
BYTES_VARIABLE = "MOE2_MAX_INPUT_BYTES"
ROWS_VARIABLE = "MOE2_MAX_INPUT_ROWS"
RECORD_VARIABLE = "MOE2_MAX_RECORD_BYTES"
DEFAULT_BYTES = 256 * 1024 * 1024
DEFAULT_ROWS = 1_000_000
DEFAULT_RECORD = 4 * 1024 * 1024
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))

Lines = Generator[tuple[int, str], None, None]  # (line number, text); closing it closes the file


@dataclass(frozen=True)
class Caps:
    """How much one input may hold: ``bytes`` in all (after inflating a gzip), ``rows`` lines,
    and ``record`` bytes in one line, or in a whole JSON record file."""

    bytes: int = DEFAULT_BYTES
    rows: int = DEFAULT_ROWS
    record: int = DEFAULT_RECORD

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Caps:
        """The caps the environment sets, the defaults for those it does not."""
        environ = os.environ if environ is None else environ
        return cls(bytes=_positive(environ, BYTES_VARIABLE, DEFAULT_BYTES),
                   rows=_positive(environ, ROWS_VARIABLE, DEFAULT_ROWS),
                   record=_positive(environ, RECORD_VARIABLE, DEFAULT_RECORD))


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"must be a positive whole number (got {text[:40]!r})", f"the environment variable {name}")
    return value


def shown_as(path: str | Path) -> str:
    """How messages name ``path``: standard input is ``<stdin>``."""
    return "<stdin>" if str(path) == STDIN else str(path)


def _refuse(shown: str, message: str, line: int | None = None) -> NoReturn:
    raise InputError(Diagnostic(shown, line, None, message))


def _over_cap(what: str, cap: int, unit: str, variable: str) -> str:
    return f"{what} more than {cap} {unit} (set {variable} to allow more)"


def _refuse_special(shown: str, what: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        _refuse(shown, f"cannot read {what}: it is {kind}, not a regular file")


def refuse_special(path: str | Path, what: str, shown: str | None = None) -> None:
    """Refuse ``path`` when it exists but is not a regular file (for readers that open it
    themselves): a FIFO would block the open, a device may never end. Nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return  # the reader's own open says why
    _refuse_special(shown or str(path), what, mode)


@contextlib.contextmanager
def _opened(path: str | Path, what: str) -> Iterator[tuple[io.BufferedReader, os.stat_result | None]]:
    """The raw stream of ``path`` and its status (None for stdin); anything but a regular file
    is refused before it is read."""
    shown = shown_as(path)
    if str(path) == STDIN:
        stdin = sys.stdin.buffer
        if hasattr(stdin, "peek"):
            yield cast(io.BufferedReader, stdin), None
            return
        # A stand-in stdin (a test's BytesIO) cannot peek; buffer it, and leave it open afterwards.
        buffered = io.BufferedReader(cast(io.RawIOBase, stdin))
        try:
            yield cast(io.BufferedReader, buffered), None
        finally:
            buffered.detach()
        return
    try:
        # Non-blocking, so that opening a FIFO without a writer returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as err:
        _refuse(shown, f"cannot read {what}: {getattr(err, 'strerror', None) or err}")
    with open(fd, "rb") as raw:
        status = os.fstat(fd)
        _refuse_special(shown, what, status.st_mode)
        os.set_blocking(fd, True)
        yield raw, status


def _inflated(raw: io.BufferedReader) -> tuple[io.BufferedIOBase, bool]:
    """The stream, gunzipped as it is read when it starts with the gzip magic bytes."""
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb"), True
    return raw, False


def _chunks(stream: io.BufferedIOBase, shown: str, limit: tuple[int, str], packed: bool) -> Iterator[bytes]:
    """The bytes in pieces, refused once there are more than ``limit`` (a cap and the variable
    that sets it) of them."""
    cap, variable = limit
    total = 0
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except (OSError, EOFError, zlib.error) as err:
            _refuse(shown, f"corrupt gzip data ({err})" if packed else f"cannot read: {err}")
        if not chunk:
            return
        total += len(chunk)
        if total > cap:
            _refuse(shown, _over_cap("decompresses to" if packed else "holds", cap, "bytes", variable))
        yield chunk


def _raw_lines(chunks: Iterator[bytes], shown: str, caps: Caps) -> Iterator[bytes]:
    """Lines (each ending in ``\\n`` but perhaps the last), refused past ``caps.rows`` lines or at
    a line longer than ``caps.record`` bytes. Lines end at ``\\n`` only: JSON allows U+2028 and
    friends inside strings, and CSV keeps a ``\\r`` before the ``\\n``."""
    pending: list[bytes] = []
    held = count = 0
    for chunk in chunks:
        parts = chunk.split(b"\n")
        for part in parts[:-1]:
            count += 1
            if held + len(part) > caps.record or count > caps.rows:
                _over(shown, caps, count)
            yield b"".join((*pending, part, b"\n")) if pending else part + b"\n"
            pending, held = [], 0
        pending.append(parts[-1])
        held += len(parts[-1])
        if held > caps.record:
            _over(shown, caps, count + 1)
    if held:
        if count + 1 > caps.rows:
            _over(shown, caps, count + 1)
        yield b"".join(pending)


def _measure(chunks: Iterator[bytes], shown: str, caps: Caps) -> None:
    """What :func:`_raw_lines` checks, without splitting: lines are counted, and only the line
    running across chunks is measured (one inside a chunk is no longer than the chunk)."""
    if caps.record < _CHUNK:
        for _ in _raw_lines(chunks, shown, caps):
            pass
        return
    count = held = 0
    for chunk in chunks:
        first = chunk.find(b"\n")
        if first < 0:
            held += len(chunk)
            if held > caps.record:
                _over(shown, caps, count + 1)
            continue
        if held + first > caps.record:
            _over(shown, caps, count + 1)
        count += chunk.count(b"\n")
        if count > caps.rows:
            _over(shown, caps, count)
        held = len(chunk) - chunk.rfind(b"\n") - 1
    if held and count + 1 > caps.rows:
        _over(shown, caps, count + 1)


def _over(shown: str, caps: Caps, count: int) -> NoReturn:
    if count > caps.rows:
        _refuse(shown, _over_cap("has", caps.rows, "lines", ROWS_VARIABLE))
    _refuse(shown, _over_cap("the line holds", caps.record, "bytes", RECORD_VARIABLE), count)


def _decoded(number: int, line: bytes, shown: str) -> str:
    if number == 1 and line.startswith(_BOM):
        line = line[len(_BOM):]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(Diagnostic(shown, number, err.start + 1,
                                    f"not UTF-8 text (got byte 0x{line[err.start]:02x})")) from None
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _lines(path: str | Path, what: str, caps: Caps, limit: tuple[int, str]) -> Lines:
    shown = shown_as(path)
    with _opened(path, what) as (raw, status):
        if status is not None:
            # A regular file is measured first: refused over a cap in the time a read takes, not a parse.
            if status.st_size > limit[0] and raw.peek(2)[:2] != _GZIP_MAGIC:
                _refuse(shown, _over_cap("holds", limit[0], "bytes", limit[1]))
            stream, packed = _inflated(raw)
            _measure(_chunks(stream, shown, limit, packed), shown, caps)
            raw.seek(0)
        stream, packed = _inflated(raw)
        with contextlib.closing(stream) if packed else contextlib.nullcontext():
            for number, line in enumerate(_raw_lines(_chunks(stream, shown, limit, packed), shown, caps), start=1):
                yield number, _decoded(number, line, shown)


def text_lines(path: str | Path, what: str, caps: Caps | None = None) -> Lines:
    """(line number, text) of every line of ``path`` (``-``: standard input), each with its
    line ending; see the module's notes for what is refused. ``what`` names the kind of file in
    messages (``outcomes``)."""
    caps = caps or Caps.from_environment()
    return _lines(path, what, caps, (caps.bytes, BYTES_VARIABLE))


def read_record(path: str | Path, what: str, caps: Caps | None = None) -> str:
    """The whole text of a small file (a saved JSON record), at most ``caps.record`` bytes."""
    caps = caps or Caps.from_environment()
    whole = Caps(bytes=caps.record, rows=caps.record + 1, record=caps.record)
    return "".join(text for _, text in _lines(path, what, whole, (caps.record, RECORD_VARIABLE)))
