"""Mutation fuzzing of every input reader: shared by the test suite and ``benchmarks/fuzz.py``.

A reader is a named seed (valid files, as bytes) and a way to read a candidate file the way the
command line does. Hypothesis mutates the seeds (deletions, type changes, NaN, infinities, huge
and negative numbers, huge integers, deep nesting, anchors and aliases, tags, control bytes,
BOMs, CRLF, truncation, corrupt compression) and every run is judged the same way: an exit code
of 0, 1 or 2 (never 70), no traceback, every diagnostic naming the file, and an end within
:data:`TIME_LIMIT_S` seconds of CPU time. Readers register by name in :data:`READERS`, so more can be plugged in.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import shutil
import signal
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moe2_cli.errors import Moe2Error

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT_S = 10.0
EXIT_INTERNAL = 70

# Text that breaks readers when it lands in the right place.
HOSTILE_TOKENS = [
    "nan", "NaN", ".nan", "inf", "-inf", ".inf", "-.inf", "1e400", "-1e400", "1e-3", "-1", "0", "-0.0", "1e16",
    "5.0e+15", "1e300", "9" * 5000, "-" + "9" * 400, "true", "null", "~", '""', "[]", "{}", "[1, 2]",
    "{a: 1}", "!!bool yes", "!!bool \"maybe\"", "!!int x", "!!float abc", "!!binary AAAA", "!!python/object:os.system",
    "!!set {a}", "!foo bar", "&a [1, 2]", "*a", "&a x", "[&b [*b, *b], *b]", "\x00", "\x07", "\x1b[31m", "\ufeff",
    "\r\n", "\t", "\ud7ff", "é", "'", '"', "#", ":", "- ", "{", "[", "]", "}", ",", "\\", "%YAML 1.1", "---",
    "...", "<<: *a", "? [1]", '{"a": ' * 40, "[" * 200 + "]" * 200, "[" * 3000, "{" * 1500,
]


@dataclass
class Report:
    """What a fuzz run found, per reader."""

    examples: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    internal: int = 0
    hangs: int = 0
    tracebacks: int = 0
    unnamed: int = 0  # diagnostics that do not name the file
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.internal or self.hangs or self.tracebacks or self.unnamed)

    def record(self, code: int, stderr: str, shown: str, hang: bool, sample: str) -> None:
        self.examples += 1
        self.exit_codes[code] += 1
        lines = [line for line in stderr.splitlines() if line.strip()]
        bad = {"internal": code == EXIT_INTERNAL, "hangs": hang, "tracebacks": "Traceback" in stderr,
               "unnamed": code != EXIT_INTERNAL and any(shown not in line for line in lines)}
        for name, hit in bad.items():
            setattr(self, name, getattr(self, name) + int(hit))
        if any(bad.values()) and len(self.failures) < 5:
            self.failures.append(f"exit {code}: {stderr[-900:]!r} <- {sample[:300]!r}")


# ---------------------------------------------------------------- mutations


@st.composite
def text_mutation(draw, text: str) -> str:
    """A few edits of ``text``: insertions of hostile tokens, deletions, replaced numbers,
    truncation, CRLF line ends, a BOM."""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "number", "truncate", "crlf", "bom", "dup", "key"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(HOSTILE_TOKENS)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "number":
            text = _replace_number(text, at, draw(st.sampled_from(HOSTILE_TOKENS[:20])))
        elif kind == "truncate":
            text = text[:at]
        elif kind == "crlf":
            text = text.replace("\n", "\r\n")
        elif kind == "bom":
            text = "\ufeff" + text
        elif kind == "dup":
            lines = text.split("\n")
            i = min(at, len(lines) - 1)
            text = "\n".join(lines[: i + 1] + lines[i:])
        else:
            text = _replace_key(text, at, draw(st.sampled_from(["&a", "*a", "!!bool", "- x", "[1]", "~"])))
    return text


def _replace_number(text: str, at: int, token: str) -> str:
    """Replace the first number at or after ``at`` (wrapping round) with ``token``."""
    match = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?").search(text, at) or re.search(r"\d+", text)
    return text if match is None else text[: match.start()] + token + text[match.end():]


def _replace_key(text: str, at: int, token: str) -> str:
    """Put ``token`` in front of the value after the next colon: a type change, an anchor, a tag."""
    colon = text.find(": ", at)
    return text if colon < 0 else text[: colon + 2] + token + " " + text[colon + 2:]


# Raw JSON values that break readers: non-standard numbers, huge integers, deep nesting, wrong types.
HOSTILE_JSON = [
    "NaN", "Infinity", "-Infinity", "1e400", "1e-400", "1" * 5000, "-" + "9" * 400, "0.5", "2", "-1", "0", "true",
    "false", "null", '"x"', '""', '"\\u0000"', "[]", "{}", "[" * 3000 + "]" * 3000, "[" * 500 + "]" * 500,
    '[1, "a"]', '{"a": 1}', '["t1", 2]', '["t1", "t2"]', "1.0", '"1"', "[0.5, NaN]",
]
_SENTINEL = "\u0001fuzz\u0001"


def json_paths(value, path=()):
    """Every key path inside a JSON value, the value itself first."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from json_paths(item, path + (key,))


@st.composite
def json_mutation(draw, seed: bytes) -> bytes:
    """Replace one value of one JSON line with a hostile raw value, or delete a key; other
    lines stay valid, so the reader gets past its syntax checks."""
    lines = seed.decode("utf-8").split("\n")
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, max(len(lines) - 2, 0)))
        try:
            row = json.loads(lines[index])
        except (ValueError, RecursionError):  # a line an earlier round made hostile
            continue
        paths = list(json_paths(row))
        path = draw(st.sampled_from(paths[1:] or paths))
        if not path:
            continue
        parent = row
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
            del parent[path[-1]]
            lines[index] = json.dumps(row)
        else:
            parent[path[-1]] = _SENTINEL
            lines[index] = json.dumps(row).replace(json.dumps(_SENTINEL), draw(st.sampled_from(HOSTILE_JSON)))
    return "\n".join(lines).encode("utf-8")


@st.composite
def json_or_file_mutation(draw, seed: bytes) -> bytes:
    return draw(json_mutation(seed) if draw(st.booleans()) else file_mutation(seed))


@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    """Byte-level damage: flips, truncation, deletions, stray control bytes."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "delete", "insert"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.sampled_from([b"\x00", b"\xff\xfe", b"\x1f\x8b", b"\xef\xbb\xbf", b"\r\n"]))
    return bytes(data)


@st.composite
def file_mutation(draw, seed: bytes, gzip_ok: bool = True) -> bytes:
    """Text edits of a text seed, sometimes followed by byte damage or gzip compression."""
    text = draw(text_mutation(seed.decode("utf-8")))
    data = text.encode("utf-8", "surrogatepass")
    roll = draw(st.integers(0, 9))
    if roll == 0:
        data = draw(byte_mutation(data))
    elif roll == 1 and gzip_ok:
        packed = gzip.compress(data, mtime=0)
        data = packed if draw(st.booleans()) else draw(byte_mutation(packed))
    return data


# ---------------------------------------------------------------- running one candidate


class _Hang(BaseException):
    """Raised by the deadline; a BaseException so that no error boundary under test catches it."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise _Hang after ``seconds`` of this process's CPU time: on a machine shared with other
    work, wall time would count the waits for a core as hangs, and a hang burns CPU."""
    def fire(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGPROF, fire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def run_reader(read: Callable[[Path], object], path: Path) -> tuple[int, str, bool]:
    """(exit code, stderr, hang) of ``read(path)`` behind the command line's error boundary:
    a Moe2Error prints its lines and exits with its code; anything else is exit 70 with the
    traceback (which the judge then counts)."""
    try:
        with _deadline(TIME_LIMIT_S):
            read(path)
        return 0, "", False
    except _Hang:
        return EXIT_INTERNAL, "hang", True
    except Moe2Error as err:
        return err.exit_code, "\n".join(err.lines()), False
    except Exception:  # noqa: BLE001 - the point is to count them
        return EXIT_INTERNAL, traceback.format_exc(), False


def run_cli(*args: str | Path) -> tuple[int, str, bool]:
    """``moe2 ARGS`` in-process: the real command line, with its own error boundary."""
    from typer.testing import CliRunner

    from moe2_cli.cli import app

    try:
        with _deadline(TIME_LIMIT_S):
            result = CliRunner().invoke(app, [str(a) for a in args], env={"NO_COLOR": "1", "COLUMNS": "200"})
    except _Hang:
        return EXIT_INTERNAL, "hang", True
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return result.exit_code, stderr, False


# ---------------------------------------------------------------- the readers


@dataclass(frozen=True)
class Reader:
    """A named input reader: seed files and how one candidate is written out and read."""

    name: str
    seeds: Callable[[], list[bytes]]
    suffix: str
    run: Callable[[Path], tuple[int, str, bool]]
    mutate: Callable[[bytes], st.SearchStrategy[bytes]] = file_mutation
    directory: bool = False  # candidates are directories built by ``build``
    build: Callable[[Path, bytes], Path] | None = None


def _profile_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "profiles").glob("*.yaml"))]


def _scenario_seeds() -> list[bytes]:
    return [(ROOT / "examples" / "default.yaml").read_bytes(), (ROOT / "examples" / "large.yaml").read_bytes()]


def _small_table():
    from moe2_cli.outcomes import Outcomes

    rng = np.random.default_rng(0)
    n = 8
    return Outcomes(qids=tuple(f"q{i}" for i in range(n)), categories=("math", "code"),
                    category=rng.integers(0, 2, n), columns=("llm-a", "llm-b"), scores=np.round(rng.random((n, 2)), 2),
                    texts=tuple(f"question {i}?" for i in range(n)), features=np.round(rng.normal(size=(n, 3)), 3),
                    tags=tuple(("t1",) if i % 2 else ("t2", "t3") for i in range(n)))


def _written_table(suffix: str) -> list[bytes]:
    from moe2_cli.outcomes import write_outcomes

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"seed{suffix}"
        write_outcomes(_small_table(), path)
        return [path.read_bytes()]


TINY_SCENARIO = ROOT / "tests" / "fixtures" / "good" / "scenario.yaml"


def _select_seeds() -> list[bytes]:
    """Outcomes for the tiny test scenario (its LLMs and categories), so that ``select`` reads
    them, trains the gate and solves: mutations reach every stage after the reader."""
    from moe2_cli.outcomes import Outcomes, write_outcomes

    rng = np.random.default_rng(2)
    n = 40
    table = Outcomes(qids=tuple(f"q{i}" for i in range(n)), categories=("mcq", "math"),
                     category=np.arange(n) % 2, columns=("small-llm", "big-llm"),
                     scores=(rng.random((n, 2)) > 0.4).astype(float),
                     texts=tuple(f"question {i % 7}?" for i in range(n)),
                     features=np.round(rng.normal(size=(n, 3)), 3), tags=tuple((f"t{i % 3}",) for i in range(n)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.jsonl"
        write_outcomes(table, path)
        return [path.read_bytes()]


def _llmrouter_seeds() -> list[bytes]:
    raw = gzip.decompress((ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz").read_bytes())
    return [b"\n".join(raw.split(b"\n")[:12]) + b"\n"]


def _read_outcomes(path: Path):
    from moe2_cli.outcomes import read_outcomes

    return read_outcomes(path)


def _lm_eval_seeds() -> list[bytes]:
    """One file of the fixture run, to be mutated in place inside a copy of the run."""
    files = sorted((ROOT / "tests" / "fixtures" / "lm_eval" / "good").rglob("*.jsonl"))
    return [f.read_bytes() for f in files]


def _lm_eval_build(directory: Path, data: bytes) -> Path:
    """A copy of the fixture run with the first file whose content was the seed replaced (or,
    for content that matches no file, a model directory removed)."""
    root = directory / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "lm_eval" / "good", root)
    files = sorted(root.rglob("*.jsonl"))
    index = sum(data) % (len(files) + 1)
    if index == len(files):
        shutil.rmtree(files[0].parent)
    else:
        files[index].write_bytes(data)
    return root


def _lm_eval_run(path: Path):
    from moe2_cli.outcomes import read_lm_eval

    return run_reader(lambda p: read_lm_eval(p, {"arc_challenge": "mcq", "gsm8k": "math"}), path)


def _params_seeds() -> list[bytes]:
    from moe2_cli.stats.params_file import dump_truth
    from moe2_cli.stats.presets import PRESETS, preset

    return [dump_truth(preset(name)).encode() for name in sorted(PRESETS)[:2]]


def _samples_seeds() -> list[bytes]:
    from moe2_cli.stats.samples import samples_to_text

    rng = np.random.default_rng(1)
    X, Y = np.round(rng.normal(size=(6, 2)), 4), np.round(rng.normal(size=6), 4)
    return [samples_to_text(X, Y, "csv").encode(), samples_to_text(X, Y, "jsonl").encode()]


def _gate_seeds() -> list[bytes]:
    from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
    from moe2_cli.gating.model import SavedGate, TopKGate, save_gate

    table = _small_table()
    spec = FeatureSpec(categories=table.categories, numeric_dim=3)
    featurizer = QueryFeaturizer(spec).fit(table)
    X = featurizer.transform(table)
    gate = TopKGate(k=1, max_iter=5).fit(X, table.scores, X, table.scores)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gate.npz"
        save_gate(path, SavedGate(gate, featurizer, table.columns, ("s/llm-a", "s/llm-b"), (0, 1)))
        return [path.read_bytes()]


@st.composite
def gate_mutation(draw, seed: bytes) -> bytes:
    """Damage to the archive bytes, or a rebuilt archive with mutated meta.json or arrays."""
    import zipfile

    if draw(st.integers(0, 2)) == 0:
        return draw(byte_mutation(seed))
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    name = draw(st.sampled_from(sorted(entries)))
    if name == "meta.json":
        entries[name] = draw(text_mutation(entries[name].decode())).encode("utf-8", "surrogatepass")
    else:
        entries[name] = _mutated_array(draw, entries[name])
    if draw(st.integers(0, 5)) == 0:
        del entries[draw(st.sampled_from(sorted(entries)))]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for key, value in entries.items():
            archive.writestr(key, value)
    return out.getvalue()


def _mutated_array(draw, data: bytes) -> bytes:
    array = np.lib.format.read_array(io.BytesIO(data))
    kind = draw(st.sampled_from(["nan", "shape", "dtype", "object", "bytes"]))
    if kind == "nan":
        array = array.astype(float).copy()
        array.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308]))
    elif kind == "shape":
        array = np.zeros(draw(st.lists(st.integers(0, 4), max_size=3)))
    elif kind == "dtype":
        array = array.astype(draw(st.sampled_from(["int8", "complex128", "bool", "U3"])))
    elif kind == "bytes":
        return draw(byte_mutation(data))
    out = io.BytesIO()
    if kind == "object":  # a pickled array: must be refused, never loaded
        np.save(out, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _reader(read_name: str, module: str):
    def read(path: Path):
        import importlib

        return getattr(importlib.import_module(module), read_name)(path)

    return lambda path: run_reader(read, path)


READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("profile", _profile_seeds, ".yaml", lambda p: run_cli("validate", p)),
    Reader("scenario", _scenario_seeds, ".yaml", lambda p: run_cli("validate", p)),
    Reader("outcomes-jsonl", lambda: _written_table(".jsonl"), ".jsonl", lambda p: run_reader(_read_outcomes, p),
           mutate=json_or_file_mutation),
    Reader("outcomes-csv", lambda: _written_table(".csv"), ".csv", lambda p: run_reader(_read_outcomes, p)),
    Reader("llmrouter", _llmrouter_seeds, ".jsonl", lambda p: run_reader(_read_outcomes, p),
           mutate=json_or_file_mutation),
    Reader("lm-eval", _lm_eval_seeds, "", _lm_eval_run, mutate=json_or_file_mutation, directory=True,
           build=_lm_eval_build),
    Reader("outcomes-select", _select_seeds, ".jsonl", lambda p: run_cli(
        "select", TINY_SCENARIO, "--outcomes", p, "-f", "json", "--no-timing"), mutate=json_or_file_mutation),
    Reader("stats-params", _params_seeds, ".yaml", _reader("load_truth", "moe2_cli.stats.params_file")),
    Reader("stats-samples", _samples_seeds, ".csv", _reader("load_samples", "moe2_cli.stats.samples"),
           mutate=json_or_file_mutation),
    Reader("gate", _gate_seeds, ".npz", _reader("load_gate", "moe2_cli.gating.model"), mutate=gate_mutation),
)}


def fuzz(name: str, examples: int, seed: int = 0, report: Report | None = None,
         on_example: Callable[[Report], None] | None = None) -> Report:
    """Run ``examples`` mutated inputs through reader ``name``; return what was found.
    ``on_example`` sees the report after every example (for progress)."""
    reader = READERS[name]
    report = report or Report()
    seeds = reader.seeds()
    _warm_up(reader, seeds)
    candidates = st.sampled_from(range(len(seeds))).flatmap(lambda i: reader.mutate(seeds[i]))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(candidates)
    def one(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            if reader.directory:
                path = reader.build(Path(tmp), data)
            else:
                path = Path(tmp) / f"candidate{reader.suffix}"
                path.write_bytes(data)
            code, stderr, hang = reader.run(path)
        report.record(code, stderr, str(path), hang, data.decode("utf-8", "replace"))
        if on_example is not None:
            on_example(report)

    seeded = one
    seeded._hypothesis_internal_use_seed = seed  # reproducible runs: same seed, same inputs
    seeded()
    return report


def _warm_up(reader: Reader, seeds: list[bytes]) -> None:
    """Read every seed once, untimed, so that the time limit measures the input and not the
    first imports (scikit-learn's take seconds on a loaded machine)."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(seeds):
            if reader.directory:
                path = reader.build(Path(tmp) / str(i), data)
            else:
                path = Path(tmp) / f"seed{i}{reader.suffix}"
                path.write_bytes(data)
            with contextlib.suppress(BaseException):
                reader.run(path)


def describe(name: str, report: Report) -> str:
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(report.exit_codes.items()))
    return (f"{name:15s} examples {report.examples:6d}  exit-70 {report.internal}  hangs {report.hangs}  "
            f"tracebacks {report.tracebacks}  unnamed {report.unnamed}  (exit codes {codes})")


def dumps(report: Report) -> str:
    return json.dumps({"examples": report.examples, "exit_codes": dict(report.exit_codes),
                       "internal": report.internal, "hangs": report.hangs, "tracebacks": report.tracebacks,
                       "unnamed": report.unnamed, "failures": report.failures}, indent=1)
