"""Run a selection: route queries through the gate restricted to S, offline (``moe2 route``) or
live behind an OpenAI-compatible proxy (``moe2 serve``).

The package's modules load numpy and the HTTP stack; the settings the command line checks
before starting a server live here, so it can check them without loading either.
"""

AGGREGATES = ("top", "vote")
DEFAULT_MAX_BODY = 1 << 20  # bytes: 1 MiB
# What of a conversation is routed: the last user message, every user turn, or every message.
# No multi-turn outcomes ship, so `gating eval` cannot rank them; "last" is what single-turn
# outcomes were scored on.
ROUTE_ON = ("last", "user", "all")
DEFAULT_ROUTE_ON = "last"
DEFAULT_QUEUE_TIMEOUT_S = 5.0  # longest wait for an admission slot
DEFAULT_MAX_REPLY_BYTES = 8 << 20  # bytes of one expert's reply: a long completion with logprobs is under 1 MiB
