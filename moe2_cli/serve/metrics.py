"""Prometheus text exposition (format 0.0.4), written by hand: a few labelled counters, one
gauge and histograms are all the proxy needs, and the output stays byte-stable and dependency-free."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

# Seconds: from a loopback hop to a slow edge answer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}" if items else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Family:
    name: str
    help: str
    kind: str  # counter, gauge or histogram
    values: dict[Labels, float] = field(default_factory=dict)
    buckets: tuple[float, ...] = ()
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sample: Callable[[], dict[Labels, float]] | None = None  # a gauge read when rendered, not kept

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.inc(labels, value)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        if self.kind != "histogram":
            values = self.sample() if self.sample is not None else self.values
            lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(values.items())]
            return lines
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts):
                running += count
                lines.append(f"{self.name}_bucket{_labels(labels, (('le', _number(bound)),))} {running}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(self.values[labels])}")
            lines.append(f"{self.name}_count{_labels(labels)} {running}")
        return lines


class Metrics:
    """The proxy's counters; the event loop is single-threaded, so no locks are needed."""

    def __init__(self):
        self.requests = Family("moe2_requests_total", "Completion requests (chat and text) by category and HTTP "
                               "status.", "counter")
        self.in_flight = Family("moe2_requests_in_flight", "Completion requests being answered.", "gauge")
        self.latency = Family("moe2_request_latency_seconds", "Time from request to answer, by category.",
                              "histogram", buckets=LATENCY_BUCKETS)
        self.expert_calls = Family("moe2_expert_calls_total", "Calls to each expert.", "counter")
        self.expert_failures = Family("moe2_expert_failures_total", "Failed expert calls by kind (timeout, "
                                      "ttft_timeout, unreachable, http, malformed, too_large); each may fall "
                                      "back.", "counter")
        self.expert_state = Family("moe2_expert_state", "Each expert's circuit breaker: 0 closed (called), 1 "
                                   "half-open (one probe call), 2 open (skipped).", "gauge")
        self.client_errors = Family("moe2_upstream_client_errors_total", "Requests an expert refused as the "
                                    "client's mistake (HTTP 400, 404, 413, 422), passed back to the client, by "
                                    "status; never a fallback.", "counter")
        self.tokens = Family("moe2_tokens_total", "Tokens spent by every expert called (from their usage), by "
                             "category and type (prompt, completion).", "counter")
        self.expert_latency = Family("moe2_expert_latency_seconds", "Answer time of each expert.", "histogram",
                                     buckets=LATENCY_BUCKETS)
        self.energy = Family("moe2_estimated_energy_joules_total", "Energy of the experts called, estimated from "
                             "the profiles (J per query of the category), by category.", "counter")
        self.expert_energy = Family("moe2_energy_joules_total", "Energy of each expert's calls: estimated from its "
                                    "profile (J per query of the category) for every call, and measured by its "
                                    "server's power source where it has one, once the reading is in.", "counter")
        self.unmeasured = Family("moe2_energy_unmeasured_total", "Calls to an expert whose server has a power "
                                 "source but whose joules could not be measured (no reading in time, a reader "
                                 "failing, or too many requests waiting for theirs); logged as null.", "counter")
        self.overruns = Family("moe2_budget_overruns_total", "Requests over their category's budget, by "
                               "resource (latency, energy).", "counter")
        self.categories = Family("moe2_request_categories_total", "Completion requests by category and where the "
                                 "category came from (given, inferred from the text, or the default).", "counter")
        self.sticky = Family("moe2_sticky_turns_total", "Turns sent to their conversation's expert, by whether the "
                             "router ranked that expert first (agreed) or another (overrode).", "counter")
        self.log_lines = Family("moe2_log_lines_total", "Lines of the request log (--log) written, and dropped "
                                "(the writer's queue was full or the disk failed); the requests were answered.",
                                "counter")
        self.in_flight.inc((), 0.0)

    def render(self) -> str:
        families = (self.requests, self.in_flight, self.latency, self.expert_calls, self.expert_failures,
                    self.expert_state, self.client_errors, self.expert_latency, self.tokens, self.energy, self.overruns,
                    self.categories, self.sticky, self.log_lines, self.expert_energy, self.unmeasured)
        return "\n".join(line for f in families for line in f.render()) + "\n"
