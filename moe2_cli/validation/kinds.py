"""Every kind of file a user hands to moe2, each checked by the reader the command that takes
it uses, and summarised in a few words (what was read, and how much of it).

A saved selection, a query file and a mix only mean something against a scenario: they are
checked against the one given, else the way the commands that read them check them without
one (a selection on its own, queries and mixes against the shipped default scenario).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from moe2_cli.errors import Diagnostic, InfeasibleError, InputError
from moe2_cli.gating.mix import read_mix
from moe2_cli.inputs import STDIN
from moe2_cli.measure.prompts import load_prompts
from moe2_cli.outcomes import detect_format, read_outcomes
from moe2_cli.scenario.profiles import load_profile
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.serve.categories import parse_policy
from moe2_cli.serve.logread import read_log
from moe2_cli.serve.plan import read_selection, selection_record
from moe2_cli.serve.queries import read_queries
from moe2_cli.stats.params_file import load_truth
from moe2_cli.stats.samples import load_samples
from moe2_cli.validation.detect import detect, first_line


class FileKind(str, Enum):
    """The kinds of file, in the order they are listed."""

    scenario = "scenario"
    profile = "profile"
    outcomes = "outcomes"
    prompts = "prompts"
    selection = "selection"
    queries = "queries"
    mix = "mix"
    params = "params"
    samples = "samples"
    log = "log"


@dataclass(frozen=True)
class Checked:
    """A file that its reader accepted: its kind, its form (YAML, JSON lines, ...) and what it holds."""

    kind: str
    form: str
    summary: str


def count(n: int, word: str, many: str | None = None) -> str:
    """``1 query``, ``1,200 queries``."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def _scenario(path: Path, _: Scenario | None) -> tuple[str, str]:
    inst = load_scenario(path).instance
    return "YAML", (f"{count(inst.n_experts, 'expert')} on {count(len(inst.server_names), 'server')}, "
                    f"{count(len(inst.categories), 'category', 'categories')}")


def _profile(path: Path, _: Scenario | None) -> tuple[str, str]:
    profile = load_profile(path)
    return "YAML", (f"{profile.id}: {count(len(profile.llms), 'LLM')}, "
                    f"{count(len(profile.categories), 'category', 'categories')}")


_OUTCOME_FORMS = {"jsonl": "JSON lines", "csv": "CSV", "llmrouter": "LLMRouter JSON lines",
                  "lm-eval": "lm-evaluation-harness samples"}


def _outcomes(path: Path, _: Scenario | None) -> tuple[str, str]:
    form = detect_format(path)
    table = read_outcomes(path, form)
    return _OUTCOME_FORMS[form], (f"{count(table.n_queries, 'query', 'queries')}, {count(len(table.columns), 'LLM')}, "
                                  f"{count(len(table.categories), 'category', 'categories')}")


def _prompts(path: Path, _: Scenario | None) -> tuple[str, str]:
    prompts = load_prompts(path)
    categories = {p.category for p in prompts}
    scorers = sorted({p.scorer for p in prompts})
    return "JSON lines", (f"{count(len(prompts), 'prompt')}, {count(len(categories), 'category', 'categories')}, "
                          f"scored by {', '.join(scorers)}")


def _selection(path: Path, scenario: Scenario | None) -> tuple[str, str]:
    record = selection_record(path)
    router = record.get("router", "gate")
    if scenario is None:
        chosen = record.get("selection") or []
        k = f", top-{record['top_k']}" if "top_k" in record else ""
        return "JSON", (f"{count(len(chosen), 'expert')} of {record.get('scenario')!r}{k}, {router} router; "
                        "its experts not checked (give --scenario)")
    try:
        selected = read_selection(path, scenario)
    except InfeasibleError:
        return "JSON", f"no selection: nothing met its budgets in {scenario.name!r}"
    return "JSON", (f"{count(bin(selected.mask).count('1'), 'expert')} of {scenario.name!r}, top-{selected.k}, "
                    f"{selected.router} router")


def _queries(path: Path, scenario: Scenario | None) -> tuple[str, str]:
    scenario = scenario or load_scenario(None)
    categories = scenario.instance.categories
    queries = read_queries(path, categories, parse_policy("infer", categories))
    given = sum(q.category is not None for q in queries)
    return "JSON lines", (f"{count(len(queries), 'query', 'queries')}, {given:,} naming a category of "
                          f"{scenario.name!r}")


def _mix(path: Path, scenario: Scenario | None) -> tuple[str, str]:
    mix = read_mix(path, (scenario or load_scenario(None)).instance, read_outcomes)
    parts = [count(len(shares), what, many) for shares, what, many in
             ((mix.categories, "category", "categories"), (mix.tags, "tag", None)) if shares]
    return "JSON" if path.suffix.lower() == ".json" else "YAML", "shares of " + " and ".join(parts)


def _params(path: Path, _: Scenario | None) -> tuple[str, str]:
    truth = load_truth(path)
    p = truth.params
    return "YAML", (f"model {truth.name!r}: {count(p.n_experts, 'expert')}, top-{p.top_k}, "
                    f"{count(p.dim, 'input dimension')}")


def _samples(path: Path, _: Scenario | None) -> tuple[str, str]:
    X, _y = load_samples(path)
    # The reader's own rule: JSON lines when the first line opens an object, else CSV.
    form = "JSON lines" if first_line(path)[1].lstrip().startswith("{") else "CSV"
    return form, f"{count(len(X), 'sample')} of {count(X.shape[1], 'input')}"


def _log(path: Path, _: Scenario | None) -> tuple[str, str]:
    read = read_log(path)
    return "JSON lines", f"{count(len(read.lines), 'request')} in {count(len(read.files), 'file')}"


# Each reader returns (form, summary), or raises InputError listing what is wrong.
KINDS: dict[FileKind, Callable[[Path, Scenario | None], tuple[str, str]]] = {
    FileKind.scenario: _scenario, FileKind.profile: _profile, FileKind.outcomes: _outcomes,
    FileKind.prompts: _prompts, FileKind.selection: _selection, FileKind.queries: _queries, FileKind.mix: _mix,
    FileKind.params: _params, FileKind.samples: _samples, FileKind.log: _log,
}
NAMES = tuple(kind.value for kind in FileKind)


def kind_of(path: Path) -> FileKind:
    """The kind of file at ``path``, told by its name and content; UnknownKind when it is none."""
    if str(path) == STDIN:  # telling the kind reads the start, and standard input cannot be read twice
        raise InputError(Diagnostic("<stdin>", None, None, "validate checks files, not standard input; give a file"))
    return FileKind(detect(path, NAMES))


def check_file(path: Path, kind: FileKind | None = None, scenario: Scenario | None = None) -> Checked:
    """Read ``path`` with the reader of its kind (:func:`kind_of` when None); InputError lists
    what is wrong."""
    kind = kind or kind_of(path)
    form, summary = KINDS[kind](path, scenario)
    return Checked(kind.value, form, summary)
