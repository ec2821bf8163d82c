"""YAML reading speed: the safe input layer against the pure-Python way it replaced.

For each shipped profile and scenario, and for a large synthetic profile (many LLMs), time
``moe2_cli.yamlio.read_yaml`` (one pass of libyaml events into located nodes) and the former
reading (a pure-Python event scan for aliases and depth, then ``yaml.compose`` with the
pure-Python safe loader: two pure-Python parses). Best of several repetitions.

    python benchmarks/yaml_load.py [--repeat 5] [--llms 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from moe2_cli.yamlio import read_yaml

ROOT = Path(__file__).resolve().parent.parent


def pure_python(path: Path) -> yaml.Node:
    text = path.read_text(encoding="utf-8")
    for _ in yaml.parse(text, Loader=yaml.SafeLoader):
        pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def best(fn, path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - start)
    return min(times)


def big_profile(directory: Path, llms: int) -> Path:
    body = "".join(f"  llm-{i}:\n    latency_s: {{mcq: 1.5e-1, math: 2.25, source: bench}}\n"
                   f"    energy_j: {{mcq: 30, math: 120, source: bench}}\n    accuracy: 0.7\n    source: bench\n"
                   for i in range(llms))
    path = directory / "big-profile.yaml"
    path.write_text("schema_version: 1\ndevice: {id: big, name: Big, source: bench}\n"
                    "categories:\n  mcq: {prompt_tokens: 300, output_tokens: 10}\n"
                    "  math: {prompt_tokens: 100, output_tokens: 300}\nllms:\n" + body)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--llms", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted((ROOT / "profiles").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
        files.append(big_profile(Path(tmp), args.llms))
        print(f"{'file':34s} {'bytes':>9s} {'read_yaml ms':>13s} {'pure Python ms':>15s} {'speed-up':>9s}")
        for path in files:
            new, old = best(read_yaml, path, args.repeat), best(pure_python, path, args.repeat)
            print(f"{path.name:34s} {path.stat().st_size:9d} {1e3 * new:13.2f} {1e3 * old:15.2f} {old / new:8.1f}x")


if __name__ == "__main__":
    main()
