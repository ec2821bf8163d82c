"""The named random streams: every random draw in moe2 comes from one of them.

A stream is ``default_rng([seed, *key, *index])``. Distinct keys give independent streams, so
changing how one part draws never shifts another part's numbers; the same seed gives the same
bytes out. Streams with the empty key are the seed's own stream, used by parts that never run
together in one result. The key values are part of moe2's output: changing one changes results.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

StreamName = Literal[
    "synthetic-outcomes", "gate-init", "random-solver", "stats-sample", "em-start",
    "split", "gate-check", "rates-replicate", "rates-bootstrap", "rates-timing", "folds", "bootstrap",
    "router-holdout", "shadow",
]

STREAMS: dict[str, tuple[int, ...]] = {
    "synthetic-outcomes": (),  # outcomes synthesised from profile accuracies
    "gate-init": (),  # the gate's initial weights
    "random-solver": (),  # the random baseline solver
    "stats-sample": (),  # `moe2 stats simulate`
    "em-start": (),  # `moe2 stats fit`: the starting point
    "split": (1,),  # train / validation / held-out split of the outcomes, apart from their synthesis
    "gate-check": (2,),  # `moe2 gating check`: random selections and pairs
    "rates-replicate": (),  # indexed by (n, replicate): a 3-word key
    "rates-bootstrap": (0, 0, 1),  # a 4-word key: never a replicate's stream
    "rates-timing": (),  # the runtime estimate's trial fit (seed 0)
    "folds": (3,),  # cross-fitting folds (and the early-stopping part inside each fold's training queries)
    "bootstrap": (4,),  # resamples of the queries for the intervals of F
    "router-holdout": (5,),  # the logistic router's held-out quarter for its penalty
    "shadow": (6,),  # `moe2 serve --shadow-rate`: which answered requests are shadowed, to which experts
}


def stream(seed: int, name: StreamName, *index: int) -> np.random.Generator:
    """The generator of stream ``name`` for ``seed``; ``index`` tells apart its sub-streams."""
    return np.random.default_rng([seed, *STREAMS[name], *index])
