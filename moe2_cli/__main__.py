"""The installed ``moe2`` script and ``python -m moe2_cli``.

The command line is imported inside ``main``, so that Ctrl-C while the packages load (most of
the first second) exits 130 quietly instead of printing a traceback. A repeated `select` on
unchanged inputs is answered from its kept output before anything heavy loads (see
:mod:`moe2_cli.replay`).
"""

from __future__ import annotations

import sys

from moe2_cli import replay
from moe2_cli.errors import EXIT_INTERRUPTED


def main() -> None:
    argv = sys.argv[1:]
    try:
        recordable = replay.eligible(argv, sys.stdout, sys.stderr)
        if recordable and (code := replay.replay(argv)) is not None:
            sys.exit(code)
        from moe2_cli.cli import app
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    if not recordable:
        app(prog_name="moe2")
        return
    with replay.recording(argv):
        app(prog_name="moe2")


if __name__ == "__main__":
    main()
