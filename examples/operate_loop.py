"""The operation loop on one machine, end to end: measure, select, serve with a request log and
shadow traffic, score what was served, check for drift, re-plan and reload the plan live.

Four fake experts on two loopback servers answer the shipped prompt set's multiple-choice and
maths questions, each right at its own rate per category (a fixed set of questions, so the same
question gets the same answer every time). Midway the expert that answers the multiple-choice
questions loses that skill: from then on it answers them wrong. The loop must notice and recover:

1. ``moe2 measure`` the four experts and ``moe2 select`` a plan from what it measured;
2. ``moe2 serve`` the plan with ``--log`` and ``--shadow-rate 0.2``, and send every question;
3. ``moe2 score`` the log and ``moe2 gating eval --fail-on-drift``: exit 0, no drift;
4. break the expert, send every question again, score the new part of the log: exit 1, drift;
5. ``moe2 select --outcomes`` the new scores: a different selection;
6. write it over the plan file while clients keep sending at least 20 requests a second:
   ``serve`` reloads it, no request fails, and later requests go to the new selection.

    python examples/operate_loop.py [--work DIR] [--rate 25]

Each step prints one line; the exit status is 0 when every check held, 1 naming the first that
did not. Run it from a checkout (it uses the test suite's fake experts).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeModel, FakeOpenAI  # noqa: E402

PROMPTS = ROOT / "examples" / "data" / "llmrouter-prompts.jsonl.gz"
CATEGORIES = ("mcq", "math")
# Each expert's chance of a right answer per category, and its delay (s). The fleet is
# examples/serve-local.yaml's, on its measured profiles. The two orin experts are slow, and the
# 1 s latency budget (a server runs S's experts one after another) never lets both into S.
# The plan takes the first for multiple choice; once it breaks, it must take the second.
SKILLS = {"orin": {"qwen2.5-1.5b-instruct": ({"mcq": 0.9, "math": 0.2}, 0.6),
                   "phi-3.5-mini-instruct": ({"mcq": 0.7, "math": 0.6}, 0.6)},
          "rtx": {"qwen2.5-3b-instruct": ({"mcq": 0.5, "math": 0.85}, 0.01),
                  "qwen2.5-7b-instruct": ({"mcq": 0.3, "math": 0.3}, 0.001)}}
BROKEN = ("qwen2.5-1.5b-instruct", "mcq")
LATENCY_BUDGET_S = 1.0


class Failed(Exception):
    """A check of the loop did not hold."""


def questions() -> list[dict]:
    rows = [json.loads(line) for line in gzip.open(PROMPTS, "rt", encoding="utf-8")]
    return [r for r in rows if r["category"] in CATEGORIES]


@dataclass
class Quiz:
    """An expert's answers: right for a fixed share of each category's questions."""

    name: str
    skill: dict[str, float]
    answers: dict[str, dict] = field(default_factory=dict)  # prompt text -> question

    def __call__(self, prompt: str) -> str:
        question = self.answers.get(prompt)
        if question is None:
            return "I do not know."
        reference, category = question["reference"], question["category"]
        draw = int(hashlib.sha256(f"{self.name}\n{prompt}".encode()).hexdigest()[:8], 16) / 16 ** 8
        if draw < self.skill[category]:
            return reference if category == "mcq" else f"\\boxed{{{reference}}}"
        return ("B" if reference == "A" else "A") if category == "mcq" else f"\\boxed{{{reference}7}}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moe2(*args: str, expect: int = 0, out: Path | None = None) -> str:
    """Run one moe2 command; its stdout (also written to ``out``)."""
    done = subprocess.run([sys.executable, "-m", "moe2_cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    if done.returncode != expect:
        raise Failed(f"moe2 {' '.join(args)} exited {done.returncode}, expected {expect}: {done.stderr.strip()}")
    if out is not None:
        out.write_text(done.stdout, encoding="utf-8")
    return done.stdout


def write_scenario(work: Path, urls: dict[str, str]) -> Path:
    """examples/serve-local.yaml with the fake experts' URLs and the loop's budgets."""
    text = (ROOT / "examples" / "serve-local.yaml").read_text(encoding="utf-8")
    text = text.replace("http://127.0.0.1:8081", urls["orin"]).replace("http://127.0.0.1:8082", urls["rtx"])
    text = text.replace("latency_s: 3.0", f"latency_s: {LATENCY_BUDGET_S}")
    path = work / "fleet.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def selection(path: Path) -> list[str]:
    return json.loads(path.read_text(encoding="utf-8"))["selection"]


@dataclass
class Served:
    """A running ``moe2 serve``."""

    process: subprocess.Popen
    url: str

    def ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Failed(f"moe2 serve exited {self.process.returncode} before it was ready")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise Failed("moe2 serve was not ready in time")

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def ask(client: httpx.Client, url: str, question: dict) -> httpx.Response:
    return client.post(url + "/v1/chat/completions", headers={"X-Moe2-Category": question["category"]},
                       json={"model": "local-pair", "messages": [{"role": "user", "content": question["prompt"]}]},
                       timeout=30)


def send_all(url: str, asked: list[dict], workers: int = 4) -> None:
    """Every question once, ``workers`` at a time; every answer must be a 200."""
    failures: list[str] = []
    chunks = [asked[i::workers] for i in range(workers)]

    def run(chunk: list[dict]) -> None:
        with httpx.Client() as client:
            for question in chunk:
                reply = ask(client, url, question)
                if reply.status_code != 200:
                    failures.append(f"{question['id']}: {reply.status_code}")

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise Failed(f"{len(failures)} requests failed, first: {failures[0]}")


def log_part(log_dir: Path, out: Path, keep: Callable[[dict], bool]) -> Path:
    """The request log's lines that ``keep`` accepts, as a log file of their own."""
    lines = [line for line in (log_dir / "requests.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip() and keep(json.loads(line))]
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out


@dataclass
class Load:
    """Clients that keep sending until stopped; every reply's status and expert, per second."""

    url: str
    asked: list[dict]
    rate: float
    replies: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, worker: int, workers: int, start: float) -> None:
        """Worker ``worker`` of ``workers`` sends at ``start`` + (worker + i x workers) / rate: the
        workers together send ``rate`` requests a second, evenly spaced."""
        with httpx.Client() as client:
            i = worker
            while not self.stop.wait(max(0.0, start + i / self.rate - time.monotonic())):
                began = time.monotonic()
                question = self.asked[i % len(self.asked)]
                try:
                    reply = ask(client, self.url, question)
                    self.replies.append((began, reply.status_code, reply.headers.get("x-moe2-experts", "")))
                except httpx.HTTPError as err:
                    self.replies.append((began, 0, type(err).__name__))
                i += workers


def reload_under_load(served: Served, plan: Path, new_plan: Path, rate: float, asked: list[dict]) -> dict:
    """Write ``new_plan`` over ``plan`` while clients send ``rate`` requests a second; the
    replies before, during and after the reload."""
    before_hash = plan_hash(served.metrics())
    load = Load(served.url, asked, rate)
    workers = 40  # the slow experts answer in 0.6 s: enough clients that the rate never waits on them
    started = time.monotonic() + 1.0  # the schedule begins once every client is up
    threads = [threading.Thread(target=load.run, args=(w, workers, started)) for w in range(workers)]
    for t in threads:
        t.start()
    time.sleep(4)
    swapped = time.monotonic()
    staged = plan.with_suffix(".new")
    staged.write_text(new_plan.read_text(encoding="utf-8"), encoding="utf-8")
    staged.replace(plan)
    deadline = time.monotonic() + 60
    while plan_hash(served.metrics()) == before_hash:
        if time.monotonic() > deadline:
            load.stop.set()
            raise Failed("serve did not reload the new plan within 60 s")
        time.sleep(0.2)
    reloaded = time.monotonic()
    time.sleep(3)
    # The rate is counted up to here: after the stop no client starts a request, and joining
    # the workers waits only for replies already on their way.
    stopped = time.monotonic()
    load.stop.set()
    for t in threads:
        t.join()
    return {"replies": load.replies, "started": started, "swapped": swapped, "reloaded": reloaded, "stopped": stopped}


def plan_hash(metrics: str) -> str | None:
    for line in metrics.splitlines():
        if line.startswith("moe2_plan_info{"):
            return line.split('hash="', 1)[1].split('"', 1)[0]
    return None


def check_reload(run: dict, rate: float, new_experts: set[str]) -> str:
    replies = run["replies"]
    failed = [r for r in replies if r[1] != 200]
    if failed:
        raise Failed(f"{len(failed)} of {len(replies)} requests failed during the reload, first: {failed[0]}")
    seconds = int(run["stopped"] - run["started"])  # whole seconds of sending only
    per_second = [sum(1 for r in replies if run["started"] + s <= r[0] < run["started"] + s + 1)
                  for s in range(seconds)]
    if min(per_second) < 20:
        raise Failed(f"the load fell to {min(per_second)} requests/s (at least 20 wanted): {per_second}")
    late = [r for r in replies if r[0] > run["reloaded"] + 0.5]
    stray = [r for r in late if not set(r[2].split(",")) <= new_experts]
    if not late or stray:
        raise Failed(f"{len(stray)} of {len(late)} requests after the reload went outside the new selection")
    return (f"{len(replies)} requests, 0 failed, {min(per_second)}-{max(per_second)} requests/s; "
            f"the reload took {run['reloaded'] - run['swapped']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="folder for every file of the loop (default: a temporary one)")
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second during the reload")
    args = parser.parse_args(argv)
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="moe2-loop-") as tmp:
            return loop(Path(tmp), args.rate)
    args.work.mkdir(parents=True, exist_ok=True)
    return loop(args.work, args.rate)


def loop(work: Path, rate: float) -> int:
    asked = questions()
    quizzes = {llm: Quiz(llm, dict(skill), {q["prompt"]: q for q in asked})
               for models in SKILLS.values() for llm, (skill, _) in models.items()}
    servers = {server: FakeOpenAI({llm: FakeModel(answer=quizzes[llm], delay_s=delay)
                                   for llm, (_, delay) in models.items()}) for server, models in SKILLS.items()}
    served: Served | None = None
    try:
        for fake in servers.values():
            fake.__enter__()
        scenario = write_scenario(work, {name: fake.url for name, fake in servers.items()})
        prompts = work / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(q) + "\n" for q in asked), encoding="utf-8")

        moe2("measure", str(scenario), "--out", str(work / "measured"), "--prompts", str(prompts),
             "--concurrency", "4", "-f", "json")
        measured, plan, first = work / "measured" / "scenario.yaml", work / "plan.json", work / "first-plan.json"
        moe2("select", str(measured), "-f", "json", out=first)
        plan.write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"1. measured 4 experts on {len(asked)} questions; the plan selects {selection(first)}", flush=True)

        port, log = free_port(), work / "log"
        process = subprocess.Popen(
            [sys.executable, "-m", "moe2_cli", "serve", str(measured), "--selection", str(plan), "--port", str(port),
             "--log", str(log), "--log-text", "--shadow-rate", "0.2", "--max-inflight", "64", "--max-queue", "64"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=open(work / "serve.err", "w"))  # noqa: SIM115 - held for the server's life
        served = Served(process, f"http://127.0.0.1:{port}")
        served.ready()
        send_all(served.url, asked)
        switch = time.time()
        print(f"2. served {len(asked)} questions with a request log and shadow traffic", flush=True)

        before = log_part(log, work / "before.jsonl", lambda line: line["unix"] < switch)
        moe2("score", str(before), "--out", str(work / "before-outcomes.jsonl"))
        moe2("gating", "eval", str(measured), "--outcomes", str(work / "before-outcomes.jsonl"), "--selection",
             str(plan), "--fail-on-drift")
        print("3. scored the log; gating eval --fail-on-drift: exit 0 (no drift)", flush=True)

        llm, category = BROKEN
        quizzes[llm].skill[category] = 0.0
        send_all(served.url, asked)
        after = log_part(log, work / "after.jsonl", lambda line: line["unix"] >= switch)
        moe2("score", str(after), "--out", str(work / "after-outcomes.jsonl"))
        moe2("gating", "eval", str(measured), "--outcomes", str(work / "after-outcomes.jsonl"), "--selection",
             str(plan), "--fail-on-drift", expect=1)
        print(f"4. {llm} broke on {category}; gating eval --fail-on-drift: exit 1 (drift)", flush=True)

        second = work / "second-plan.json"
        moe2("select", str(measured), "--outcomes", str(work / "after-outcomes.jsonl"), "-f", "json", out=second)
        if selection(second) == selection(first):
            raise Failed(f"re-planning kept the same selection {selection(first)}")
        print(f"5. re-planned on the new scores: {selection(second)}", flush=True)

        run = reload_under_load(served, plan, second, rate, asked)
        print(f"6. reloaded under load: {check_reload(run, rate, set(selection(second)))}", flush=True)
        code, served = served.stop(), None
        if code != 0:
            raise Failed(f"moe2 serve exited {code} after SIGTERM")
    except Failed as failure:
        print(f"failed: {failure}", file=sys.stderr)
        return 1
    finally:
        if served is not None:
            served.process.kill()
            served.process.wait()
        for fake in servers.values():
            if fake.url:
                fake.__exit__(None, None, None)
    print("the loop held: drift found, re-planned and reloaded without a failed request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
