"""``measure()``: check everything, send the prompts, then write profiles, outcomes and a scenario.

The whole run is driven by its log: requests are appended to ``DIR/requests.jsonl`` as they end,
and the files are computed from the log afterwards, in scenario and prompt order. So a resumed
run writes the same files as an uninterrupted one, apart from the timing fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from moe2_cli.errors import EXIT_UNMET, Diagnostic, InputError, Moe2Error, UsageError
from moe2_cli.measure import writers
from moe2_cli.measure.client import Retry
from moe2_cli.measure.prompts import (
    Prompt,
    capped,
    default_prompts_path,
    for_categories,
    load_prompts,
    sample_per_category,
)
from moe2_cli.measure.runlog import LOG_NAME, LogState, RequestRecord, read_log
from moe2_cli.measure.runner import Expert, RunPlan, run
from moe2_cli.measure.summary import ExpertSummary, allowed_failures, summarise
from moe2_cli.progress import ProgressCallback, ProgressEvent, no_progress
from moe2_cli.scenario.caps import parse_max_tokens, token_caps
from moe2_cli.scenario.endpoint import PowerSource
from moe2_cli.scenario.scenario import Scenario, load_scenario

EXIT_INTERRUPTED = 130
_FILE_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class MeasureInterrupted(Moe2Error):
    """Ctrl-C: the log holds every finished request; resuming continues from it."""

    exit_code = EXIT_INTERRUPTED


class NothingMeasured(Moe2Error):
    """Every expert failed; nothing was written besides the log."""

    exit_code = EXIT_UNMET


@dataclass(frozen=True)
class MeasureSettings:
    prompts: Path | None = None  # None: the shipped LLMRouter prompt set
    concurrency: int = 1
    retry: Retry = field(default_factory=Retry)
    max_failure_rate: float = 0.05  # past it, an expert gets no profile entry
    latency_quantile: float = 0.9
    idle_baseline_s: float = 0.0
    subtract_idle: bool = False
    warmup: int = 1
    resume: bool = False
    per_category: int | None = None  # a seeded sample of this many prompts per category; None: all
    seed: int = 0
    max_tokens: tuple[str, ...] = ()  # caps over the scenario's: "math=256", or "256" for every category


@dataclass(frozen=True)
class MeasureResult:
    scenario: str
    out_dir: Path
    prompts: int
    experts: tuple[ExpertSummary, ...]
    files: tuple[Path, ...]
    new_requests: int
    idle_watts: dict[str, float]
    notes: tuple[str, ...] = ()  # what the run did differently from what was asked

    @property
    def excluded(self) -> list[ExpertSummary]:
        return [e for e in self.experts if e.excluded]


def measure(scenario_path: str | Path, out_dir: Path, settings: MeasureSettings = MeasureSettings(), *,
            progress: ProgressCallback | None = None) -> MeasureResult:
    """Measure every expert of a scenario on its endpoint and write DIR's files. ``progress``
    hears of every logged request (its task is the expert, ``server/llm``)."""
    scenario = load_scenario(scenario_path, unmeasured=True)  # measuring is how a new LLM gets its profile
    source = str(scenario.path)
    _check_settings(settings)
    experts = _experts(scenario, source, settings)
    prompts_path = settings.prompts or default_prompts_path()
    categories = scenario.instance.categories
    caps = token_caps(categories, scenario.max_tokens, parse_max_tokens(settings.max_tokens, categories))
    prompts = capped(for_categories(load_prompts(prompts_path), categories, str(prompts_path)), caps)
    notes: list[str] = []
    if settings.per_category is not None:
        prompts, notes = sample_per_category(prompts, settings.per_category, settings.seed)
    log_path = _log_path(out_dir, settings.resume)
    state = read_log(log_path) if settings.resume else LogState(records={}, idle_watts={})
    _check_digests(state, prompts, log_path)
    jobs = tuple((e, p) for e in experts for p in prompts if not _done(state, e, p))
    idle = tuple(dict.fromkeys(e.server for e in experts if e.server not in state.idle_watts)) \
        if settings.idle_baseline_s > 0 else ()
    on_record = _counter(len(experts) * len(prompts), len(experts) * len(prompts) - len(jobs), progress)
    if jobs or idle:
        plan = RunPlan(experts=experts, jobs=jobs, idle_servers=idle, idle_seconds=settings.idle_baseline_s,
                       concurrency=settings.concurrency, retry=settings.retry, warmup=settings.warmup,
                       max_failures=allowed_failures(settings.max_failure_rate, len(prompts)))
        try:
            run(plan, source, log_path, on_record)
        except KeyboardInterrupt:
            done = len(read_log(log_path).records)
            raise MeasureInterrupted(f"interrupted: {done} requests are in {log_path}") from None
    state = read_log(log_path)
    result = _write(scenario, experts, prompts, state, out_dir, settings, new_requests=len(jobs), caps=caps)
    return replace(result, notes=tuple(notes))


def _counter(total: int, done: int, progress: ProgressCallback | None) -> Callable[[RequestRecord], None]:
    """Reports each logged request as one more step of experts x prompts."""
    report = progress or no_progress
    report(ProgressEvent("measure", done, total))
    count = done

    def on_record(record: RequestRecord) -> None:
        nonlocal count
        count += 1
        report(ProgressEvent(f"{record.server}/{record.llm}", count, total))

    return on_record


def _check_settings(settings: MeasureSettings) -> None:
    if not 0.0 <= settings.latency_quantile <= 1.0:
        raise UsageError(f"must lie in [0, 1] (got {settings.latency_quantile:g})", "latency_quantile")
    if not 0.0 <= settings.max_failure_rate <= 1.0:
        raise UsageError(f"must lie in [0, 1] (got {settings.max_failure_rate:g})", "max_failure_rate")
    if settings.per_category is not None and settings.per_category < 1:
        raise UsageError(f"must be at least 1 (got {settings.per_category})", "per_category")
    if settings.subtract_idle and settings.idle_baseline_s <= 0:
        raise UsageError("needs an idle baseline: seconds of idle power measured first", "subtract_idle")


def _experts(scenario: Scenario, source: str, settings: MeasureSettings) -> tuple[Expert, ...]:
    """Every expert with its endpoint; one line for each server that cannot be measured."""
    lines = []
    for server in scenario.instance.server_names:
        endpoint = scenario.endpoints.get(server)
        if not _FILE_SAFE.match(server):
            lines.append(f"server {server!r}: its name becomes a file name (profiles/{server}.yaml), so use "
                         f"letters, digits, '.', '_' and '-' only")
        if endpoint is None:
            lines.append(f"server {server!r} has no endpoint block: measure needs its URL and power source")
        elif endpoint.power is None:
            lines.append(f"server {server!r}: its endpoint states no power source (power: nvml[:GPU], "
                         f"tegrastats, rapl, file:PATH, or none with watts)")
        elif settings.subtract_idle and endpoint.power.derived:
            lines.append(f"server {server!r}: subtracting idle power needs a measured power source (it has "
                         f"power: none)")
    if lines:
        raise InputError([Diagnostic(source, None, None, line) for line in lines])
    instance = scenario.instance
    return tuple(Expert(server=instance.server_names[instance.expert_server[i]], llm=llm,
                        endpoint=scenario.endpoints[instance.server_names[instance.expert_server[i]]])
                 for i, llm in enumerate(instance.expert_llms))


def _log_path(out_dir: Path, resume: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file, not a folder", "out")
    log_path = out_dir / LOG_NAME
    if resume and not log_path.is_file():
        raise UsageError(f"is on, but there is no {log_path} to continue", "resume")
    if not resume and log_path.is_file() and log_path.stat().st_size > 0:
        raise UsageError(f"is off, but {log_path} exists: turn it on to continue that run, or choose another "
                         f"output folder", "resume")
    return log_path


def _check_digests(state: LogState, prompts: list[Prompt], log_path: Path) -> None:
    digests = {p.id: p.digest() for p in prompts}
    for record in state.records.values():
        if record.prompt_id in digests and record.prompt_digest != digests[record.prompt_id]:
            raise UsageError(f"{log_path} was written for other prompts (prompt {record.prompt_id!r} differs): "
                             f"resume with the same prompt file, or choose another output folder")


def _done(state: LogState, expert: Expert, prompt: Prompt) -> bool:
    record = state.records.get((expert.server, expert.llm, prompt.id))
    return record is not None and record.ok


def power_method(source: PowerSource) -> str:
    """How a server's power is read, when no run logged its meter's own words."""
    if source.kind == "tegrastats":
        return f"tegrastats --interval {source.interval_ms} (VDD_IN, or the sum of the rails without one)"
    if source.kind == "nvml":
        return f"nvml:{source.gpu_index} (GPU total-energy counter)"
    if source.kind == "rapl":
        return "rapl (CPU package energy counters)"
    if source.kind == "file":
        assert source.path is not None
        return f"file:{source.path.name} (power-meter log)"
    return f"none: {source.watts:g} W x time (derived, not measured)"


def _write(scenario: Scenario, experts: tuple[Expert, ...], prompts: list[Prompt], state: LogState, out_dir: Path,
           settings: MeasureSettings, *, new_requests: int, caps: dict[str, int]) -> MeasureResult:
    categories = list(scenario.instance.categories)
    summaries, records = [], {}
    for expert in experts:
        # An expert past its allowed failures had its other prompts skipped: it is left out below.
        mine = [r for p in prompts if (r := state.records.get((expert.server, expert.llm, p.id))) is not None]
        records[(expert.server, expert.llm)] = mine
        idle = state.idle_watts.get(expert.server) if settings.subtract_idle else None
        summary = summarise(expert.server, expert.llm, expert.model, mine, categories,
                            quantile=settings.latency_quantile, max_failure_rate=settings.max_failure_rate,
                            prompts=len(prompts), idle_w=idle)
        summaries.append(_checked(scenario, summary, mine, categories, state, settings))
    kept = [s for s in summaries if not s.excluded]
    if not kept:
        raise NothingMeasured("no expert could be measured: " + "; ".join(f"{s.server}/{s.llm}: {s.excluded}"
                                                                          for s in summaries))
    profiles = {server: _profile(scenario, server, [s for s in kept if s.server == server], records, categories,
                                 state, settings)
                for server in dict.fromkeys(s.server for s in kept)}
    scores = {key + (r.prompt_id,): r.score for key, rs in records.items() for r in rs}
    table = writers.outcomes_table(prompts, kept, scores, categories)
    document = writers.scenario_document(scenario, kept, out_dir, caps)
    files = writers.write_all(out_dir, profiles, table, document, Path(str(scenario.path)).name)
    return MeasureResult(scenario=scenario.name, out_dir=out_dir, prompts=len(prompts), experts=tuple(summaries),
                         files=tuple(files), new_requests=new_requests, idle_watts=dict(state.idle_watts))


def _checked(scenario: Scenario, summary: ExpertSummary, records: list[RequestRecord], categories: list[str],
             state: LogState, settings: MeasureSettings) -> ExpertSummary:
    """The summary, excluded when its profile entry alone would fail ``moe2 validate``: one
    expert's odd numbers must not cost its server's other experts their profile."""
    if summary.excluded:
        return summary
    document = _profile(scenario, summary.server, [summary], {(summary.server, summary.llm): records}, categories,
                        state, settings)
    problem = writers.profile_problem(document, f"profiles/{summary.server}.yaml")
    if problem is None:
        return summary
    return replace(summary, excluded=f"its measured numbers fail the profile checks: {problem}")


def _profile(scenario: Scenario, server: str, kept: list[ExpertSummary], records, categories, state: LogState,
             settings: MeasureSettings) -> dict:
    endpoint = scenario.endpoints[server]
    assert endpoint.power is not None
    device = scenario.server_devices[scenario.instance.server_names.index(server)]
    name = next((p.name for p in scenario.profiles.values() if p.id == device), device)
    idle_w = state.idle_watts.get(server)
    if idle_w is None:
        idle = "no idle baseline measured"
    else:
        idle = f"idle {idle_w:.3f} W ({'subtracted' if settings.subtract_idle else 'not subtracted'})"
    method = state.power_methods.get(server) or power_method(endpoint.power)
    return writers.profile_document(server, name, endpoint.url, method, idle, kept,
                                    {s.llm: records[(server, s.llm)] for s in kept}, categories,
                                    settings.latency_quantile)
