"""Writing a shipped data file: gzip with no time or name in its header, so the same content
always gives the same bytes, and a line saying what was written and its SHA-256."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path


def write_gzip(out: Path, data: bytes, what: str) -> None:
    """Compress ``data`` (JSON lines) into ``out`` and print its line count as ``what``."""
    with open(out, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(data)
    print(f"{out}: {len(data.splitlines())} {what}, {out.stat().st_size} bytes, "
          f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}")
