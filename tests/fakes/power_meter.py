"""A power meter's log (``power: file:PATH``): a header, then ``unix time,watts`` every
``interval_s`` while the block runs, flushed line by line as a real meter's logger writes it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def meter_log(path: Path, watts: float, interval_s: float = 0.01) -> Iterator[None]:
    path.write_text(f"time,watts\n{time.time():.6f},{watts}\n")
    stop = threading.Event()

    def write() -> None:
        with path.open("a", buffering=1) as out:
            while not stop.wait(interval_s):
                out.write(f"{time.time():.6f},{watts}\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()
