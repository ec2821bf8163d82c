"""Every command-line option survives hostile values: exit 0, 1 or 2, no traceback, one error
style, and no hang. CI runs a few dozen examples per target; ``benchmarks/fuzz.py`` runs as
many as asked."""

from __future__ import annotations

import pytest

from tests.fuzz_options import OPTIONS, fuzz_options
from tests.fuzzing import describe

# Examples per target: about 15 s in all on one core (the first example of each trains F).
EXAMPLES = {"budget-option": 100, "sweep-option": 100, "numeric-options": 100, "gating-options": 25}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_option_survives_hostile_values(name):
    report = fuzz_options(name, EXAMPLES[name], seed=0)
    assert report.examples == EXAMPLES[name], describe(name, report)
    assert report.clean, describe(name, report) + "\n" + "\n".join(report.failures)
    assert set(report.exit_codes) <= {0, 1, 2}, describe(name, report)
