"""Inputs: scenarios, device profiles, command-line budget specs, and the shipped files."""

from moe2_cli.scenario.scenario import (
    OutcomesSpec,
    Scenario,
    load_scenario,
    resolve_scenario,
)

__all__ = ["OutcomesSpec", "Scenario", "load_scenario", "resolve_scenario"]
