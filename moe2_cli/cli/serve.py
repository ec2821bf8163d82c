"""`moe2 serve`: an OpenAI-compatible router for the selected experts."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from moe2_cli.cli.common import SeedOpt, handles_errors
from moe2_cli.cli.inspect import ScenarioArg
from moe2_cli.cli.route import PlanRouterOpt, SelectionOpt
from moe2_cli.cli.select import BudgetOpt, OutcomesOpt
from moe2_cli.errors import UsageError
from moe2_cli.serve import AGGREGATES, DEFAULT_MAX_BODY, DEFAULT_MAX_REPLY_BYTES


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
    aggregate: Annotated[str, typer.Option("--aggregate", help="top: the highest-weight expert's reply as it is "
                                                               "(streams pass through as generated); vote: the "
                                                               "majority of normalised text answers (streams are "
                                                               "sent once the votes are in).")] = "top",
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Require 'Authorization: Bearer <key>' on every route but /healthz, the key "
                              "being this environment variable's value.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="Largest request body in bytes (413 above).")]
    = DEFAULT_MAX_BODY,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds a request may take in all, fallbacks included, however slowly experts "
                          "answer; a client's own shorter timeout shortens it (default: each endpoint's timeout_s "
                          "per expert, and the slowest times 1 + --fallbacks for the whole).")] = None,
    ttft_timeout: Annotated[float | None, typer.Option(
        "--ttft-timeout", help="Seconds to wait for an expert's first byte (a stream's first event) before the "
                               "next expert stands in (default: the whole --timeout).")] = None,
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
    router: PlanRouterOpt = None,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Serve the selection as one OpenAI-compatible model: POST /v1/chat/completions and /v1/completions,
    GET /v1/models, /healthz and /metrics. Stops on SIGTERM once the requests in flight are answered.

    Example: moe2 serve my-scenario.yaml --selection select.json --port 8000
    """
    # The HTTP stack loads only when a server starts: the rest of the command line stays light.
    from moe2_cli.serve.breaker import BreakerSettings
    from moe2_cli.serve.plan import choose, with_router
    from moe2_cli.serve.proxy import Proxy
    from moe2_cli.serve.server import bind
    from moe2_cli.serve.server import serve as run_server
    from moe2_cli.serve.upstream import targets_for

    if aggregate not in AGGREGATES:
        raise UsageError(f"--aggregate must be one of {', '.join(AGGREGATES)} (got {aggregate!r})")
    for flag, seconds in (("--timeout", timeout), ("--ttft-timeout", ttft_timeout)):
        if seconds is not None and not seconds > 0:
            raise UsageError(f"{flag} must be > 0 seconds (got {seconds})")
    key = _api_key(api_key_env)
    choice = choose(scenario, budget_specs=budget, selection=selection, seed=seed, outcomes=outcomes, router=router)
    # Endpoints, keys and the port are checked before the router is fitted: a typo costs no waiting.
    targets = targets_for(choice.scenario, choice.selection, timeout)
    sock = bind(host, port)
    plan = with_router(choice, seed=seed, outcomes=outcomes)
    proxy = Proxy(plan=plan, targets=targets, aggregate=aggregate, fallbacks=fallbacks, ttft_s=ttft_timeout,
                  deadline_s=timeout, max_reply_bytes=max_upstream_bytes,
                  breaker_settings=BreakerSettings(failures=breaker_failures, cooldown_s=breaker_cooldown))
    where = f"http://{host}:{sock.getsockname()[1]}"
    print(f"moe2 serve: model {plan.scenario.name!r} at {where}/v1 routes top-{plan.k} by {plan.router_name} inside "
          f"{', '.join(plan.selection)}", file=sys.stderr, flush=True)
    if key is None and host not in ("127.0.0.1", "localhost", "::1"):
        print("moe2 serve: warning: listening beyond loopback without --api-key-env", file=sys.stderr, flush=True)
    run_server(proxy, sock, api_key=key, max_body=max_body)
