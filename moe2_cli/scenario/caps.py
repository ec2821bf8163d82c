"""How many tokens an expert may generate per category: ``max_tokens`` caps for measure and serve.

On a CPU server one runaway answer costs a minute and every request behind it waits, so every
category has a cap: moe2's default for it (below), the scenario's ``max_tokens`` in the
category's block, then ``--max-tokens CAT=N``, each overriding the one before. As with budgets,
``--max-tokens N`` replaces moe2's default only: a category with a cap of its own keeps it.

The defaults follow what each kind of question needs in the shipped prompt set:

- ``mcq`` 32: "answer with the letter" fits in a few tokens; 32 leaves room for
  "The answer is (B): ..." but not for an essay.
- ``open_qa`` 64: "answer with a short phrase only".
- ``math`` 512: worked chain-of-thought answers to GSM8K-style problems mostly end within a few
  hundred tokens, then ``\\boxed{}``.
- ``code`` 512: one function with its docstring.
- any other category 512: room for a worked answer, and still a bound on a runaway one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from moe2_cli.errors import UsageError
from moe2_cli.yamlio import did_you_mean

DEFAULT_MAX_TOKENS = {"mcq": 32, "open_qa": 64, "math": 512, "code": 512}
FALLBACK_MAX_TOKENS = 512
# The largest cap a file or a flag may set: far beyond any edge model's context window.
MAX_MAX_TOKENS = 1 << 20


def token_caps(categories: Sequence[str], scenario: Mapping[str, int] | None = None,
               overrides: Mapping[str | None, int] | None = None) -> dict[str, int]:
    """Each category's cap: the default (or the override keyed None), then the scenario's own,
    then the overrides that name the category."""
    given = dict(overrides or {})
    flat = given.pop(None, None)
    caps = {c: flat or DEFAULT_MAX_TOKENS.get(c, FALLBACK_MAX_TOKENS) for c in categories}
    named: dict[str, int] = {**(scenario or {}), **{c: n for c, n in given.items() if c is not None}}
    caps.update({c: n for c, n in named.items() if c in caps})
    return caps


def parse_max_tokens(specs: Sequence[str], categories: Sequence[str]) -> dict[str | None, int]:
    """``--max-tokens`` values: ``math=256`` for one category, ``256`` for all; the later wins."""
    out: dict[str | None, int] = {}
    for spec in specs:
        category, sep, raw = spec.rpartition("=")
        name = category.strip() if sep else None
        if name is not None and name not in categories:
            raise UsageError(f"names unknown category {name!r}{did_you_mean(name, categories)} "
                             f"(categories: {', '.join(categories)})", "max_tokens")
        out[name] = _count(raw.strip(), spec)
    return out


def _count(raw: str, spec: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MAX_TOKENS:
        raise UsageError(f"must look like math=512 or 256: a whole number of tokens from 1 to {MAX_MAX_TOKENS} "
                         f"(got {spec!r})", "max_tokens")
    return int(raw)
