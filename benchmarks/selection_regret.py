"""Does the selection hold up on new queries? True regret and CI coverage on synthetic outcomes.

The synthetic outcome model (docs/outcomes.md) is fixed once per run, with its offsets
calibrated to the default scenario's profile accuracies on a large sample. For each training
size n and seed, n queries are drawn from it and moe2 selects experts at the scenario's budgets:

- ``folds 1, best``: one split (train a half, stop on a sixth, score a third) and the exact
  maximiser of the estimate, as moe2 did before cross-fitting;
- ``folds 5, best`` and ``folds 5, parsimonious``: cross-fitted F, then each rule.

The deployed gate of each setting (the split's gate with one fold, the gate trained on every
query with five) is scored on a fresh test draw of ``--test`` queries whose scores are the
model's probabilities of a right answer (not 0/1 draws). Queries still differ in how hard they
are, so the true F is known to within its sampling error over the test draw, about
0.23 / sqrt(test / 20,000) points; that error is shared by every seed, so it must stay well
below the interval's width at the largest n (at n = 10,000 its standard error is about 0.4
points): 200,000 test queries give 0.07. True regret = max over feasible selections of the
true F minus the true F of the chosen one. Coverage = how often the reported 95 % interval of F
of the chosen selection holds its true F.

    python benchmarks/selection_regret.py --seeds 50 --sizes 2000 500 10000

``--first-seed`` and ``--seeds`` cut the seeds into ranges that can run side by side; each row
of the table then covers its range only.

Everything is seeded. Each run's result goes to stderr as it finishes, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from moe2_cli.gating.confidence import Bootstrap
from moe2_cli.gating.crossfit import gate_logits
from moe2_cli.gating.ensemble import GatedObjective, MonotoneEnvelope, share_weights
from moe2_cli.gating.pipeline import (
    expert_columns,
    fit_gate,
    fitted_objective,
    out_of_fold,
    split_queries,
    train_deployed,
)
from moe2_cli.outcomes import Outcomes, SynthModel
from moe2_cli.outcomes.synth import category_counts, profile_accuracy
from moe2_cli.problem import Problem
from moe2_cli.rules import feasible_selections, parsimonious_choice
from moe2_cli.scenario.scenario import load_scenario
from moe2_cli.solvers import Limits, get_solver

SETTINGS = (("folds 1, best", 1, "best"), ("folds 5, best", 5, "best"), ("folds 5, parsimonious", 5, "parsimonious"))
CALIBRATION_QUERIES = 400_000


@dataclass(frozen=True)
class World:
    """Fixed parameters of the synthetic model: a query's chance that LLM l is right is
    Phi((b[l, c] + s g[l, c, t] - lam d) / sigma), with features mu[c, t] + noise."""

    llms: tuple[str, ...]
    categories: tuple[str, ...]
    shares: np.ndarray
    centroids: np.ndarray  # (C, topics, D)
    skill: np.ndarray  # (L, C, topics)
    offsets: np.ndarray  # (L, C)
    model: SynthModel

    def latent_mean(self, category, topic, difficulty) -> np.ndarray:
        """(Q, L) latent without the LLM noise or the offsets."""
        m = self.model
        return m.skill_spread * self.skill[:, category, topic].T - m.difficulty_weight * difficulty[:, None]

    def draw(self, n: int, rng: np.random.Generator, *, probabilities: bool = False, tag: str = "q") -> Outcomes:
        m = self.model
        category = rng.permutation(np.repeat(np.arange(len(self.categories)), category_counts(self.shares, n)))
        topic = rng.integers(m.topics, size=n)
        difficulty = rng.standard_normal(n)
        features = self.centroids[category, topic] + m.feature_noise * rng.standard_normal((n, m.feature_dim))
        mean = self.latent_mean(category, topic, difficulty) + self.offsets[:, category].T
        scores = ndtr(mean / m.noise) if probabilities else (mean + m.noise * rng.standard_normal(mean.shape) > 0)
        return Outcomes(qids=tuple(f"{tag}-{q}" for q in range(n)), categories=self.categories, category=category,
                        columns=self.llms, scores=scores.astype(float), features=features, source="synthetic")


def make_world(instance, seed: int, model: SynthModel = SynthModel()) -> World:
    """Parameters drawn from ``seed``; offsets put every LLM at its profile accuracy per category."""
    llms, accuracy = profile_accuracy(instance)
    rng = np.random.default_rng([seed, 99])
    n_cats = len(instance.categories)
    world = World(llms=llms, categories=tuple(instance.categories), shares=np.asarray(instance.shares),
                  centroids=rng.standard_normal((n_cats, model.topics, model.feature_dim)),
                  skill=rng.standard_normal((len(llms), n_cats, model.topics)),
                  offsets=np.zeros((len(llms), n_cats)), model=model)
    category = rng.integers(n_cats, size=CALIBRATION_QUERIES)
    topic = rng.integers(model.topics, size=CALIBRATION_QUERIES)
    latent = world.latent_mean(category, topic, rng.standard_normal(CALIBRATION_QUERIES))
    latent = latent + model.noise * rng.standard_normal(latent.shape)
    offsets = np.array([[-np.quantile(latent[category == c, llm], 1.0 - accuracy[llm, c]) for c in range(n_cats)]
                        for llm in range(len(llms))])
    return World(**{**world.__dict__, "offsets": offsets})


def true_values(instance, saved, test: Outcomes) -> np.ndarray:
    """True F of every expert mask for one deployed gate (the test table holds probabilities)."""
    objective = GatedObjective(instance, gate_logits(saved, test), test.scores,
                               share_weights(test.category, instance.shares),
                               expert_columns=expert_columns(instance))
    return objective.all_values()


def one_run(scenario, world: World, test: Outcomes, n: int, seed: int) -> dict[str, tuple[float, bool]]:
    """Per setting: (true regret, whether the 95 % interval of F covered the truth)."""
    instance = scenario.instance
    train = world.draw(n, np.random.default_rng([seed, n]), tag=f"train{seed}")
    out = {}
    for folds in sorted({folds for _, folds, _ in SETTINGS}):
        fit = out_of_fold(train, instance.top_k, folds=folds, seed=seed, use_cache=False)
        inner = fitted_objective(instance, train, fit)
        problem = Problem(instance=instance, budgets=scenario.budgets, objective=MonotoneEnvelope(inner))
        best = get_solver("polyblock", seed=seed).solve(problem, Limits()).mask
        bootstrap = Bootstrap(inner, train.subset(fit.rows).category, seed=seed, fold=fit.fold[fit.rows])
        deployed = (fit_gate(train, split_queries(train, seed), instance.top_k, seed=seed) if folds == 1
                    else train_deployed(train, instance.top_k, seed=seed, use_cache=False))
        truth = true_values(instance, deployed, test)
        top = truth[feasible_selections(problem)[0]].max()
        for label, setting_folds, rule in SETTINGS:
            if setting_folds != folds:
                continue
            mask = best if rule == "best" else parsimonious_choice(problem, best, bootstrap.of(best).se)
            interval = bootstrap.of(mask)
            out[label] = (float(top - truth[mask]), bool(interval.low <= truth[mask] <= interval.high))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default=None, help="scenario file (default: the default scenario)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 500, 10000])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--test", type=int, default=200_000, help="test queries for the true F")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    world = make_world(scenario.instance, seed=0)
    test = world.draw(args.test, np.random.default_rng([0, 7]), probabilities=True, tag="test")
    print(f"machine: {platform.platform()}, {platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"scenario {scenario.name}: {scenario.instance.n_experts} experts, top-{scenario.instance.top_k}; "
          f"{args.seeds} seeds; true F on {args.test:,} fresh queries")
    print("| n | setting | mean true regret (pts) | SE | median | 95 % CI of F covers the truth |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        start = time.perf_counter()
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runs.append(one_run(scenario, world, test, n, seed))
            print(f"n={n} seed={seed}: " + json.dumps(runs[-1]), file=sys.stderr, flush=True)
        for label, _, _ in SETTINGS:
            regret = 100 * np.array([r[label][0] for r in runs])
            covered = np.mean([r[label][1] for r in runs])
            print(f"| {n:,} | {label} | {regret.mean():.2f} | {regret.std(ddof=1) / math.sqrt(len(regret)):.2f} "
                  f"| {np.median(regret):.2f} | {100 * covered:.0f} % |", flush=True)
        diff = 100 * np.array([r["folds 1, best"][0] - r["folds 5, parsimonious"][0] for r in runs])
        diff_best = 100 * np.array([r["folds 1, best"][0] - r["folds 5, best"][0] for r in runs])
        print(f"|   | paired: folds 1 best - folds 5 parsimonious = {diff.mean():.2f} "
              f"(SE {diff.std(ddof=1) / math.sqrt(len(diff)):.2f}); folds 1 best - folds 5 best = "
              f"{diff_best.mean():.2f} (SE {diff_best.std(ddof=1) / math.sqrt(len(diff)):.2f}); "
              f"{time.perf_counter() - start:.0f} s | | | |", flush=True)


if __name__ == "__main__":
    main()
