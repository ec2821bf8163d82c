"""The session tabulates F's monotone envelope only where a proof needs it and it is cheap."""

from __future__ import annotations

import pytest

from moe2_cli.gating.ensemble import GatedObjective, MonotoneEnvelope
from moe2_cli.session import open_session
from tests.conftest import ROOT

DEFAULT = ROOT / "examples" / "default.yaml"  # 11 experts
LARGE = ROOT / "examples" / "large.yaml"  # 20 experts


def _objective(path, **options):
    return open_session(path, **options).problem.objective


@pytest.mark.parametrize("solver", ["brb", "exhaustive-all", "greedy", "cpsat-surrogate"])
def test_solvers_that_prove_on_f_itself_or_prove_nothing_get_f(solver):
    objective = _objective(DEFAULT, solver=solver)
    assert isinstance(objective, GatedObjective) and not isinstance(objective, MonotoneEnvelope)


@pytest.mark.parametrize("solver", ["polyblock", "cpsat", "exhaustive", None])
def test_a_proof_that_needs_monotone_f_gets_the_envelope_when_cheap(solver):
    session = open_session(DEFAULT, solver=solver)
    assert isinstance(session.problem.objective, MonotoneEnvelope)
    assert any("monotone envelope" in note for note in session.notes)


def test_an_expensive_envelope_is_left_out_unless_asked():
    # 2^20 masks at k = 4 take tens of seconds: polyblock then works on F and proves nothing.
    assert isinstance(_objective(LARGE, solver="polyblock", top_k=4), GatedObjective)
    assert isinstance(_objective(LARGE, solver="polyblock", top_k=2), MonotoneEnvelope)
    assert isinstance(_objective(DEFAULT, solver="brb", envelope=True), MonotoneEnvelope)



def test_top_1_counts_as_cheap_as_top_2():
    assert isinstance(_objective(DEFAULT, solver="polyblock", top_k=1), MonotoneEnvelope)
