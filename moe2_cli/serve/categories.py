"""What a query that names no category gets, never silently: its category inferred from its
text by the classifier fitted on the outcomes' categories (``infer``), a refusal (``require``),
or one named category (``default:NAME``). Every query says where its category came from
(``given``, ``inferred`` or ``default``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from moe2_cli.errors import Diagnostic, InputError, UsageError
from moe2_cli.serve.queries import Query

if TYPE_CHECKING:
    from moe2_cli.gating.category import CategoryClassifier

POLICIES = ("infer", "require", "default:NAME")
GIVEN, INFERRED, DEFAULT = "given", "inferred", "default"


@dataclass(frozen=True)
class CategoryPolicy:
    """``kind`` is ``infer``, ``require`` or ``default``; ``default`` names the category a
    ``default`` policy gives."""

    kind: str = "infer"
    default: str | None = None

    def __str__(self) -> str:
        return f"default:{self.default}" if self.kind == "default" else self.kind


def parse_policy(text: str, categories: Sequence[str]) -> CategoryPolicy:
    """``infer``, ``require`` or ``default:NAME`` (NAME one of ``categories``, in any case)."""
    kind, _, name = text.partition(":")
    if kind in ("infer", "require") and not name:
        return CategoryPolicy(kind)
    if kind != "default" or not name:
        raise UsageError(f"must be infer, require or default:NAME (got {text!r})", "category_policy")
    return CategoryPolicy("default", matching(name, categories, "category_policy"))


def matching(name: str, categories: Sequence[str], subject: str | None = None) -> str:
    """The category ``name`` names, compared without regard to case; a UsageError if none."""
    found = find(name, categories)
    if found is None:
        raise UsageError(f"names unknown category {name!r} (categories: {', '.join(categories)})", subject)
    return found


def find(name: object, categories: Sequence[str]) -> str | None:
    """The category ``name`` names, compared without regard to case (None: no category)."""
    by_fold = {c.casefold(): c for c in categories}
    return by_fold.get(name.casefold()) if isinstance(name, str) else None


def infer_missing(queries: Sequence[Query], classifier: CategoryClassifier | None, source: str) -> list[Query]:
    """The queries, each one without a category given the likeliest category of its text and
    that category's probability; an InputError when some need one and there is no classifier."""
    missing = [i for i, q in enumerate(queries) if q.category is None]
    if not missing:
        return list(queries)
    if classifier is None:
        raise InputError([Diagnostic(source, queries[i].line, None, "the query names no category and none can "
                                     "be inferred here (no classifier was fitted)") for i in missing])
    names, probabilities = classifier.predict([queries[i].text for i in missing])
    out = list(queries)
    for i, name, probability in zip(missing, names, probabilities):
        out[i] = replace(queries[i], category=name, category_source=INFERRED,
                         category_probability=float(probability))
    return out
