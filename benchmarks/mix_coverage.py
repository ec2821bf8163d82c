"""Does the plan's interval, reweighted with --mix, cover F on traffic with another task mix?

On the shipped LLMRouter outcomes (examples/llmrouter-edge.yaml), each re-split cuts the
distinct questions at random into a training part (70 %) and a test part, then gives the test
part another task mix: ``--drop`` tasks are removed (never a category's last task, so every
category keeps queries) and one more task is cut to a third. moe2 then

- plans on the training part with ``--mix`` = the test file (its queries' shares, as F weighs
  them), exactly as ``moe2 select SCENARIO --mix TEST`` does, and, for contrast, without a mix;
- scores each plan's selection on the test part with the gate trained on every training query,
  as ``moe2 gating eval --selection`` does (the test F).

Coverage = how often the plan's 95 % interval holds the test F of its own selection, and how
often the prediction interval of ``gating eval``'s drift check does: the plan's interval widened
by the test F's own bootstrap error (the test part is a finite sample of its mix).

    python benchmarks/mix_coverage.py --splits 50

Everything is seeded by the split number. Each split's result goes to stderr as it finishes,
the summary to stdout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from moe2_cli import api
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE as CONFIDENCE
from moe2_cli.gating.confidence import Bootstrap, Interval
from moe2_cli.gating.crossfit import gate_logits
from moe2_cli.gating.drift import prediction
from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.gating.pipeline import expert_columns, read_with_task_map, scenario_outcomes, train_deployed
from moe2_cli.outcomes import LLMROUTER_TASK_MAP
from moe2_cli.problem import mask_of
from moe2_cli.scenario.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "examples" / "llmrouter-edge.yaml"
DATA = ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz"
TRAIN_FRACTION = 0.7


def resplit(rows: list[dict], seed: int, drop: int) -> tuple[list[dict], list[dict], dict]:
    """Training and test rows (no question in both) with another task mix on test."""
    rng = np.random.default_rng(seed)
    questions = sorted({r["question"] for r in rows})
    train_q = set(rng.permutation(questions)[:round(TRAIN_FRACTION * len(questions))].tolist())
    train = [r for r in rows if r["question"] in train_q]
    test = [r for r in rows if r["question"] not in train_q]
    tasks = sorted({r["task"] for r in test})
    dropped: list[str] = []
    for task in rng.permutation(tasks).tolist():
        category = LLMROUTER_TASK_MAP[task]
        left = [t for t in tasks if LLMROUTER_TASK_MAP[t] == category and t not in dropped and t != task]
        if len(dropped) < drop and left:
            dropped.append(task)
    kept = [t for t in tasks if t not in dropped]
    thinned = str(rng.choice(kept))
    test = [r for r in test if r["task"] not in dropped and (r["task"] != thinned or rng.random() < 1 / 3)]
    return train, test, {"dropped": sorted(dropped), "thinned": thinned}


def write_split(root: Path, train: list[dict], test: list[dict]) -> tuple[Path, Path]:
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    text = SCENARIO.read_text(encoding="utf-8").replace("data/llmrouter-outcomes.jsonl.gz", "train.jsonl")
    (root / "scenario.yaml").write_text(text, encoding="utf-8")
    return root / "scenario.yaml", root / "test.jsonl"


def test_f(scenario_path: Path, test_path: Path, selections: list[list[str]]) -> list[Interval]:
    """F of each selection on the test queries, by the gate trained on every training query,
    with its bootstrap interval over those queries."""
    scenario = load_scenario(scenario_path)
    instance = scenario.instance
    training = scenario_outcomes(scenario, instance=instance)
    test = read_with_task_map(scenario, test_path).for_instance(instance, per="llm")
    gate = train_deployed(training, instance.top_k)
    objective = GatedObjective(instance, gate_logits(gate, test), test.scores,
                               share_weights(test.category, instance.shares), expert_columns=expert_columns(instance))
    bootstrap = Bootstrap(objective, test.category)
    return [bootstrap.of(mask_of(instance.expert_ids.index(e) for e in names)) for names in selections]


def one_split(rows: list[dict], seed: int, drop: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        scenario, test = write_split(Path(tmp), *resplit(rows, seed, drop)[:2])
        mixed = api.select(scenario, mix=test, timing=False).to_dict()
        plain = api.select(scenario, timing=False).to_dict()
        truth = test_f(scenario, test, [mixed["selection"], plain["selection"]])
    out = {"seed": seed, **resplit(rows, seed, drop)[2]}
    for name, record, f in (("mix", mixed, truth[0]), ("plain", plain, truth[1])):
        ci = record["objective_ci"]
        expected = prediction(ci, f.se, CONFIDENCE)
        sample = (record["mix"] or {}).get("sample")
        out[name] = {"estimate": ci["estimate"], "low": ci["low"], "high": ci["high"], "test_f": f.estimate,
                     "test_se": f.se, "covered": ci["low"] <= f.estimate <= ci["high"],
                     "predicted": expected["low"] <= f.estimate <= expected["high"],
                     "sample": None if sample is None else {k: sample[k] for k in ("low", "high", "se")},
                     "sample_covered": None if sample is None else sample["low"] <= f.estimate <= sample["high"]}
    return out


def summary(results: list[dict]) -> dict:
    out = {"splits": len(results)}
    for name in ("mix", "plain"):
        parts = [r[name] for r in results]
        out[name] = {"coverage": float(np.mean([p["covered"] for p in parts])),
                     "covered": int(sum(p["covered"] for p in parts)),
                     "prediction_coverage": float(np.mean([p["predicted"] for p in parts])),
                     "sample_covered": None if parts[0]["sample"] is None else
                     int(sum(p["sample_covered"] for p in parts)),
                     "mean_test_se_pts": float(100 * np.mean([p["test_se"] for p in parts])),
                     "mean_error_pts": float(100 * np.mean([p["estimate"] - p["test_f"] for p in parts])),
                     "mean_width_pts": float(100 * np.mean([p["high"] - p["low"] for p in parts])),
                     "below": int(sum(p["test_f"] < p["low"] for p in parts)),
                     "above": int(sum(p["test_f"] > p["high"] for p in parts))}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=50, help="random re-splits")
    parser.add_argument("--first-split", type=int, default=0, help="seed of the first re-split")
    parser.add_argument("--drop", type=int, default=4, help="tasks removed from each test part")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in gzip.open(DATA, "rt", encoding="utf-8")]
    results, start = [], time.perf_counter()
    for seed in range(args.first_split, args.first_split + args.splits):
        results.append(one_split(rows, seed, args.drop))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({**summary(results), "drop": args.drop, "wall_s": round(time.perf_counter() - start, 1),
                      "python": platform.python_version()}, indent=2))


if __name__ == "__main__":
    main()
