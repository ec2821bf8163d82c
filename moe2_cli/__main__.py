"""The installed ``moe2`` script and ``python -m moe2_cli``.

The command line is imported inside ``main``, so that Ctrl-C while the packages load (most of
the first second) exits 130 quietly instead of printing a traceback.
"""

from __future__ import annotations

import sys

from moe2_cli.errors import EXIT_INTERRUPTED


def main() -> None:
    try:
        from moe2_cli.cli import app
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    app(prog_name="moe2")


if __name__ == "__main__":
    main()
