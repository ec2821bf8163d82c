"""Labelled prompts: JSON lines of ``id``, ``category``, ``messages`` or ``prompt``,
``reference`` (or ``references``: a list of accepted answers, the canonical one first) and
``scorer`` (optionally ``max_tokens``), plain or gzipped.

    {"id": "gsm8k-0007", "category": "math", "prompt": "Goldie makes $5 an hour ...",
     "reference": "250", "scorer": "numeric", "max_tokens": 1024}

Every problem in a file is reported as ``path:line: what (got X)``; other fields are ignored.
The default set (LLMRouter questions, MIT) ships with moe2; see examples/data/SOURCE.md.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.fileio import exists_as
from moe2_cli.measure.scorers import SCORERS
from moe2_cli.outcomes.rows import Problems, describe, unique_records
from moe2_cli.scenario.shipped import shipped_dir

DEFAULT_PROMPTS = "llmrouter-prompts.jsonl.gz"
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Prompt:
    id: str
    category: str
    messages: tuple[tuple[str, str], ...]  # (role, content), in order
    references: tuple[str, ...]
    scorer: str
    max_tokens: int | None = None

    @property
    def text(self) -> str:
        """What the gate reads: the user turns."""
        return "\n".join(content for role, content in self.messages if role == "user")

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def digest(self) -> str:
        """Identifies what was asked and how it is scored, so a resumed log matches its prompts."""
        body = [self.category, self.messages, self.references, self.scorer, self.max_tokens]
        return hashlib.sha256(json.dumps(body, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def default_prompts_path() -> Path:
    return shipped_dir("examples") / "data" / DEFAULT_PROMPTS


def load_prompts(path: str | Path | None = None) -> list[Prompt]:
    """Read and check a prompt file (the shipped default set when ``path`` is None)."""
    path = Path(path) if path is not None else default_prompts_path()
    if not exists_as(path):
        raise InputError(Diagnostic(str(path), None, None, "prompt file not found"))
    return unique_records(path, lambda line, row, problems: _prompt(problems, line, row), "prompts")


def for_categories(prompts: list[Prompt], categories: Iterable[str], source: str) -> list[Prompt]:
    """The prompts of the scenario's categories; every category needs some. Prompts of other
    categories are left out, so one prompt set serves scenarios with fewer categories."""
    wanted = list(categories)
    have = {p.category for p in prompts}
    missing = [Diagnostic(source, None, None, f"no prompts for scenario category {c!r} (the prompts have: "
                                              f"{', '.join(sorted(have))}; give --prompts FILE)")
               for c in wanted if c not in have]
    if missing:
        raise InputError(missing)
    return [p for p in prompts if p.category in wanted]


def sample_per_category(prompts: list[Prompt], n: int, seed: int) -> tuple[list[Prompt], list[str]]:
    """``n`` prompts of each category, drawn without replacement and kept in file order, and a
    note for each category with fewer than ``n`` (it keeps them all). Each category draws from
    its own generator, seeded by ``seed`` and the category's name, so one category's sample does
    not change when another category is added or removed."""
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(prompt.category, []).append(index)
    kept: list[int] = []
    notes = []
    for category, indices in groups.items():
        if len(indices) <= n:
            kept += indices
            if len(indices) < n:
                notes.append(f"category {category!r} has {len(indices)} prompts, fewer than {n}: all are used")
            continue
        rng = np.random.default_rng([seed, zlib.crc32(category.encode("utf-8"))])
        kept += [indices[i] for i in rng.choice(len(indices), size=n, replace=False)]
    return [prompts[i] for i in sorted(kept)], notes


def capped(prompts: list[Prompt], caps: dict[str, int]) -> list[Prompt]:
    """The prompts with ``max_tokens`` no more than their category's cap (the cap, if they set none)."""
    return [replace(p, max_tokens=min(p.max_tokens or caps[p.category], caps[p.category])) for p in prompts]


def _prompt(problems: Problems, line: int, row: dict[str, Any]) -> Prompt | None:
    pid, category, scorer = row.get("id"), row.get("category"), row.get("scorer")
    for name, value in (("id", pid), ("category", category)):
        if not isinstance(value, str) or not value.strip():
            problems.add(line, f"{name} must be a non-empty string (got {describe(value)})")
            return None
    if not isinstance(scorer, str) or scorer not in SCORERS:  # a list or an object cannot be looked up
        problems.add(line, f"scorer must be one of {', '.join(SCORERS)} (got {describe(scorer)})")
        return None
    messages = _messages(problems, line, row)
    references = _references(problems, line, row)
    max_tokens = row.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        problems.add(line, f"max_tokens must be a positive integer (got {describe(max_tokens)})")
        return None
    if messages is None or references is None:
        return None
    assert isinstance(pid, str) and isinstance(category, str)
    return Prompt(id=pid, category=category, messages=messages, references=references, scorer=scorer,
                  max_tokens=max_tokens)


def _messages(problems: Problems, line: int, row: dict[str, Any]) -> tuple[tuple[str, str], ...] | None:
    if ("messages" in row) == ("prompt" in row):
        problems.add(line, "give either messages or prompt (got "
                                  f"{'both' if 'prompt' in row else 'neither'})")
        return None
    if "prompt" in row:
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            problems.add(line, f"prompt must be non-empty text (got {describe(prompt)})")
            return None
        return (("user", prompt),)
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        problems.add(line, f"messages must be a non-empty list (got {describe(messages)})")
        return None
    out = []
    for message in messages:
        ok = isinstance(message, dict) and message.get("role") in _ROLES and isinstance(message.get("content"), str)
        if not ok:
            problems.add(line, "each message must be {\"role\": system|user|assistant, \"content\": text} "
                                      f"(got {describe(message)})")
            return None
        out.append((message["role"], message["content"]))
    if not any(role == "user" for role, _ in out):
        problems.add(line, "messages must include a user message")
        return None
    return tuple(out)


def _references(problems: Problems, line: int, row: dict[str, Any]) -> tuple[str, ...] | None:
    if "reference" in row and "references" in row:
        problems.add(line, "give either reference or references (got both)")
        return None
    value = row.get("references", row.get("reference"))
    items = value if isinstance(value, list) else [value]
    ok = items and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip() for v in items)
    if not ok:
        problems.add(line, "reference must be text, a number, or a non-empty list of them "
                                  f"(got {describe(value)})")
        return None
    return tuple(str(v) for v in items)
