"""Wide fleets for tests and benchmarks: N experts on servers alternating Jetson AGX Orin and
RTX 4090 (the shipped profiles), three LLMs each, the profiles' 11 LLMs taken in turn, under the
default scenario's budgets and categories."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

LLMS = ("qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "mistral-7b-instruct-v0.3", "gemma-2-9b-it",
        "codegemma-7b", "llama3-chatqa-1.5-8b", "qwen2.5-3b-instruct", "phi-3.5-mini-instruct",
        "gemma-2-2b-it", "qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct")
PROFILES = ("jetson-agx-orin-64gb", "rtx-4090")
PER_SERVER = 3


def fleet_yaml(n_experts: int) -> str:
    """A scenario of ``n_experts`` experts; the last server holds what is left over."""
    default = (ROOT / "examples" / "default.yaml").read_text()
    head = default[:default.index("servers:")].replace("name: edge-testbed", f"name: fleet-{n_experts}")
    servers, placed = [], 0
    while placed < n_experts:
        s, count = len(servers), min(PER_SERVER, n_experts - placed)
        llms = ", ".join(LLMS[(placed + j) % len(LLMS)] for j in range(count))
        servers.append(f"  - name: s{s}\n    profile: {PROFILES[s % 2]}\n    transmission_s: 0.02\n"
                       f"    llms: [{llms}]\n")
        placed += count
    return head + "servers:\n" + "".join(servers)


def write_fleet(directory: Path, n_experts: int) -> Path:
    path = directory / f"fleet-{n_experts}.yaml"
    path.write_text(fleet_yaml(n_experts))
    return path
