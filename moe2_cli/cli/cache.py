"""`moe2 cache clear`: empty the cache of trained gates and kept select answers."""

from __future__ import annotations

import sys

import typer

from moe2_cli.cli.common import handles_errors
from moe2_cli.gating.cache import cache_dir, clear_cache
from moe2_cli.replay import cache_root, clear_replays

app = typer.Typer(name="cache", help="Trained gates and cross-fitted scores are cached by content hash, and "
                                     "proven select answers with the inputs they read (MOE2_CACHE_DIR overrides "
                                     "where).", no_args_is_help=True)


@app.command()
@handles_errors
def clear() -> None:
    """Delete every cached gate and kept select answer; the next select or gating command retrains.

    Example: moe2 cache clear
    """
    gates, answers = clear_cache(), clear_replays(cache_root())
    print(f"moe2: removed {gates} cached gates from {cache_dir()} and {answers} kept select answers",
          file=sys.stderr)
