"""Measure a scenario's experts on their own endpoints: latency, energy and accuracy per
category, written as profiles, per-query outcomes and a scenario that points at both."""

from moe2_cli.measure.client import Retry
from moe2_cli.measure.measurement import MeasureInterrupted, MeasureResult, MeasureSettings, measure
from moe2_cli.measure.prompts import Prompt, load_prompts
from moe2_cli.measure.runlog import RequestRecord
from moe2_cli.measure.scorers import SCORERS, score
from moe2_cli.measure.summary import CategoryStats, ExpertSummary

__all__ = [
    "SCORERS", "CategoryStats", "ExpertSummary", "MeasureInterrupted", "MeasureResult", "MeasureSettings", "Prompt",
    "RequestRecord", "Retry", "load_prompts", "measure", "score",
]
