"""Every input reader survives mutated files: exit 0, 1 or 2, no traceback, diagnostics that
name the file, and no hang. CI runs a hundred examples for each fast reader and fewer for the
ones that run a whole command; ``benchmarks/fuzz.py`` runs as many as asked."""

from __future__ import annotations

import pytest

import tests.fuzz_inputs  # noqa: F401 - registers the selection, queries and prompts readers
from tests.fuzzing import READERS, describe, fuzz

# Examples per reader: about 15 s in all on one core.
EXAMPLES = {"profile": 60, "scenario": 60, "outcomes-select": 30, "selection": 30, "queries": 30}
DEFAULT_EXAMPLES = 100


@pytest.mark.parametrize("name", sorted(READERS))
def test_reader_survives_mutated_files(name):
    examples = EXAMPLES.get(name, DEFAULT_EXAMPLES)
    report = fuzz(name, examples, seed=0)
    assert report.examples >= examples // 2, describe(name, report)
    assert report.clean, describe(name, report) + "\n" + "\n".join(report.failures)
    assert set(report.exit_codes) <= {0, 1, 2}, describe(name, report)
