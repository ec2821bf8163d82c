"""`moe2 show` and `moe2 validate`: look at a scenario, check files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from yaml.nodes import MappingNode, ScalarNode

from moe2_cli.cli.common import error_lines, handles_errors, plural
from moe2_cli.cli.options import FormatOpt, OutputFormat, ScenarioArg
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_BAD_INPUT, Diagnostic, InputError
from moe2_cli.scenario.profiles import load_profile
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.yamlio import read_yaml


def scenario_payload(scenario: Scenario) -> dict:
    inst = scenario.instance
    device_of = dict(zip(inst.server_names, scenario.server_devices))
    experts = []
    for i, expert in enumerate(inst.expert_ids):
        server = inst.server_names[inst.expert_server[i]]
        experts.append({
            "id": expert, "server": server, "device": device_of[server], "llm": inst.expert_llms[i],
            "latency_s": dict(zip(inst.categories, inst.latency_s[i].tolist())),
            "energy_j": dict(zip(inst.categories, inst.energy_j[i].tolist())),
            "accuracy": dict(zip(inst.categories, inst.accuracy[i].tolist())),
        })
    return {
        "scenario": scenario.name,
        "top_k": inst.top_k,
        "aggregation_s": inst.aggregation_s,
        "categories": [{"name": c, "share": float(s)} for c, s in zip(inst.categories, inst.shares)],
        "servers": [{"name": n, "device": device_of[n], "transmission_s": float(t)}
                    for n, t in zip(inst.server_names, inst.transmission_s)],
        "budgets": scenario.budgets.as_dict(),
        "experts": experts,
    }


@handles_errors
def show(scenario: ScenarioArg = None, format: FormatOpt = OutputFormat.table) -> None:
    """Show a scenario's experts with their latency, energy and accuracy per category.

    Example: moe2 show examples/large.yaml --format json
    """
    loaded = load_scenario(scenario)
    payload = scenario_payload(loaded)
    categories = [c["name"] for c in payload["categories"]]
    if format is OutputFormat.csv:
        rows = [{"expert": e["id"], "server": e["server"], "device": e["device"], "llm": e["llm"], "category": c,
                 "latency_s": e["latency_s"][c], "energy_j": e["energy_j"][c], "accuracy": e["accuracy"][c]}
                for e in payload["experts"] for c in categories]
        columns = [Column(k, k) for k in ("expert", "server", "device", "llm", "category", "latency_s", "energy_j",
                                          "accuracy")]
    else:
        rows = [{"expert": e["id"], **{c: _cell(e, c) for c in categories}} for e in payload["experts"]]
        columns = [Column("expert", "expert", justify="left", no_wrap=True)] + [
            Column(c, f"{c} {share:.0%}\ns  J  acc%", no_wrap=True)
            for c, share in zip(categories, loaded.instance.shares)]
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{loaded.name}: {plural(loaded.instance.n_experts, 'expert')}, top-{loaded.instance.top_k} "
               f"(latency s, energy J, accuracy per category)")


def _cell(expert: dict, category: str) -> str:
    """``0.76s 23J 53%``: one expert's latency, energy and accuracy in one category."""
    return (f"{expert['latency_s'][category]:.2f}s {expert['energy_j'][category]:.0f}J "
            f"{100 * expert['accuracy'][category]:.0f}%")


def _validate_one(path: Path) -> dict:
    root = read_yaml(path)
    # Only plain keys name a kind; a sequence or mapping used as a key is the loader's to report.
    keys = {k.value for k, _ in root.value if isinstance(k, ScalarNode)} if isinstance(root, MappingNode) else set()
    if keys & {"servers", "top_k", "budgets"}:
        scenario = load_scenario(path, root)
        return {"path": str(path), "kind": "scenario", "ok": True,
                "summary": f"{plural(scenario.instance.n_experts, 'expert')} on "
                           f"{plural(len(scenario.instance.server_names), 'server')}"}
    if keys & {"llms", "device"}:
        profile = load_profile(path, root=root)
        return {"path": str(path), "kind": "profile", "ok": True,
                "summary": f"{profile.id}: {plural(len(profile.llms), 'LLM')}, "
                           f"{plural(len(profile.categories), 'category', 'categories')}"}
    mark = root.start_mark
    raise InputError(Diagnostic(str(path), mark.line + 1, mark.column + 1,
                                "not a moe2 profile or scenario (expected an 'llms' or 'servers' key)"))


@handles_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Profile and scenario YAML files to check.")],
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Check profiles and scenarios: exit 0 if all are valid, else 2 with path:line:col lines on stderr.

    Example: moe2 validate profiles/*.yaml examples/*.yaml
    """
    results, bad = [], False
    for path in files:
        try:
            results.append(_validate_one(path))
        except InputError as err:
            bad = True
            for line in error_lines(err):
                print(line, file=sys.stderr)
            results.append({"path": str(path), "kind": "?", "ok": False,
                            "summary": f"{len(err.diagnostics)} problem(s)"})
    columns = [Column("path", "file", justify="left"), Column("kind", "kind", justify="left"),
               Column("ok", "valid"), Column("summary", "summary", justify="left")]
    emit(format.value, payload=results, rows=results, columns=columns)
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)
