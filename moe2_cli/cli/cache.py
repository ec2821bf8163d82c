"""`moe2 cache clear`: empty the cache of trained gates."""

from __future__ import annotations

import sys

import typer

from moe2_cli.cli.common import handles_errors
from moe2_cli.gating.cache import cache_dir, clear_cache

app = typer.Typer(name="cache", help="Trained gates and cross-fitted scores are cached by content hash "
                                     "(MOE2_CACHE_DIR overrides where).", no_args_is_help=True)


@app.command()
@handles_errors
def clear() -> None:
    """Delete every cached gate; the next select or gating command retrains.

    Example: moe2 cache clear
    """
    removed = clear_cache()
    print(f"moe2: removed {removed} cached entries from {cache_dir()}", file=sys.stderr)
