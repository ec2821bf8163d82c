"""Scenarios: servers hosting LLMs from device profiles, query categories, k, default budgets.

Loading a scenario validates it and every profile it names, then builds the immutable
:class:`~moe2_cli.problem.Instance` that every solver works on. Experts are ordered as the file
lists them: servers in order, each server's LLMs in order.

A server with an endpoint may list LLMs that its profile does not know yet: measuring them is
how their profile entry gets made. Only ``moe2 measure`` loads such a scenario
(``unmeasured=True``); every other command reports each of them as "not measured yet".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from yaml.nodes import MappingNode, Node

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.fileio import exists_as
from moe2_cli.ids import lookalike_key, lookalike_message, lookalikes
from moe2_cli.problem import MAX_ENERGY_J, MAX_EXPERTS, MAX_LATENCY_S, Budgets, Instance
from moe2_cli.scenario.caps import MAX_MAX_TOKENS
from moe2_cli.scenario.endpoint import Endpoint, parse_endpoint
from moe2_cli.scenario.profiles import DeviceProfile, LLMProfile, check_schema_version, load_profile
from moe2_cli.scenario.shipped import default_scenario, shipped_dir
from moe2_cli.yamlio import Checker, did_you_mean, read_yaml

OUTCOME_FORMATS = ("llmrouter", "jsonl", "csv", "lm-eval")
_SHARE_TOLERANCE = 1e-6
# Bounds of the numbers that are costs or budgets (a share is at most 1).
_MAXIMA = {"latency_budget_s": MAX_LATENCY_S, "energy_budget_j": MAX_ENERGY_J, "latency_s": MAX_LATENCY_S,
           "energy_j": MAX_ENERGY_J, "max_tokens": MAX_MAX_TOKENS}
_TOP_KEYS = ("schema_version", "name", "description", "top_k", "aggregation_s", "categories", "budgets",
             "servers", "outcomes", "profiles_dir")


@dataclass(frozen=True)
class OutcomesSpec:
    """Where a scenario's real per-query outcomes are and how their tasks map to categories."""

    format: str
    path: Path
    task_map: dict[str, str]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: Path | None
    instance: Instance
    budgets: Budgets
    outcomes: OutcomesSpec | None
    profiles: dict[str, DeviceProfile]
    server_devices: tuple[str, ...]  # device id of each server, in instance order
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # server name -> where its LLMs answer
    # Categories with a cap of their own, per resource: a flat --budget leaves those caps alone.
    own_caps: dict[str, frozenset[str]] = field(default_factory=dict)
    # Experts (server/llm) that no profile knows yet; their numbers in the instance are zeros.
    unmeasured: frozenset[str] = frozenset()
    # Categories whose block sets max_tokens (see moe2_cli.scenario.caps for the defaults).
    max_tokens: dict[str, int] = field(default_factory=dict)


def load_scenario(path: str | Path | None = None, root: Node | None = None, *, unmeasured: bool = False) -> Scenario:
    """Read and validate a scenario: a file, the name of a shipped one (``large``), or the
    shipped default when ``path`` is None. ``root`` is the file's node tree when the caller
    has already parsed it. With ``unmeasured``, a server with an endpoint may host LLMs that
    its profile does not know (see :attr:`Scenario.unmeasured`)."""
    path = resolve_scenario(path)
    display = str(path)
    root = root if root is not None else read_yaml(path, display)
    check = Checker(display)
    top = check.mapping(root, "scenario", required=("schema_version", "name", "top_k", "categories", "servers"),
                        optional=_TOP_KEYS)
    if top is None:
        check.raise_if_any()
    check_schema_version(check, top)
    name = check.string(top["name"][1], "name") if "name" in top else None
    description = check.string(top["description"][1], "description") if "description" in top else ""
    top_k = check.number(top["top_k"][1], "top_k", positive=True, integer=True) if "top_k" in top else None
    aggregation = check.number(top["aggregation_s"][1], "aggregation_s", non_negative=True, maximum=MAX_LATENCY_S) \
        if "aggregation_s" in top else 0.0
    categories = _categories(check, top["categories"][1]) if "categories" in top else {}
    budgets = _budgets(check, top["budgets"][1]) if "budgets" in top else {}
    search = _profile_dirs(check, path, top.get("profiles_dir"))
    servers, profiles, endpoints = _servers(check, top["servers"][1], categories, search, path, unmeasured) \
        if "servers" in top else ([], {}, {})
    outcomes = _outcomes(check, top["outcomes"][1], path, categories) if "outcomes" in top else None
    check.raise_if_any()
    instance = _instance(display, name, categories, servers, top_k, aggregation)
    own = {f"{resource}{suffix}": {c: v[key][form] for c, v in categories.items() if form in v.get(key, {})}
           for resource, key in (("energy", "energy_budget_j"), ("latency", "latency_budget_s"))
           for suffix, form in (("", "max"), (".mean", "mean"))}
    default_budgets = _default_budgets(instance.categories, budgets, own)
    return Scenario(name=name, description=description or "", path=path, instance=instance,  # type: ignore[arg-type]
                    budgets=default_budgets, outcomes=outcomes, profiles=profiles,
                    server_devices=tuple(profile.id for _, profile, _, _ in servers), endpoints=endpoints,
                    own_caps={kind: frozenset(cats) for kind, cats in own.items()},
                    unmeasured=frozenset(f"{server}/{llm}" for server, profile, _, llms in servers
                                         for llm in llms if llm not in profile.llms),
                    max_tokens={c: int(v["max_tokens"]) for c, v in categories.items() if "max_tokens" in v})


def resolve_scenario(path: str | Path | None) -> Path:
    """A path as given, or a shipped scenario by name when no such file exists."""
    if path is None:
        return default_scenario()
    path = Path(path)
    shipped = shipped_dir("examples") / f"{path.name}.yaml"
    if not exists_as(path) and path.suffix == "" and len(path.parts) == 1 and exists_as(shipped, "file"):
        return shipped
    return path


def _categories(check: Checker, node) -> dict[str, dict[str, Any]]:
    entries = check.mapping(node, "categories", free_keys=True)
    if not entries:
        if entries is not None:
            check.error(node, "categories must name at least one category (got none)")
        return {}
    out = {}
    for name, (_, value) in entries.items():
        fields = check.mapping(value, f"category {name!r}", required=("share",),
                               optional=("latency_budget_s", "energy_budget_j", "max_tokens", "notes"))
        if fields is None:
            continue
        spec: dict = {}
        for key, (_, v) in fields.items():
            if key == "notes":
                check.string(v, f"{name}.notes")
                continue
            if key in ("latency_budget_s", "energy_budget_j"):
                spec[key] = _cap(check, v, f"{name}.{key}", _MAXIMA[key])
                continue
            number = check.number(v, f"{name}.{key}", non_negative=key == "share", positive=key != "share",
                                  integer=key == "max_tokens", maximum=_MAXIMA.get(key, 1.0))
            if number is not None:
                spec[key] = number
        out[name] = spec
    total = sum(v.get("share", 0.0) for v in out.values())
    if all("share" in v for v in out.values()) and abs(total - 1.0) > _SHARE_TOLERANCE:
        check.error(node, f"category shares must sum to 1 (got {total:.6g})")
    return out


def _budgets(check: Checker, node) -> dict[str, dict[str, float]]:
    fields = check.mapping(node, "budgets", optional=("energy_j", "latency_s"))
    if fields is None:
        return {}
    return {k: _cap(check, v, f"budgets.{k}", _MAXIMA[k]) for k, (_, v) in fields.items()}


def _cap(check: Checker, node, what: str, maximum: float) -> dict[str, float]:
    """A budget: a number caps the worst case (``{"max": v}``); a mapping ``{max: v, mean: w}``
    caps the worst case, the mean per query, or both."""
    if isinstance(node, MappingNode):
        fields = check.mapping(node, what, optional=("max", "mean")) or {}
        values = {k: check.number(v, f"{what}.{k}", positive=True, maximum=maximum) for k, (_, v) in fields.items()}
    else:
        values = {"max": check.number(node, what, positive=True, maximum=maximum)}
    return {k: v for k, v in values.items() if v is not None}


def _default_budgets(categories: tuple[str, ...], budgets: dict[str, dict[str, float]],
                     own: dict[str, dict[str, float]]) -> Budgets:
    """The scenario's caps: each category's own, else the default of ``budgets:``."""
    def caps(kind: str, key: str, form: str) -> tuple[float | None, ...]:
        return tuple(own[kind].get(c, budgets.get(key, {}).get(form)) for c in categories)

    mean = {"energy_mean_j": caps("energy.mean", "energy_j", "mean"),
            "latency_mean_s": caps("latency.mean", "latency_s", "mean")}
    if all(v is None for values in mean.values() for v in values):
        mean = {field: () for field in mean}
    return Budgets(categories, energy_j=caps("energy", "energy_j", "max"),
                   latency_s=caps("latency", "latency_s", "max"), **mean)


def _profile_dirs(check: Checker, scenario_path: Path, entry) -> list[Path]:
    base = scenario_path.parent
    if entry is not None:
        text = check.string(entry[1], "profiles_dir")
        return [base / text] if text else []
    candidates = [base.parent / "profiles", base / "profiles", shipped_dir("profiles")]
    return list(dict.fromkeys(c.resolve() for c in candidates))


def _servers(check: Checker, node, categories, search: list[Path], scenario_path: Path, unmeasured: bool):
    items = check.sequence(node, "servers")
    if items is None:
        return [], {}, {}
    if not items:
        check.error(node, "servers must list at least one server (got none)")
    servers, profiles, endpoints, seen = [], {}, {}, {}  # type: ignore[var-annotated]
    for item in items:
        fields = check.mapping(item, "server", required=("name", "profile", "llms"),
                               optional=("transmission_s", "notes", "endpoint"))
        if fields is None:
            continue
        name = check.string(fields["name"][1], "server name") if "name" in fields else None
        if name is not None:
            _unique_name(check, fields["name"][1], name, seen, "server name")
        transmission = check.number(fields["transmission_s"][1], f"{name}.transmission_s", non_negative=True,
                                    maximum=MAX_LATENCY_S) \
            if "transmission_s" in fields else 0.0
        profile = _profile(check, fields["profile"][1], search, categories, profiles) if "profile" in fields else None
        llms = _server_llms(check, fields["llms"][1], name, profile, endpoint="endpoint" in fields,
                            unmeasured=unmeasured) if "llms" in fields else []
        if "endpoint" in fields and name:
            endpoint = parse_endpoint(check, fields["endpoint"][1], name, llms, scenario_path)
            if endpoint is not None:
                endpoints[name] = endpoint
        if name and profile and transmission is not None and llms:
            servers.append((name, profile, transmission, llms))
    hosted = dict.fromkeys(llm for server in servers for llm in server[3])
    for earlier, later in lookalikes(hosted):
        check.error(node, lookalike_message("LLM", earlier, later))
    return servers, profiles, endpoints


def _unique_name(check: Checker, node, name: str, seen: dict[str, str], what: str) -> None:
    """Report ``name`` when an earlier one in ``seen`` (look-alike key -> name) spells it, or looks like it."""
    key = lookalike_key(name)
    if key not in seen:
        seen[key] = name
    elif seen[key] == name:
        check.error(node, f"duplicate {what} {name!r}")
    else:
        check.error(node, lookalike_message(what, seen[key], name))


def _profile(check: Checker, node, search: list[Path], categories, cache) -> DeviceProfile | None:
    ref = check.string(node, "server profile")
    if ref is None:
        return None
    if ref in cache:
        return cache[ref]
    path = _find_profile(ref, search)
    if path is None:
        known = sorted({p.stem for d in search if exists_as(d, "dir") for p in d.glob("*.yaml")})
        check.error(node, f"unknown profile {ref!r}{did_you_mean(ref, known)} (looked in: "
                          f"{', '.join(str(d) for d in search)})")
        return None
    try:
        profile = load_profile(path)
    except InputError as err:
        check.diagnostics.extend(err.diagnostics)  # type: ignore[arg-type]
        return None
    missing = [c for c in categories if c not in profile.categories]
    if missing:
        check.error(node, f"profile {ref!r} has no category {missing[0]!r} (it has: {', '.join(profile.categories)})")
        return None
    cache[ref] = profile
    return profile


def _find_profile(ref: str, search: list[Path]) -> Path | None:
    for directory in search:
        candidate = directory / (ref if ref.endswith((".yaml", ".yml")) else ref + ".yaml")
        if exists_as(candidate, "file"):
            return candidate
    return None


def _server_llms(check: Checker, node, server: str | None, profile: DeviceProfile | None,
                 *, endpoint: bool, unmeasured: bool) -> list[str]:
    """The server's LLMs. One its profile does not know is refused; when the server has an
    endpoint, it is refused as not measured yet, or accepted with ``unmeasured``."""
    items = check.sequence(node, f"{server}.llms")
    if items is None:
        return []
    if not items:
        check.error(node, f"server {server!r} must host at least one LLM (got none)")
    out = []
    for item in items:
        llm = check.string(item, "llm name")
        if llm is None:
            continue
        if llm in out:
            check.error(item, f"duplicate LLM {llm!r} on server {server!r}")
        elif profile is not None and llm not in profile.llms and not endpoint:
            check.error(item, f"unknown LLM {llm!r} for profile {profile.id!r}{did_you_mean(llm, profile.llms)}")
        elif profile is not None and llm not in profile.llms and not unmeasured:
            check.error(item, f"LLM {llm!r} is not measured yet: profile {profile.id!r} has no entry for it"
                              f"{did_you_mean(llm, profile.llms)}; moe2 measure on this scenario measures it at "
                              f"its endpoint and writes its profile")
        else:
            out.append(llm)
    return out


def _outcomes(check: Checker, node, scenario_path: Path, categories) -> OutcomesSpec | None:
    fields = check.mapping(node, "outcomes", required=("format", "path"), optional=("task_map",))
    if fields is None:
        return None
    fmt = check.string(fields["format"][1], "outcomes.format") if "format" in fields else None
    if fmt is not None and fmt not in OUTCOME_FORMATS:
        check.error(fields["format"][1], f"outcomes.format must be one of {', '.join(OUTCOME_FORMATS)} (got {fmt!r})")
    rel = check.string(fields["path"][1], "outcomes.path") if "path" in fields else None
    path = scenario_path.parent / rel if rel else None
    # lm-evaluation-harness writes a folder of sample files; the other formats are one file.
    found = path is not None and (exists_as(path, "file") or (fmt == "lm-eval" and exists_as(path, "dir")))
    if path is not None and not found:
        check.error(fields["path"][1], f"outcomes file not found (got {rel!r})")
    task_map = _task_map(check, fields["task_map"][1], categories) if "task_map" in fields else {}
    if fmt is None or path is None:
        return None
    return OutcomesSpec(format=fmt, path=path, task_map=task_map)


def _task_map(check: Checker, node, categories) -> dict[str, str]:
    entries = check.mapping(node, "outcomes.task_map", free_keys=True) or {}
    out = {}
    for task, (_, value) in entries.items():
        category = check.string(value, f"task_map.{task}")
        if category is not None and category not in categories:
            check.error(value, f"task {task!r} maps to unknown category {category!r}"
                               f"{did_you_mean(category, categories)}")
        elif category is not None:
            out[task] = category
    return out


def _not_measured(llm: str, categories: tuple[str, ...]) -> LLMProfile:
    """Zeros for an LLM no profile knows yet: only measure loads it, and measure never reads them."""
    zeros = dict.fromkeys(categories, 0.0)
    return LLMProfile(name=llm, latency_s=zeros, energy_j=zeros, accuracy=zeros)


def _instance(display: str, name, categories, servers, top_k, aggregation) -> Instance:
    cats = tuple(categories)
    rows = [(server, profile.llms.get(llm) or _not_measured(llm, cats)) for server, profile, _, llms in servers
            for llm in llms]
    if len(rows) > MAX_EXPERTS:
        raise InputError(Diagnostic(display, None, None,
                                    f"a scenario may have at most {MAX_EXPERTS} experts (got {len(rows)})"))
    server_names = tuple(s[0] for s in servers)
    return Instance(
        name=name,
        expert_ids=tuple(f"{server}/{llm.name}" for server, llm in rows),
        expert_llms=tuple(llm.name for _, llm in rows),
        expert_server=np.array([server_names.index(server) for server, _ in rows], dtype=np.int64),
        server_names=server_names,
        transmission_s=np.array([s[2] for s in servers], dtype=float),
        categories=cats,
        shares=np.array([categories[c]["share"] for c in cats], dtype=float),
        latency_s=np.array([[llm.latency_s[c] for c in cats] for _, llm in rows], dtype=float),
        energy_j=np.array([[llm.energy_j[c] for c in cats] for _, llm in rows], dtype=float),
        accuracy=np.array([[llm.accuracy[c] for c in cats] for _, llm in rows], dtype=float),
        top_k=int(top_k),
        aggregation_s=float(aggregation),
    )
