"""``POST /v1/feedback``: a client scores an answer it got, or gives the answer it wanted.

The body is ``{"id": ID, "score": S}`` with S in [0, 1], or ``{"id": ID, "reference": R}`` with
R the right answer (text, or a list of acceptable texts); ID is the reply's ``id`` (the
completion id) or its ``X-Request-Id``. Each accepted body becomes one line of
``DIR/feedback.jsonl``, written like the request log (a writer thread, rotation, nothing held
back), which ``moe2 score`` joins to the request log. The id must name one of the requests this
server logged recently (404 otherwise), and feedback needs ``--log`` (409 without it).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from moe2_cli.serve.proxy import Proxy, error_body
from moe2_cli.serve.requests import MalformedJSON, parse_json

FEEDBACK_NAME = "feedback.jsonl"
MAX_FEEDBACK_BYTES = 1 << 20  # a reference answer may be long, but not longer than a request
MAX_ID_CHARS = 256


class BadFeedback(ValueError):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def feedback_record(body: object) -> dict:
    """The line to log for ``body``, checked; a :class:`BadFeedback` says what is wrong."""
    if not isinstance(body, dict):
        raise BadFeedback("the body must be a JSON object with id and score, or id and reference")
    rid = body.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > MAX_ID_CHARS:
        raise BadFeedback(f"'id' must be the id of a completion (a string of 1 to {MAX_ID_CHARS} characters)", "id")
    if ("score" in body) == ("reference" in body):
        raise BadFeedback("give exactly one of 'score' (a number in [0, 1]) and 'reference' (the right answer)")
    unix = time.time()
    record = {"id": rid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix)), "unix": round(unix, 6)}
    if "score" in body:
        score = body["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise BadFeedback(f"'score' must be a number in [0, 1] (got {score!r:.40})", "score")
        return {**record, "score": float(score)}
    reference = body["reference"]
    items = reference if isinstance(reference, list) else [reference]
    if not items or not all(isinstance(r, str) and r.strip() for r in items):
        raise BadFeedback("'reference' must be non-empty text, or a non-empty list of texts", "reference")
    return {**record, "reference": reference}


def feedback_route(proxy: Proxy):
    """The handler of ``POST /v1/feedback`` for ``proxy`` (which holds the logs)."""

    async def handle(request: Request) -> Response:
        if proxy.feedback_log is None or proxy.request_log is None:
            return _error(409, "feedback needs a request log: start moe2 serve with --log DIR", "feedback_unavailable")
        raw = await _body(request)
        if raw is None:
            return _error(413, f"request body larger than {MAX_FEEDBACK_BYTES} bytes", "request_too_large")
        try:
            record = feedback_record(parse_json(raw))
        except MalformedJSON as err:
            return _error(400, f"the body is not valid JSON ({err})")
        except BadFeedback as err:
            return _error(400, str(err), param=err.param)
        if not proxy.request_log.knows(record["id"]):
            return _error(404, f"no recent request has the id {record['id']!r} (give the reply's id or its "
                               "X-Request-Id)", "completion_not_found", "id", kind="invalid_request_error")
        proxy.feedback_log.write(record)
        return JSONResponse({"object": "feedback", "id": record["id"], "recorded": True})

    return handle


async def _body(request: Request) -> bytes | None:
    """The body, or None past MAX_FEEDBACK_BYTES (counted as it arrives: a chunked body has no length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FEEDBACK_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, code: str | None = None, param: str | None = None,
           kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(error_body(message, kind, code, param), status_code=status)
