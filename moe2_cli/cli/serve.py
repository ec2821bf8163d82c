"""`moe2 serve`: an OpenAI-compatible router for the selected experts."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.cli.common import handles_errors
from moe2_cli.cli.options import (
    Aggregate,
    BudgetOpt,
    CategoryPolicyOpt,
    MaxTokensOpt,
    OutcomesOpt,
    RouteOn,
    RouteOnOpt,
    ScenarioArg,
    SeedOpt,
)
from moe2_cli.cli.route import PlanRouterOpt, SelectionOpt
from moe2_cli.errors import UsageError
from moe2_cli.serve import DEFAULT_MAX_BODY, DEFAULT_MAX_REPLY_BYTES, DEFAULT_QUEUE_TIMEOUT_S


def _policy_note(effective, asked) -> str:
    if effective == asked:
        return str(effective)
    return f"{effective} (the outcomes carry no question text to infer a category from)"


def _api_key(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise UsageError(f"--api-key-env names {name}, which is not set (or empty)")
    return key


@handles_errors
def serve(
    scenario: ScenarioArg = None,
    budget: BudgetOpt = None,
    selection: SelectionOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; loopback unless you say otherwise.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    probe_port: Annotated[int | None, typer.Option(
        "--probe-port", min=0, max=65535, help="Also answer /healthz, /readyz and /metrics on this port (same --host), "
                                               "from a thread of their own: probes stay fast however busy the main "
                                               "port is, and keep answering through the drain (default: off; the "
                                               "main port answers them either way).")] = None,
    aggregate: Annotated[Aggregate, typer.Option("--aggregate", help="top: the highest-weight expert's reply as it "
                                                                     "is (streams pass through as generated); vote: "
                                                                     "the majority of normalised text answers "
                                                                     "(streams are sent once the votes are in).")]
    = Aggregate.top,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Require 'Authorization: Bearer <key>' on every route but /healthz and "
                              "/readyz, the key being this environment variable's value.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="Largest request body in bytes (413 above).")]
    = DEFAULT_MAX_BODY,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds a request may take in all, fallbacks included, however slowly experts "
                          "answer; a client's own shorter timeout shortens it (default: each endpoint's timeout_s "
                          "per expert, and the slowest times 1 + --fallbacks for the whole).")] = None,
    ttft_timeout: Annotated[float | None, typer.Option(
        "--ttft-timeout", help="Seconds to wait for an expert's first byte (a stream's first event) before the "
                               "next expert stands in (default: the whole --timeout).")] = None,
    max_tokens: MaxTokensOpt = None,
    max_upstream_bytes: Annotated[int, typer.Option(
        "--max-upstream-bytes", min=1024, help="Largest expert reply read, in bytes; a larger one is the "
                                               "expert's failure.")] = DEFAULT_MAX_REPLY_BYTES,
    breaker_failures: Annotated[int, typer.Option(
        "--breaker-failures", min=1, help="Failures in a row after which an expert is skipped for the "
                                          "cooldown.")] = 3,
    breaker_cooldown: Annotated[float, typer.Option(
        "--breaker-cooldown", min=0.001, help="Seconds a failing expert is skipped before one request "
                                              "tries it again.")] = 30.0,
    fallbacks: Annotated[int, typer.Option("--fallbacks", min=0, help="Failed experts replaced, per request, by "
                                                                       "the next in the router's ranking.")] = 2,
    max_inflight: Annotated[int | None, typer.Option(
        "--max-inflight", min=1, help="Completion requests worked on at once (default: 4 x the experts of S x k, "
                                      "at least 16).")] = None,
    max_queue: Annotated[int | None, typer.Option(
        "--max-queue", min=0, help="Requests waiting for a slot beyond those; past both, a 503 with Retry-After "
                                   "at once (default: --max-inflight).")] = None,
    queue_timeout: Annotated[float, typer.Option(
        "--queue-timeout", help="Longest wait for a slot, in seconds, before a 503.")] = DEFAULT_QUEUE_TIMEOUT_S,
    grace: Annotated[float | None, typer.Option(
        "--grace", help="Seconds the requests in flight get to finish after SIGTERM or SIGINT (default: a "
                        "request's deadline, --timeout or its default, + 5).")] = None,
    router: PlanRouterOpt = None,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    category_policy: CategoryPolicyOpt = None,
    route_on: RouteOnOpt = RouteOn.last,
    sticky: Annotated[bool, typer.Option(
        "--sticky/--no-sticky", help="Send a conversation's later turns (named by the X-Moe2-Session header or "
                                     "the body's 'user') to the expert that answered it, while that expert is in "
                                     "S and did not fail its last call.")] = False,
    log: Annotated[Path | None, typer.Option(
        "--log", help="Write one JSON line per completion request to DIR/requests.jsonl (made if missing): id, "
                      "time, category, experts, status, latency, tokens, estimated energy and budget overruns; "
                      "a line that cannot be written is dropped and counted, the request still answered. "
                      "POST /v1/feedback then writes DIR/feedback.jsonl.")] = None,
    log_max_mb: Annotated[float, typer.Option(
        "--log-max-mb", help="Size in MB at which the request log rotates (5 files are kept).")] = 100.0,
    log_text: Annotated[bool, typer.Option(
        "--log-text/--no-log-text", help="Also log each request's prompt and answer text.")] = False,
    shadow_rate: Annotated[float, typer.Option(
        "--shadow-rate", min=0.0, max=1.0, help="Fraction of answered requests sent again, after the reply, to the "
                                                "experts with an endpoint that the request did not call; their "
                                                "answers are logged for scoring (needs --log and --log-text). "
                                                "Which requests is drawn with --seed.")] = 0.0,
    shadow_experts: Annotated[int | None, typer.Option(
        "--shadow-experts", min=1, help="At most this many experts per shadowed request, drawn at random "
                                        "(default: every one it did not call).")] = None,
    shadow_concurrency: Annotated[int, typer.Option(
        "--shadow-concurrency", min=1, help="Shadow calls running at once; one more is dropped and counted.")] = 4,
    watch: Annotated[bool, typer.Option(
        "--watch/--no-watch", help="Reload the plan when the --selection file changes (checked every second). "
                                   "SIGHUP reloads it either way.")] = True,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", metavar="best-single|EXPERT",
        help="Count each answered request's energy and latency against this expert alone, by the profiles: "
             "best-single (the best single expert that fits, as select names it) or an expert id. The log "
             "(--log) gets baseline, saved_j and saved_s; /metrics the running totals; 'moe2 report' sums "
             "them.", show_default=False)] = None,
    measure_power: Annotated[bool, typer.Option(
        "--measure-power/--no-measure-power", help="Read the power source of each server that states one "
                                                   "(endpoint.power: nvml, tegrastats, rapl, file:) and count the "
                                                   "joules measured per request in /metrics and the log; off, "
                                                   "only the profiles' estimates are counted.")] = True,
) -> None:
    """Serve the selection as one OpenAI-compatible model: POST /v1/chat/completions and /v1/completions,
    GET /v1/models, /healthz (alive), /readyz (ready: warm, not draining, an expert reachable and
    not every circuit breaker open) and /metrics, the last three also on --probe-port if given.

    On SIGTERM or SIGINT it drains: new requests get a 503, those in flight get --grace seconds,
    and any still running then are answered with a 503. Exit status: 0 when none had to be cut,
    75 when some were, 2 on bad usage or input. SIGHUP (or a change of the --selection file)
    rebuilds the plan and serves it from the next request on; a plan that fails to build leaves
    the old one serving.

    Example: moe2 serve my-scenario.yaml --selection select.json --port 8000
    """
    # The HTTP stack loads only when a server starts: the rest of the command line stays light.
    from moe2_cli.scenario.caps import parse_max_tokens
    from moe2_cli.serve.admission import Bounds, default_max_inflight
    from moe2_cli.serve.baseline import Savings, resolve_baseline
    from moe2_cli.serve.breaker import BreakerSettings
    from moe2_cli.serve.energy import Power
    from moe2_cli.serve.planning import PlanRecipe
    from moe2_cli.serve.proxy import Proxy
    from moe2_cli.serve.reload import Reloader
    from moe2_cli.serve.server import Options, bind, grace_seconds, warm_up
    from moe2_cli.serve.server import serve as run_server
    from moe2_cli.serve.sessions import Sessions
    from moe2_cli.serve.shadow import Shadow, ShadowSettings
    from moe2_cli.serve.shadow import fleet as fleet_experts
    from moe2_cli.serve.upstream import Pools

    waits = {"--timeout": timeout, "--ttft-timeout": ttft_timeout, "--queue-timeout": queue_timeout, "--grace": grace}
    for flag, seconds in waits.items():
        _check_seconds(flag, seconds)
    # Two sockets with SO_REUSEADDR may both bind one port until one listens: it is said here.
    if probe_port == port != 0:
        raise UsageError(f"--probe-port {port} is the --port too; give the probes a port of their own")
    if not 0 < log_max_mb < math.inf:
        raise UsageError(f"--log-max-mb must be a finite number > 0 (got {log_max_mb})")
    if shadow_rate > 0 and (log is None or not log_text):
        raise UsageError("--shadow-rate needs --log DIR and --log-text: shadow answers are logged for scoring, "
                         "which needs their text")
    key = _api_key(api_key_env)
    recipe = PlanRecipe(scenario, tuple(budget or ()), selection, seed, outcomes, router, category_policy, timeout)
    chosen = recipe.choose()
    policy = chosen.policy
    caps = parse_max_tokens(max_tokens or (), chosen.choice.scenario.instance.categories)
    # Endpoints, keys, the log and the port are checked before the router is fitted: a typo costs no waiting.
    fleet = _fleet_targets(chosen.choice.scenario, timeout) if shadow_rate > 0 else None
    against = None if baseline is None else resolve_baseline(baseline, chosen.choice, selection=selection,
                                                             budget_specs=budget, outcomes=outcomes)
    request_log = None if log is None else _request_log(log, log_max_mb, log_text)
    feedback_log = None if log is None else _request_log(log, log_max_mb, False, feedback=True)
    # Every server with an endpoint is metered: a reloaded plan may move S onto any of them.
    power = _power(chosen.choice.scenario, fleet_experts(chosen.choice.scenario)) if measure_power else Power()
    sock = bind(host, port)
    probe_sock = None if probe_port is None else _probe_socket(host, probe_port)
    plan = recipe.fit(chosen)
    inflight = max_inflight or default_max_inflight(len(plan.selection), plan.k)
    bounds = Bounds(max_inflight=inflight, max_queue=inflight if max_queue is None else max_queue,
                    queue_timeout_s=queue_timeout)
    # A request calls at most k experts at once (a fallback replaces a failed one), so pools this
    # size never make an admitted request wait for a connection.
    proxy = Proxy(plan=plan, targets=chosen.targets, aggregate=aggregate, fallbacks=fallbacks, ttft_s=ttft_timeout,
                  pools=Pools(max_connections=inflight * plan.k), category_policy=plan.category_policy or policy,
                  route_on=route_on.value, sessions=Sessions() if sticky else None, deadline_s=timeout,
                  max_reply_bytes=max_upstream_bytes, request_log=request_log, feedback_log=feedback_log,
                  savings=None if against is None else Savings(plan.scenario.instance, against),
                  power=power, max_tokens=caps,
                  breaker_settings=BreakerSettings(failures=breaker_failures, cooldown_s=breaker_cooldown))
    if fleet is not None and request_log is not None:
        settings = ShadowSettings(rate=shadow_rate, experts=shadow_experts, concurrency=shadow_concurrency, seed=seed)
        proxy.attach(Shadow(settings, fleet, plan.scenario, request_log, max_reply_bytes=max_upstream_bytes))
    proxy.attach(Reloader(proxy, recipe.build, watched=selection if watch else None))
    warm_up(proxy)
    where = f"http://{host}:{sock.getsockname()[1]}"
    print(f"moe2 serve: model {plan.scenario.name!r} at {where}/v1 routes top-{plan.k} by {plan.router_name} inside "
          f"{', '.join(plan.selection)}; a request naming no category: {_policy_note(plan.category_policy, policy)}",
          file=sys.stderr, flush=True)
    if probe_sock is not None:
        print(f"moe2 serve: probes also at http://{host}:{probe_sock.getsockname()[1]} (/healthz, /readyz, /metrics)",
              file=sys.stderr, flush=True)
    if against is not None:
        print(f"moe2 serve: savings counted against {against.expert} alone", file=sys.stderr, flush=True)
    if key is None and host not in ("127.0.0.1", "localhost", "::1"):
        print("moe2 serve: warning: listening beyond loopback without --api-key-env", file=sys.stderr, flush=True)
    run_server(proxy, sock, Options(bounds=bounds, grace_s=grace_seconds(proxy) if grace is None else grace,
                                    api_key=key, max_body=max_body), probe_sock)


def _probe_socket(host: str, port: int):
    from moe2_cli.serve.server import bind

    try:
        return bind(host, port)
    except UsageError as err:
        raise UsageError(f"--probe-port: {err}") from None


def _fleet_targets(scenario, timeout: float | None):
    """Where the fleet's experts answer: every expert whose server has an endpoint."""
    from moe2_cli.serve.shadow import fleet
    from moe2_cli.serve.upstream import targets_for

    return targets_for(scenario, fleet(scenario), timeout)


def _request_log(directory: Path, max_mb: float, with_text: bool, feedback: bool = False):
    """The request log, or with ``feedback`` the log of POST /v1/feedback, in ``directory``."""
    from moe2_cli.serve.feedback import FEEDBACK_NAME
    from moe2_cli.serve.requestlog import LOG_NAME, open_log

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--log {directory}: not a directory")
    try:
        return open_log(directory, max_mb, with_text=with_text, name=FEEDBACK_NAME if feedback else LOG_NAME)
    except OSError as err:
        raise UsageError(f"--log {directory}: cannot write a log there ({err.strerror or err})") from None


def _power(scenario, experts: list[str]):
    """The meters of the selection's servers; one that cannot be read is served without one."""
    from moe2_cli.serve.energy import open_power

    power, problems = open_power(scenario, experts)
    for server, meter in power.meters.items():
        print(f"moe2 serve: measuring the joules of {server}'s calls with {meter.meter.method}", file=sys.stderr,
              flush=True)
    for line in problems:
        print(f"moe2 serve: warning: {line}; its requests are logged with measured_j null "
              f"(--no-measure-power: read no power source)", file=sys.stderr, flush=True)
    return power


def _check_seconds(flag: str, seconds: float | None) -> None:
    if seconds is not None and not 0 < seconds < math.inf:
        raise UsageError(f"{flag} must be a finite number of seconds > 0 (got {seconds})")
