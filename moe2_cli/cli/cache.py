"""`moe2 cache info` and `moe2 cache clear`: the cache of trained gates and cross-fitted scores."""

from __future__ import annotations

from dataclasses import asdict

import typer

from moe2_cli.cachedir import CACHE_ENV, DEFAULT_MAX_MB, MAX_MB_ENV, cache_dir
from moe2_cli.cli.common import handles_errors, plural, report
from moe2_cli.cli.options import FormatOpt, OutputFormat
from moe2_cli.cli.render import Column, emit
from moe2_cli.gating.cache import cache_info, clear_cache

app = typer.Typer(
    name="cache", no_args_is_help=True,
    help=f"Trained gates and cross-fitted scores are cached, keyed by their inputs and moe2's own code, and "
         f"checked on every read. {CACHE_ENV} sets the folder (default: the user cache directory); a folder "
         f"that other users can write is not used. {MAX_MB_ENV} caps its size in megabytes (default "
         f"{DEFAULT_MAX_MB}); the least recently used entries go first.")

_MB = 2**20
_COLUMNS = [Column("folder", "folder", justify="left", no_wrap=True), Column("entries", "entries"),
            Column("megabytes", "MB", lambda v: f"{v:.1f}"), Column("max_megabytes", "cap MB", lambda v: f"{v:.0f}"),
            Column("problem", "not used because", justify="left")]


@app.command()
@handles_errors
def info(format: FormatOpt = OutputFormat.table) -> None:
    """Where the cache is, how many entries it holds, their total size and the cap.

    Example: moe2 cache info --format json
    """
    usage = asdict(cache_info())
    row = {**usage, "megabytes": usage["bytes"] / _MB, "max_megabytes": usage["max_bytes"] / _MB}
    emit(format.value, payload=usage, rows=[row], columns=_COLUMNS)


@app.command()
@handles_errors
def clear() -> None:
    """Delete every cached entry and stray temporary file; the next select or gating command retrains.

    Example: moe2 cache clear
    """
    report(f"removed {plural(clear_cache(), 'file')} from {cache_dir()}")
