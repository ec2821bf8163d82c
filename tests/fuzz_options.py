"""Property fuzzing of the command-line options: shared by the test suite and ``benchmarks/fuzz.py``.

Budget specs (``--budget``), sweep specs (``--sweep``) and the numeric options (``--top-k``,
``--seed``, ``--time-limit``, ``--min-accuracy``, ``--folds``, ``--confidence``, and ``gating
train``'s) are drawn from
hostile values: NaN, infinities, huge and negative numbers, huge integers, percentages, empty
and stray text, missing and extra separators. Every run goes through the real command line on
the tiny test scenario and is judged as the readers are (``tests/fuzzing.py``): exit 0, 1 or 2,
never 70; no traceback; the end within :data:`~tests.fuzzing.TIME_LIMIT_S`; and every line on
stderr in moe2's one style (``moe2: ...``), which the report counts as ``unnamed`` otherwise.

The estimated objective is memoised across examples by scenario, outcomes, k, metric, folds
and router (not by seed) so that hundreds of examples fit in seconds: options still reach parsing, budgets, the
solvers, rendering and the exit code, which is what is fuzzed here.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import typer.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.scenario.scenario import load_scenario
from tests.fuzzing import TINY_SCENARIO, Report, _select_seeds, run_cli

STYLE = "moe2: "  # every line on stderr of a command that names no file

NUMBER_TOKENS = [
    "0", "1", "2", "3", "-1", "-0", "0.5", "1.5", "75", "75%", "100%", "101%", "-5%", "%", "nan", "NaN", "-nan", "inf",
    "-inf", "Infinity", "1e400", "-1e400", "1e-300", "5e-324", "1e16", "1e9", "1e6", "2147483647", "2147483648",
    "9" * 30, "-" + "9" * 30, "0x10", "1_000", "1,5", "", " ", "  2  ", "½", "٣", "1e", ".", "-", "+1", "none",
    "None", "true", "\x00", "\t", "é",
]
plausible = st.one_of(  # values a user might mean, so that runs get past parsing
    st.integers(0, 6).map(str),
    st.floats(0, 1).map(lambda x: f"{x:.3g}"),
    st.floats(1e-3, 2e3).map(lambda x: f"{x:g}"),
)
numbers = st.one_of(
    plausible,
    st.sampled_from(NUMBER_TOKENS),
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)
keys = st.one_of(
    st.sampled_from(["energy", "latency", "latency.math", "latency.mcq", "energy.math", "energy.mcq"]),
    st.sampled_from(["enrgy", "latency.", ".math", "latency.math.x", "latency.nope", "", "ENERGY", " energy"]),
    st.text(max_size=8),
)
separators = st.sampled_from(["=", "=", "=", "=", "", "==", " = ", ":"])
budget_specs = st.builds(lambda key, sep, value: key + sep + value, keys, separators,
                         st.one_of(plausible, numbers, st.just("none")))
sweep_ranges = st.one_of(
    st.lists(numbers, min_size=1, max_size=4).map(":".join),
    # well-formed ranges of up to 41 points, so that a grid of two is solved within the time bound (a
    # sweep's work grows with its points, up to the 1,000 of MAX_SWEEP_POINTS in all)
    st.tuples(st.floats(1e-3, 2e3), st.floats(0, 2e3), st.integers(1, 40)).map(
        lambda t: f"{t[0]:g}:{t[0] + t[1]:g}:{max(t[1] / t[2], 1e-3):g}"),
)
sweep_specs = st.builds(lambda key, sep, rng: key + sep + rng, keys, separators, sweep_ranges)


def _repeated(option: str, values: st.SearchStrategy[str], most: int) -> st.SearchStrategy[list[str]]:
    return st.lists(values, min_size=1, max_size=most).map(lambda vs: [x for v in vs for x in (option, v)])


def _some_of(options: list[str]) -> st.SearchStrategy[list[str]]:
    """A non-empty set of ``options``, each with a hostile value."""
    return st.dictionaries(st.sampled_from(options), numbers, min_size=1).map(
        lambda chosen: [x for option, value in chosen.items() for x in (option, value)])


@dataclass(frozen=True)
class OptionTarget:
    """A command (``{outcomes}`` is replaced by the outcome file) and the options drawn for it."""

    name: str
    command: tuple[str, ...]
    options: st.SearchStrategy[list[str]]


# --no-cache: the examples must not fill the user's cache of trained gates.
SELECT = ("select", str(TINY_SCENARIO), "--outcomes", "{outcomes}", "-f", "json", "--no-timing", "--no-cache")
OPTIONS: dict[str, OptionTarget] = {t.name: t for t in (
    OptionTarget("budget-option", SELECT, _repeated("--budget", budget_specs, 2)),
    OptionTarget("sweep-option", ("frontier", str(TINY_SCENARIO), "--outcomes", "{outcomes}", "-f", "csv",
                                  "--no-timing", "--no-cache"), _repeated("--sweep", sweep_specs, 2)),
    OptionTarget("numeric-options", SELECT, _some_of(["--top-k", "--seed", "--time-limit", "--min-accuracy", "--folds",
                                                      "--confidence"])),
    OptionTarget("gating-options", ("gating", "train", str(TINY_SCENARIO), "--outcomes", "{outcomes}", "-f", "json",
                                    "--no-cache"), _some_of(["--top-k", "--seed", "--hidden", "--queries", "--folds"])),
)}


@contextlib.contextmanager
def _memoised_objective() -> Iterator[Callable[..., object]]:
    """Estimate F once per (scenario, outcomes, k, metric, folds, router), whatever the seed,
    and build the command line once."""
    from moe2_cli import session

    real, cache = session.estimate_objective, {}

    def estimate(scenario, *, top_k=None, outcomes_path=None, metric="accuracy", folds=1, router="gate", **rest):
        key = (str(scenario.path), top_k, str(outcomes_path), metric, folds, router)
        if key not in cache:
            cache[key] = real(scenario, top_k=top_k, outcomes_path=outcomes_path, metric=metric, folds=folds,
                              router=router, **{**rest, "progress": None})
        return cache[key]

    # typer rebuilds the click command on every invocation (a tenth of a second): build it once.
    with mock.patch.object(session, "estimate_objective", estimate), \
            mock.patch.object(typer.testing, "_get_command", functools.cache(typer.testing._get_command)):
        yield estimate


def fuzz_options(name: str, examples: int, seed: int = 0, report: Report | None = None,
                 on_example: Callable[[Report], None] | None = None) -> Report:
    """Run ``examples`` drawn option sets through target ``name``; return what was found."""
    target = OPTIONS[name]
    report = report or Report()
    with tempfile.TemporaryDirectory() as tmp, _memoised_objective() as build:
        outcomes = Path(tmp) / "outcomes.jsonl"
        outcomes.write_bytes(_select_seeds()[0])
        build(load_scenario(TINY_SCENARIO), outcomes_path=outcomes, folds=DEFAULT_FOLDS, use_cache=False)  # untimed
        command = [str(outcomes) if part == "{outcomes}" else part for part in target.command]

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.generate])
        @given(target.options)
        def one(options: list[str]) -> None:
            code, stderr, hang = run_cli(*command, *options)
            report.record(code, stderr, STYLE, hang, " ".join(options))
            if on_example is not None:
                on_example(report)

        one._hypothesis_internal_use_seed = seed  # reproducible runs: same seed, same inputs
        one()
    return report
