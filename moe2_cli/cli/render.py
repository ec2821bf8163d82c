"""One rendering path for table, csv and json, so all three show the same numbers.

A command builds a ``payload`` (plain dicts, lists, numbers, strings) for json, and a list of
flat ``rows`` plus ``Column`` specs for table and csv. Only this module and the CLI import rich.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table

from moe2_cli.plain import jsonable

FORMATS = ("table", "json", "csv")
PIPED_WIDTH = 160


@dataclass(frozen=True)
class Column:
    """A table/csv column: ``key`` into each row, a header, and a formatter for the table.
    ``drop`` above 0 lets a table too wide for the terminal leave the column out, highest
    ``drop`` first; csv and json always have every column."""

    key: str
    header: str
    fmt: Callable[[Any], str] | None = None
    justify: JustifyMethod = "right"
    no_wrap: bool = False
    drop: int = 0


def stdout_console() -> Console:
    console = Console(no_color=bool(os.environ.get("NO_COLOR")), soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped tables go to files and logs: keep rows whole instead of wrapping at 80.
        console.width = PIPED_WIDTH
    return console


def stderr_console() -> Console:
    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))


def to_json(payload: Any) -> str:
    return json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n"


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 10))
    return value


def to_csv(rows: list[dict], columns: list[Column]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(row.get(c.key)) for c in columns])
    return buf.getvalue()


def _table_cell(value: Any, column: Column) -> str:
    if value is None:
        return ""  # unknown: blank, never a number that could be read as a measurement
    if column.fmt is not None:
        return column.fmt(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def to_table(rows: list[dict], columns: list[Column], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap)
    for row in rows:
        table.add_row(*[_table_cell(row.get(c.key), c) for c in columns])
    return table


def _unbroken_width(console: Console, table: Table) -> int:
    """The narrowest width at which rich lays ``table`` out without cutting a word."""
    return Measurement.get(console, console.options.update_width(10_000), table).minimum


def fitted_table(console: Console, rows: list[dict], columns: list[Column],
                 title: str | None = None) -> tuple[Table, list[Column]]:
    """The table with as few droppable columns left out as lets it fit the console unbroken,
    and the columns left out."""
    kept = list(columns)
    table = to_table(rows, kept, title)
    # Highest drop first; among equals the rightmost, so the columns read left to right stay.
    for column in sorted((c for c in columns if c.drop), key=lambda c: (-c.drop, -columns.index(c))):
        if _unbroken_width(console, table) <= console.width:
            break
        kept.remove(column)
        table = to_table(rows, kept, title)
    return table, [c for c in columns if c not in kept]


def emit(fmt: str, *, payload: Any, rows: list[dict], columns: list[Column], title: str | None = None,
         extra: list | None = None) -> None:
    """Write one result to stdout in ``fmt``. ``extra`` renderables follow the table view only."""
    if fmt == "json":
        sys.stdout.write(to_json(payload))
    elif fmt == "csv":
        sys.stdout.write(to_csv(rows, columns))
    else:
        console = stdout_console()
        table, left_out = fitted_table(console, rows, columns, title)
        # Wider than the terminal rather than cut: rich ellipsises a word that does not fit its
        # column, and an expert id or a number must never be cut.
        console.width = max(console.width, _unbroken_width(console, table))
        console.print(table)
        if left_out:
            names = ", ".join(c.header.replace("\n", " ") for c in left_out)
            console.print(f"left out at this width: {names} (--format csv has every column)", soft_wrap=False,
                          highlight=False)
        for item in extra or []:
            console.print(item)
