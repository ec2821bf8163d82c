"""How fast, and in how much memory, the command line refuses inputs no reader should swallow.

Each case runs the real command line in a child process and reads the child's peak resident
memory (``ru_maxrss``) and wall time from ``os.wait4``; the acceptance bound is a refusal
(exit 2) within 5 s in under 300 MB. The hostile files are made in a temporary folder: a
2 GiB sparse file, gzip files that inflate to 1 GiB (of zeros, and of valid outcome rows), and
a FIFO no one writes to.

    python benchmarks/bounded_readers.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
ROW = json.dumps({"qid": "q", "category": "mcq", "scores": {"qwen2.5-7b-instruct": 1}}) + "\n"


def gzip_of(path: Path, block: bytes, total: int) -> Path:
    """A gzip file whose content is ``block`` repeated to ``total`` bytes, written as a stream."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed:
        repeated = block * max(1, (1 << 20) // len(block))
        written = 0
        while written < total:
            piece = repeated[: total - written]
            packed.write(piece)
            written += len(piece)
    return path


def make_inputs(folder: Path) -> dict[str, Path]:
    sparse = folder / "sparse.jsonl"
    with open(sparse, "wb") as out:
        out.truncate(2 * GIB)
    fifo = folder / "fifo.jsonl"
    os.mkfifo(fifo)
    rows = ROW * ((1 << 20) // len(ROW))
    queries = folder / "queries.jsonl"
    queries.write_text(json.dumps({"id": 1, "category": "mcq", "text": "which is larger?"}) + "\n")
    return {"sparse": sparse, "fifo": fifo, "queries": queries,
            "zeros.gz": gzip_of(folder / "zeros.jsonl.gz", b"\0" * (1 << 20), GIB),
            "rows.gz": gzip_of(folder / "rows.jsonl.gz", rows.encode(), GIB)}


def run(args: list[str]) -> dict:
    """Exit code, wall seconds, peak RSS (MB) and the first stderr line of one child run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "moe2_cli", *args], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    first = err.read().decode(errors="replace").strip().splitlines()[:1]
    return {"exit": child.returncode, "wall_s": wall, "rss_mb": usage.ru_maxrss / 1024,
            "stderr": first[0] if first else ""}


def cases(inputs: dict[str, Path]) -> list[tuple[str, list[str]]]:
    queries_scenario = "llmrouter-edge"
    return [
        ("start-up alone, for scale", ["show"]),
        ("--outcomes /dev/zero", ["select", "--outcomes", "/dev/zero"]),
        ("--outcomes FIFO", ["select", "--outcomes", str(inputs["fifo"])]),
        ("--outcomes 2 GiB sparse", ["select", "--outcomes", str(inputs["sparse"])]),
        ("--outcomes gzip -> 1 GiB of zeros", ["select", "--outcomes", str(inputs["zeros.gz"])]),
        ("--outcomes gzip -> 1 GiB of rows", ["select", "--outcomes", str(inputs["rows.gz"])]),
        ("stats fit 2 GiB sparse", ["stats", "fit", str(inputs["sparse"])]),
        ("stats fit gzip -> 1 GiB of rows", ["stats", "fit", str(inputs["rows.gz"])]),
        ("route --queries 2 GiB sparse", ["route", queries_scenario, "--queries", str(inputs["sparse"])]),
        ("route --queries gzip -> 1 GiB", ["route", queries_scenario, "--queries", str(inputs["rows.gz"])]),
        ("route --selection /dev/zero", ["route", queries_scenario, "--queries", str(inputs["queries"]),
                                         "--selection", "/dev/zero"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus; python {platform.python_version()}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("command: python benchmarks/bounded_readers.py\n")
    print("| case | command | exit | wall s | peak RSS MB | message |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        made = time.perf_counter()
        inputs = make_inputs(Path(tmp))
        made = time.perf_counter() - made
        worst = {"wall_s": 0.0, "rss_mb": 0.0}
        for name, args in cases(inputs):
            out = run(args)
            worst = {k: max(worst[k], out[k]) for k in worst}
            shown = " ".join(shlex.quote(a.replace(tmp, "$TMP")) for a in args)
            message = out["stderr"].replace(tmp, "$TMP").replace("|", "\\|")
            print(f"| {name} | `moe2 {shown}` | {out['exit']} | {out['wall_s']:.2f} | {out['rss_mb']:.0f} | "
                  f"{message} |")
    print(f"\nsummary: inputs made in {made:.1f} s; slowest refusal {worst['wall_s']:.2f} s, "
          f"largest peak RSS {worst['rss_mb']:.0f} MB (bound: 5 s, 300 MB); load average after "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
