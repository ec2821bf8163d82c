"""Plain JSON values: what a record holds once it leaves the core, and what ``--format json`` prints."""

from __future__ import annotations

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null so the output is strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
