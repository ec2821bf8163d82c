"""What a measurement leaves in DIR: ``profiles/<server>.yaml``, ``outcomes.jsonl`` and
``scenario.yaml``, each written whole to a temporary file and renamed into place
(:mod:`moe2_cli.fileio`), so an interruption never leaves half a file. The scenario is written
last: it points at the others. Every YAML file is put through the checks of ``moe2 validate``
before it is renamed into place, so measure never leaves a file that moe2 refuses to read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from yaml.nodes import Node

from moe2_cli import __version__
from moe2_cli.errors import EXIT_UNMET, InputError, Moe2Error
from moe2_cli.fileio import write_atomic
from moe2_cli.measure.prompts import Prompt
from moe2_cli.measure.runlog import RequestRecord
from moe2_cli.measure.summary import ExpertSummary
from moe2_cli.outcomes import Outcomes, write_outcomes
from moe2_cli.scenario.profiles import SCHEMA_VERSION, load_profile
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.yamlio import parse_yaml

PROFILES_DIR = "profiles"
OUTCOMES_NAME = "outcomes.jsonl"
SCENARIO_NAME = "scenario.yaml"
_PROFILE_HEADER = "# Written by moe2 measure; the numbers are measured (see each source).\n"


class RefusedOutput(Moe2Error):
    """A file measure was about to write fails the checks of ``moe2 validate``; it was not written."""

    exit_code = EXIT_UNMET


class _NoAliases(yaml.SafeDumper):
    """moe2 refuses YAML aliases on reading, so never write one."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(data: dict[str, Any], header: str) -> bytes:
    body = yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120,
                     default_flow_style=False)
    return (header + body).encode("utf-8")


def profile_problem(document: dict[str, Any], display: str) -> str | None:
    """The first line ``moe2 validate`` would print for this profile, or None when it passes."""
    try:
        _load_profile(display, parse_yaml(_yaml(document, "").decode("utf-8"), display))
    except InputError as err:
        return err.lines()[0]
    return None


def _load_profile(display: str, root: Node) -> object:
    return load_profile(display, display, root)


def _checked_write(path: Path, data: bytes, check: Callable[[str, Node], object]) -> None:
    """Write ``data`` to ``path`` only if ``check`` (a loader ``moe2 validate`` runs) accepts it."""
    try:
        check(str(path), parse_yaml(data.decode("utf-8"), str(path)))
    except InputError as err:
        raise RefusedOutput(f"{path} was not written: it fails moe2 validate ({err.lines()[0]})") from None
    write_atomic(path, data)


def _sig(x: float | None) -> float:
    assert x is not None, "kept experts have latency and energy in every category"
    return float(f"{x:.6g}")


# ------------------------------------------------------------------ profiles


def profile_document(server: str, device_name: str, url: str, power_method: str, idle: str,
                     experts: Sequence[ExpertSummary], records: dict[str, list[RequestRecord]],
                     categories: Sequence[str], quantile: float) -> dict[str, Any]:
    """One server's measured profile, in moe2's profile schema."""
    return {
        "schema_version": SCHEMA_VERSION,
        "device": {"id": server, "name": f"{device_name} (server {server}, measured)",
                   "source": f"moe2 measure against {url}", "notes": f"power: {power_method}; {idle}"},
        "categories": _category_shapes(experts, categories),
        "llms": {e.llm: _llm_entry(e, records[e.llm], power_method, categories, quantile) for e in experts},
    }


def _category_shapes(experts: Sequence[ExpertSummary], categories: Sequence[str]) -> dict[str, Any]:
    shapes = {}
    for c in categories:
        prompt = [t for e in experts if (t := e.categories[c].prompt_tokens) is not None]
        output = [t for e in experts if (t := e.categories[c].completion_tokens) is not None]
        shapes[c] = {"prompt_tokens": round(float(np.mean(prompt))) if prompt else 0,
                     "output_tokens": max(1, round(float(np.mean(output)))) if output else 1,
                     "notes": "mean usage reported by the server over the measured LLMs" if output and prompt
                     else "the server reported no token usage; placeholder lengths"}
    return shapes


def _llm_entry(expert: ExpertSummary, records: list[RequestRecord], power_method: str,
               categories: Sequence[str], quantile: float) -> dict[str, Any]:
    day = datetime.fromtimestamp(max(r.started_at for r in records), tz=timezone.utc).date().isoformat()
    scorers = "per-prompt scorers of the prompt set"
    stats = expert.categories
    return {
        "source": f"measured {day} by moe2 {__version__} (moe2 measure): {len(records)} prompts, "
                  f"{expert.empty} empty answers, served model {expert.model!r}, power {power_method}",
        "latency_s": {**{c: _sig(stats[c].latency_s) for c in categories},
                      "derived": f"quantile {quantile:g} of the total latency of the successful requests"},
        "energy_j": {**{c: _sig(stats[c].energy_j) for c in categories},
                     "derived": f"mean energy per successful request ({power_method})"},
        "accuracy": {**{c: round(stats[c].accuracy, 6) for c in categories},
                     "metric": f"mean score over the prompts ({scorers}); a failed request scores 0"},
    }


# ------------------------------------------------------------------ outcomes


def outcomes_table(prompts: Sequence[Prompt], kept: Sequence[ExpertSummary],
                   scores: dict[tuple[str, str, str], float], categories: Sequence[str]) -> Outcomes:
    """Per prompt, each kept LLM's score: the mean over the servers that host it."""
    llms = list(dict.fromkeys(e.llm for e in kept))
    hosts = {llm: [e.server for e in kept if e.llm == llm] for llm in llms}
    table = [[float(np.mean([scores[(s, llm, p.id)] for s in hosts[llm]])) for llm in llms] for p in prompts]
    return Outcomes(qids=tuple(p.id for p in prompts), categories=tuple(categories),
                    category=np.array([categories.index(p.category) for p in prompts], dtype=np.int64),
                    columns=tuple(llms), scores=np.array(table, dtype=float).reshape(len(prompts), len(llms)),
                    texts=tuple(p.text for p in prompts), source=OUTCOMES_NAME)


# ------------------------------------------------------------------ scenario


def scenario_document(scenario: Scenario, kept: Sequence[ExpertSummary], out_dir: Path,
                      max_tokens: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The input scenario with its servers on the measured profiles and its outcomes measured,
    and each category's ``max_tokens`` the one measured with (so serve caps answers alike)."""
    assert scenario.path is not None
    raw = yaml.safe_load(scenario.path.read_text(encoding="utf-8"))  # validated, alias-free already
    hosted = {(e.server, e.llm) for e in kept}
    servers = []
    for server in raw["servers"]:
        llms = [llm for llm in server["llms"] if (server["name"], llm) in hosted]
        if not llms:
            continue
        server = {**server, "profile": server["name"], "llms": llms}
        if "endpoint" in server:
            server["endpoint"] = _endpoint_from(server["endpoint"], llms, scenario.path.parent, out_dir)
        servers.append(server)
    raw.pop("outcomes", None)
    raw.pop("profiles_dir", None)
    for category, cap in (max_tokens or {}).items():
        raw["categories"][category] = {**raw["categories"][category], "max_tokens": cap}
    return {**raw, "profiles_dir": PROFILES_DIR, "servers": servers,
            "outcomes": {"format": "jsonl", "path": OUTCOMES_NAME}}


def _endpoint_from(block: dict[str, Any], llms: list[str], scenario_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The endpoint block as given, with a power log's path made relative to the new scenario and
    its served model ids only for the LLMs the server still hosts there."""
    if isinstance(block.get("models"), dict):
        block = {**block, "models": {llm: model for llm, model in block["models"].items() if llm in llms}}
    power = block.get("power")
    if isinstance(power, str) and power.startswith("file:"):
        log = (scenario_dir / power[len("file:"):]).resolve()
        block = {**block, "power": "file:" + os.path.relpath(log, out_dir.resolve())}
    return block


def write_all(out_dir: Path, profiles: dict[str, dict[str, Any]], table: Outcomes, scenario: dict[str, Any],
              source_name: str) -> list[Path]:
    """Write every file, the scenario last; return their paths."""
    (out_dir / PROFILES_DIR).mkdir(parents=True, exist_ok=True)
    written = []
    for server, document in profiles.items():
        path = out_dir / PROFILES_DIR / f"{server}.yaml"
        _checked_write(path, _yaml(document, _PROFILE_HEADER), _load_profile)
        written.append(path)
    write_outcomes(table, out_dir / OUTCOMES_NAME)
    written.append(out_dir / OUTCOMES_NAME)
    header = (f"# Written by moe2 measure from {source_name}: servers use the measured profiles in "
              f"{PROFILES_DIR}/ and the outcomes in {OUTCOMES_NAME}.\n")
    _checked_write(out_dir / SCENARIO_NAME, _yaml(scenario, header), load_scenario)
    written.append(out_dir / SCENARIO_NAME)
    return written
