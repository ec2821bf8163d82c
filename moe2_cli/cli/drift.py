"""The table view of `moe2 gating eval`'s drift check: the mix shift and the verdict."""

from __future__ import annotations

SHOWN_TAGS = 12  # the largest shifts; the JSON has every tag


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _shift(rows: list[dict], kind: str) -> str:
    moved = sorted(rows, key=lambda r: -abs(r["new_share"] - r["training_share"]))
    parts = [f"{r['name']} {_pct(r['training_share'])} -> {_pct(r['new_share'])}" for r in moved[:SHOWN_TAGS]]
    more = f" (and {len(moved) - SHOWN_TAGS} more)" if len(moved) > SHOWN_TAGS else ""
    return f"{kind} shares, training -> new: " + ", ".join(parts) + more


def drift_lines(payload: dict) -> list[str]:
    """Lines under the table: the shift of categories and tags, tags new since training, and
    the selection's F against the plan's interval reweighted to the new mix."""
    shift = payload["mix_shift"]
    lines = [_shift(shift["categories"], "category")]
    if shift["tags"]:
        lines.append(_shift(shift["tags"], "tag"))
    if shift["unseen_tags"]:
        lines.append("tags not in the training outcomes: " + ", ".join(shift["unseen_tags"]))
    chosen = payload["selection"]
    if chosen is None:
        return lines
    plan, f = chosen["plan"]["objective"], chosen["objective"]["estimate"]
    expected = chosen["plan"]["prediction"]
    level = f"{100 * payload['confidence']:g}%"
    lines.append(f"plan's F reweighted to the new mix: {_pct(plan['estimate'])}, {level} interval "
                 f"{_pct(plan['low'])} to {_pct(plan['high'])}; with the new queries' own sampling error "
                 f"{_pct(expected['low'])} to {_pct(expected['high'])}; F on the new queries {_pct(f)}: "
                 f"{chosen['drift']} it")
    lines += [f"note: {n}" for n in chosen["plan"]["notes"]]
    return lines
