"""Frontier figures with matplotlib, an optional extra imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path

from moe2_cli.errors import UsageError
from moe2_cli.fileio import atomic_output

_MARKERS = {"greedy": "s", "best-single": "^", "random": "x"}


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'moe2[plot]'") from None
    plt.rcParams["svg.hashsalt"] = "moe2"  # stable SVG ids, so the same data gives the same file
    return plt


def _energy(p: dict) -> float:
    return max(p["energy_j"].values())


def plot_frontier(path: Path, points: list[dict], baselines: dict[str, list[dict]], session) -> None:
    """F (%) against worst-case energy: swept points, the Pareto front, references, baselines."""
    plt = _pyplot()
    objective = session.problem.objective
    n = session.problem.instance.n_experts
    singles = objective([1 << i for i in range(n)])
    oracle = objective.references((1 << n) - 1).get("oracle")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    solved = [p for p in points if p["objective"] is not None]
    ax.scatter([_energy(p) for p in solved], [100 * p["objective"] for p in solved], s=10, color="0.7",
               label="solved budgets", zorder=2)
    front = sorted((p for p in solved if p["pareto"]), key=_energy)
    ax.step([_energy(p) for p in front], [100 * p["objective"] for p in front], where="post", color="C0",
            marker="o", ms=4, label=f"Pareto front ({points[0]['solver'] if points else ''})", zorder=3)
    for name, pts in baselines.items():
        pts = [p for p in pts if p["objective"] is not None]
        ax.scatter([_energy(p) for p in pts], [100 * p["objective"] for p in pts], s=14,
                   marker=_MARKERS.get(name, "."), label=name, alpha=0.7, zorder=2)
    ax.axhline(100 * float(singles.max()), color="C3", ls="--", lw=1, label="best single expert")
    if oracle is not None:
        ax.axhline(100 * oracle, color="C2", ls=":", lw=1, label="oracle, all experts")
    ax.set_xlabel("worst-case energy per query (J)")
    ax.set_ylabel(f"F: {session.metric} (%)" if session.metric == "accuracy" else f"F: {session.metric}")
    ax.set_title(f"{session.scenario.name}: accuracy-energy frontier (top-{session.problem.instance.top_k})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    suffix = path.suffix.lower()
    with atomic_output(path, "wb") as stream:
        fig.savefig(stream, format=suffix[1:], metadata={"Software": None} if suffix == ".png" else {"Date": None})
    plt.close(fig)
