"""Fuzz targets for the files that route, serve and measure read: saved selections, query files
and prompt files. They register in :data:`tests.fuzzing.READERS` on import and are judged as
every reader is (exit 0, 1 or 2, no traceback, every diagnostic naming the file, no hang).

- ``selection``: a ``moe2 select --format json`` record, mutated, given to ``moe2 route
  --selection`` (the plan ``serve`` starts from is read by the same code);
- ``queries``: a query file (text or chat messages, with and without a category, tags and
  numeric features), mutated, given to ``moe2 route --queries``;
- ``prompts``: a prompt set of the shipped kind, mutated, read as ``moe2 measure --prompts``
  reads it.

Both route targets run the real command line on the tiny test scenario, with outcomes that
carry text (so the gate reads it and categories can be inferred) and a cache of fitted routers
private to the run.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

from tests.fuzzing import (
    READERS,
    ROOT,
    TINY_SCENARIO,
    Reader,
    _reader,
    _select_seeds,
    json_or_file_mutation,
    run_cli,
)


@functools.cache
def _fixture() -> Path:
    """A folder for the whole run: outcomes for the tiny scenario, a selection of every expert
    planned on them, a valid query file, and the cache the fitted routers go to."""
    folder = Path(tempfile.mkdtemp(prefix="moe2-fuzz-route-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "outcomes.jsonl").write_bytes(_select_seeds()[0])
    (folder / "selection.json").write_text(_planned(folder / "outcomes.jsonl"), encoding="utf-8")
    (folder / "queries.jsonl").write_bytes(_query_seeds()[0])
    return folder


def _planned(outcomes: Path) -> str:
    """``moe2 select --format json`` on ``outcomes`` with no caps: every expert, so routes choose."""
    from typer.testing import CliRunner

    from moe2_cli.cli import app

    result = CliRunner().invoke(app, ["select", str(TINY_SCENARIO), "--outcomes", str(outcomes), "--budget",
                                      "energy=none", "--budget", "latency=none", "-f", "json", "--no-timing"],
                                env={"NO_COLOR": "1", "MOE2_CACHE_DIR": str(outcomes.parent / "cache")})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _route(*options: str | Path):
    folder = _fixture()
    # The fitted routers are cached in the run's folder, never in the user's cache.
    with mock.patch.dict(os.environ, {"MOE2_CACHE_DIR": str(folder / "cache")}):
        return run_cli("route", TINY_SCENARIO, "--outcomes", folder / "outcomes.jsonl", *options)


def _selection_seeds() -> list[bytes]:
    """The saved selection on one line (so that single values are mutated), and variants that
    reach the other routers, a smaller k and a file planned without a seed."""
    record = json.loads((_fixture() / "selection.json").read_text(encoding="utf-8"))
    variants = [record, {**record, "router": "lookup"}, {**record, "router": "label-lookup", "top_k": 1},
                {k: v for k, v in record.items() if k not in ("seed", "router")}]
    return [json.dumps(v).encode() + b"\n" for v in variants]


def _query_seeds() -> list[bytes]:
    rows = [{"id": "q1", "category": "mcq", "text": "question 3?", "tags": ["t1"]},
            {"id": 2, "category": "math", "messages": [{"role": "system", "content": "be brief"},
                                                        {"role": "user", "content": "question 5?"}]},
            {"id": "q3", "text": "what is question 1?"},
            {"id": "q4", "category": "mcq", "text": "question 6?", "features": [0.1, -1.2, 3.0], "tags": []}]
    return ["".join(json.dumps(r) + "\n" for r in rows).encode()]


def _prompt_seeds() -> list[bytes]:
    """Shipped prompts of each scorer, and a chat prompt with several references."""
    lines = gzip.decompress((ROOT / "examples" / "data" / "llmrouter-prompts.jsonl.gz").read_bytes()).splitlines()
    rows = [json.loads(line) for line in lines]
    by_scorer = list({r["scorer"]: r for r in rows}.values())
    chat = {"id": "chat-1", "category": "math", "messages": [{"role": "system", "content": "Answer with a number."},
                                                             {"role": "user", "content": "2 + 2?"}],
            "reference": ["4", "four"], "scorer": "numeric", "max_tokens": 16}
    return ["".join(json.dumps(r) + "\n" for r in [*by_scorer, chat]).encode()]


for _reader_ in (
    Reader("selection", _selection_seeds, ".json", lambda p: _route("--queries", _fixture() / "queries.jsonl",
                                                                    "--selection", p), mutate=json_or_file_mutation),
    Reader("queries", _query_seeds, ".jsonl", lambda p: _route("--queries", p, "--selection",
                                                               _fixture() / "selection.json"),
           mutate=json_or_file_mutation),
    Reader("prompts", _prompt_seeds, ".jsonl", _reader("load_prompts", "moe2_cli.measure.prompts"),
           mutate=json_or_file_mutation),
):
    READERS[_reader_.name] = _reader_
