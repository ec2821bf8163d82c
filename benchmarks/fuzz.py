"""Fuzz the input readers: ``python benchmarks/fuzz.py --examples N [--reader NAME ...] [--seed S]``.

Each reader (profile, scenario, outcome formats, stats parameters and samples, the gate file;
see ``tests/fuzzing.py``; saved selections, query files and prompt files, see
``tests/fuzz_inputs.py``) gets N mutated inputs, and each command-line option target (budget,
sweep and numeric options; see ``tests/fuzz_options.py``) N drawn option sets. One line per
target reports the exit codes, and the counts that must be zero: exit-70 (internal errors),
hangs, tracebacks, and diagnostics that do not name the file (for options: lines not in the
``moe2: ...`` style). The ``serve`` target sends N hostile requests to a live ``moe2 serve``
(see ``tests/fuzz_serve.py``) and counts HTTP statuses, 500s, resets, hangs and malformed
answers. The ``measure-upstream`` target runs ``moe2 measure`` against N hostile replies from a
fake upstream (see ``tests/fuzz_measure.py``) and counts false "ok" records, completions logged
as failures and written files that ``moe2 validate`` refuses. Exit status 1 when any of them is
not zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.fuzz_inputs  # noqa: E402, F401 - registers the selection, queries and prompts readers
from tests.fuzz_measure import describe_upstream, fuzz_upstream  # noqa: E402
from tests.fuzz_options import OPTIONS, fuzz_options  # noqa: E402
from tests.fuzz_serve import describe_serve, fuzz_serve  # noqa: E402
from tests.fuzzing import READERS, describe, fuzz  # noqa: E402

# target -> (run, describe its report)
TARGETS = {**{name: (fuzz, describe) for name in READERS}, **{name: (fuzz_options, describe) for name in OPTIONS},
           "serve": (fuzz_serve, describe_serve), "measure-upstream": (fuzz_upstream, describe_upstream)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="mutated inputs per reader")
    parser.add_argument("--reader", action="append", choices=sorted(TARGETS), help="only these readers or options")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failures", action="store_true", help="print the first failing inputs")
    parser.add_argument("--every", type=int, default=0, help="also print a progress line every N examples")
    args = parser.parse_args()
    clean = True
    for name in args.reader or list(TARGETS):
        start = time.perf_counter()
        run, line = TARGETS[name]
        report = run(name, args.examples, args.seed, on_example=_progress(name, args.every, line))
        print(f"{line(name, report)}  {time.perf_counter() - start:.0f} s", flush=True)
        clean = clean and report.clean
        for failure in report.failures if args.failures else ():
            print("    " + failure)
    return 0 if clean else 1


def _progress(name: str, every: int, line):
    def show(report) -> None:
        if every and report.examples % every == 0:
            print(f"  ... {line(name, report)}", flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
