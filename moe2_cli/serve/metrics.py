"""Prometheus text exposition (format 0.0.4), written by hand: a few labelled counters, one
gauge and histograms are all the proxy needs, and the output stays byte-stable and dependency-free."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# Seconds: from a loopback hop to a slow edge answer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Seconds of the proxy's own work on a request: routing and relaying, from tenths of a millisecond.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
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
    # The probe listener renders from a thread of its own while the event loop counts: a render
    # copies the family under the lock, so it never iterates a dict that grows, nor shows a
    # histogram's buckets and sum from different observations.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def observe(self, labels: Labels, value: float) -> None:
        with self._lock:
            counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self.values[labels] = self.values.get(labels, 0.0) + value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            values = dict(self.values)
            histogram = {labels: list(counts) for labels, counts in self.counts.items()}
        if self.kind != "histogram":
            values = self.sample() if self.sample is not None else values
            lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(values.items())]
            return lines
        for labels, counts in sorted(histogram.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts):
                running += count
                lines.append(f"{self.name}_bucket{_labels(labels, (('le', _number(bound)),))} {running}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(values[labels])}")
            lines.append(f"{self.name}_count{_labels(labels)} {running}")
        return lines


class Metrics:
    """The proxy's counters, changed by the event loop; each family is safe to render from
    another thread (the probe listener's)."""

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
        self.upstream_cancelled = Family("moe2_upstream_cancelled_total", "Expert calls closed before their reply "
                                         "ended, by expert and reason (deadline: the request's deadline or the "
                                         "expert's timeout passed; ttft: no first byte in time; abandoned: the "
                                         "request ended first, its client gone or the drain's grace over). The "
                                         "connection is dropped, so an expert's server that notices stops "
                                         "generating.", "counter")
        self.client_gone = Family("moe2_client_gone_total", "Completion requests whose client disconnected "
                                  "before the reply began; every expert call they made was closed (counted "
                                  "abandoned) and nothing was logged.", "counter")
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
        self.extra: list[Family] = []  # families of the proxy's companions
        self.overhead = Family("moe2_router_overhead_seconds", "The proxy's own time per completion request: its "
                               "latency minus the time spent waiting for the experts, by category.", "histogram",
                               buckets=OVERHEAD_BUCKETS)
        # With --baseline: answered requests against the baseline expert's profile cost. The
        # savings are gauges, since a route that costs more than the baseline lowers them.
        self.baseline_energy = Family("moe2_baseline_energy_joules_total", "Energy the baseline expert would have "
                                      "used on the answered requests (its profile's J per query of the category).",
                                      "counter")
        self.baseline_latency = Family("moe2_baseline_latency_seconds_total", "Latency the baseline expert would "
                                       "have taken on the answered requests (the profile's latency model).",
                                       "counter")
        self.saved_energy = Family("moe2_saved_energy_joules", "Baseline energy minus the estimated energy of the "
                                   "experts called, summed over the answered requests (negative: more spent).",
                                   "gauge")
        self.saved_latency = Family("moe2_saved_seconds", "Baseline latency minus the latency model over the "
                                    "experts called, summed over the answered requests (profile estimates).",
                                    "gauge")
        self.in_flight.inc((), 0.0)
        self.client_gone.inc((), 0.0)

    def render(self) -> str:
        families = (self.requests, self.in_flight, self.latency, self.expert_calls, self.expert_failures,
                    self.upstream_cancelled, self.client_gone,
                    self.expert_state, self.client_errors, self.expert_latency, self.tokens, self.energy, self.overruns,
                    self.categories, self.sticky, self.log_lines, self.overhead, self.baseline_energy,
                    self.baseline_latency, self.saved_energy, self.saved_latency, self.expert_energy, self.unmeasured,
                    *self.extra)
        return "\n".join(line for f in families for line in f.render()) + "\n"
