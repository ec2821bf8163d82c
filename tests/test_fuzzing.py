"""Every input reader survives mutated files: exit 0, 1 or 2, no traceback, diagnostics that
name the file, and no hang (a few dozen examples per reader; benchmarks/fuzz.py runs more)."""

from __future__ import annotations

import pytest

from tests.fuzzing import READERS, describe, fuzz

EXAMPLES_PER_READER = 30


@pytest.mark.parametrize("name", sorted(READERS))
def test_reader_survives_mutated_files(name):
    report = fuzz(name, EXAMPLES_PER_READER, seed=0)
    assert report.examples >= EXAMPLES_PER_READER // 2, describe(name, report)
    assert report.clean, describe(name, report) + "\n" + "\n".join(report.failures)
    assert set(report.exit_codes) <= {0, 1, 2}, describe(name, report)
