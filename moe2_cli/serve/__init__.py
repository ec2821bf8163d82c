"""Run a selection: route queries through the gate restricted to S, offline (``moe2 route``) or
live behind an OpenAI-compatible proxy (``moe2 serve``)."""
