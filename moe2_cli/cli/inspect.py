"""`moe2 show` and `moe2 validate`: look at a scenario, check any file moe2 reads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.cli.common import error_lines, handles_errors, plural
from moe2_cli.cli.options import FormatOpt, OutputFormat, ScenarioArg, complete_scenario
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_BAD_INPUT, InputError
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.validation import FileKind, check_file, kind_of


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


def _validate_one(path: Path, kind: FileKind | None, scenario: Scenario | None) -> dict:
    """The record of one file: its kind, form and what it holds; its problems on stderr."""
    record = {"path": str(path), "kind": kind.value if kind else "?", "form": None, "ok": False, "summary": None}
    try:
        kind = kind or kind_of(path)
        record["kind"] = kind.value
        checked = check_file(path, kind, scenario)
    except InputError as err:
        for line in error_lines(err):
            print(line, file=sys.stderr)
        return {**record, "summary": plural(len(err.diagnostics), "problem")}
    return {**record, "form": checked.form, "ok": True, "summary": checked.summary}


@handles_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Files to check: scenarios, profiles, outcomes, prompt sets, "
                                                     "saved selections, query files, mixes, stats parameter and "
                                                     "sample files, request logs.", show_default=False)],
    kind: Annotated[FileKind | None, typer.Option(
        "--kind", metavar="KIND", help="Check every file as this kind instead of telling each one's kind by its name "
                                       f"and content: {', '.join(k.value for k in FileKind)}.",
        show_default=False)] = None,
    scenario: Annotated[Path | None, typer.Option(
        "--scenario", help="Scenario (a file or a shipped name) that selections, query files and mixes are checked "
                           "against (default: selections on their own, the others against the shipped default).",
        show_default=False, autocompletion=complete_scenario)] = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Check any file moe2 reads with the reader of the command that takes it: exit 0 if all are
    valid, else 2 with path:line:col lines on stderr.

    Example: moe2 validate profiles/*.yaml examples/*.yaml measured/outcomes.jsonl select.json
    """
    against = load_scenario(scenario) if scenario is not None else None
    results = [_validate_one(path, kind, against) for path in files]
    if format is OutputFormat.csv:
        rows, columns = results, [Column(k, k) for k in ("path", "kind", "form", "ok", "summary")]
    else:  # a table reads "outcomes (JSON lines)" in one column
        rows = [{**r, "kind": r["kind"] + (f" ({r['form']})" if r["form"] else "")} for r in results]
        columns = [Column("path", "file", justify="left"), Column("kind", "kind", justify="left"),
                   Column("ok", "valid"), Column("summary", "summary", justify="left")]
    emit(format.value, payload=results, rows=rows, columns=columns)
    if not all(r["ok"] for r in results):
        raise typer.Exit(EXIT_BAD_INPUT)
