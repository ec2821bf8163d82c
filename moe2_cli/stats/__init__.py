"""Top-K sparse softmax gating Gaussian mixture of experts: sample, fit by EM, measure losses and rates.

Implements the setting of Nguyen, Akbarian, Yan and Ho, "Statistical Perspective of Top-K Sparse
Softmax Gating Mixture of Experts" (arXiv 2309.13850).
"""

from moe2_cli.stats.em import FitResult, fit_em, initial_params
from moe2_cli.stats.losses import (
                                   Distances,
                                   align_translation,
                                   d1,
                                   d2,
                                   expected_distances,
                                   expected_hellinger,
                                   kbar,
                                   rbar,
                                   voronoi_cells,
)
from moe2_cli.stats.model import MoEParams, split_expert, to_reference, translate_gate
from moe2_cli.stats.params_file import dump_truth, load_truth, parse_truth
from moe2_cli.stats.presets import PRESETS, Truth, preset, sample
from moe2_cli.stats.rates import (
                                   RatesConfig,
                                   RatesResult,
                                   estimate_seconds,
                                   log_grid,
                                   run_rates,
)
from moe2_cli.stats.samples import load_samples, parse_samples, samples_to_text
from moe2_cli.stats.xdist import XDist

__all__ = [
    "Distances", "FitResult", "MoEParams", "PRESETS", "RatesConfig", "RatesResult", "Truth", "XDist",
    "align_translation", "d1", "d2", "dump_truth", "estimate_seconds", "expected_distances",
    "expected_hellinger", "fit_em", "initial_params", "kbar", "load_samples", "load_truth", "log_grid",
    "parse_samples", "parse_truth", "preset", "rbar", "run_rates", "sample", "samples_to_text",
    "split_expert", "to_reference", "translate_gate", "voronoi_cells",
]
