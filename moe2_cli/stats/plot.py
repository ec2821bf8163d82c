"""Log-log plot of a rates sweep; matplotlib is imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.fileio import atomic_output, check_writable
from moe2_cli.stats.rates import RatesResult

PLOT_SUFFIXES = (".png", ".svg")


def check_plot_path(path: str | Path) -> None:
    """Fail before a long sweep if the plot cannot be written: bad suffix or no matplotlib."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"must name a .png or .svg file (got {path})", "plot")
    check_writable(path, "plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("needs matplotlib; install it with: pip install 'moe2[plot]'", "plot") from None


def plot_rates(result: RatesResult, path: str | Path) -> None:
    """Per-replicate values (dots), per-n medians (line) and an n^-1/2 guide, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = np.asarray(result.config.sizes, dtype=float)
    slopes = {s.metric: s for s in result.slopes}
    metrics = list(result.medians)
    fig, axes = plt.subplots(2, (len(metrics) + 1) // 2, figsize=(4 * ((len(metrics) + 1) // 2), 7),
                             squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        values, median = result.values(metric), result.medians[metric]
        ax.loglog(np.repeat(sizes, values.shape[1]), values.ravel(), ".", alpha=0.3, color="grey")
        ax.loglog(sizes, median, "o-", label=f"median, slope {slopes[metric].slope:+.2f}")
        finite = np.flatnonzero(np.isfinite(median) & (median > 0))
        if finite.size:
            i = finite[0]
            ax.loglog(sizes, median[i] * (sizes / sizes[i]) ** -0.5, "--", color="black", label="n^-1/2")
        ax.set_title(metric)
        ax.set_xlabel("n")
        ax.legend(fontsize=8)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{result.truth_name}, {result.config.spec}-specified, {result.config.n_reps} replicates")
    fig.tight_layout()
    suffix = Path(path).suffix.lower()
    # No date and a fixed salt for SVG ids: the same sweep gives the same bytes.
    with atomic_output(path, "wb") as stream, matplotlib.rc_context({"svg.hashsalt": "moe2"}):
        fig.savefig(stream, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(fig)
