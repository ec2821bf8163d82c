"""The one exception root. Only the CLI catches it, prints one line per problem, and exits."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_UNMET = 1  # no selection meets the budgets, or --min-accuracy missed
EXIT_BAD_INPUT = 2  # bad usage or bad input
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_BROKEN_PIPE = 141  # the reader of stdout left (`moe2 ... | head`), as shells report SIGPIPE
MAX_SHOWN = 50  # diagnostics printed for one error; a wholly wrong file would print thousands


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that does not print as itself escaped (``\\n``,
    ``\\u200b``): one problem stays one line, and a name with a zero-width space or a
    bidirectional override cannot pass for another in a message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem at one place: rendered as ``path:line:col: message``."""

    path: str
    line: int | None
    col: int | None
    message: str

    def __str__(self) -> str:
        place = self.path
        if self.line is not None:
            place += f":{self.line}"
            if self.col is not None:
                place += f":{self.col}"
        return printable(f"{place}: {self.message}")


class Moe2Error(Exception):
    """Root of every error moe2 reports to a user."""

    exit_code = EXIT_BAD_INPUT

    def lines(self) -> list[str]:
        return [str(self)]


class InputError(Moe2Error):
    """A file or an argument is malformed; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str):
        self.diagnostics: list[Diagnostic | str] = (
            [diagnostics] if isinstance(diagnostics, (Diagnostic, str)) else list(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    def lines(self) -> list[str]:
        """One line per diagnostic, the first :data:`MAX_SHOWN` of them, then how many more there were.
        A diagnostic without a place in a file reads ``moe2: what``, like every other error."""
        shown = [str(d) if isinstance(d, Diagnostic) else f"moe2: {d}" for d in self.diagnostics[:MAX_SHOWN]]
        rest = self.diagnostics[MAX_SHOWN:]
        if rest:
            shown.append(f"{getattr(rest[0], 'path', 'moe2')}: ... and {len(rest)} more problems")
        return shown


class UsageError(Moe2Error, ValueError):
    """A value given to moe2 is malformed or contradicts another: an argument of the Python API
    or a command-line option. ``subject`` names the parameter the message is about, in the
    API's words (``top_k``); the command line says its flag instead (``--top-k``), so the core
    never speaks in flags."""

    def __init__(self, message: str, subject: str | None = None):
        self.subject = subject
        self.message = message
        super().__init__(f"{subject} {message}" if subject else message)


class InfeasibleError(Moe2Error):
    """No selection meets the budgets, or the accuracy target is missed."""

    exit_code = EXIT_UNMET


class Moe2Warning(UserWarning):
    """Something moe2 worked around and the user should know (a damaged cache entry, a cache
    folder it will not use). The core raises it through :mod:`warnings`; the CLI prints it as
    one ``moe2: warning: ...`` line on stderr, once per run."""
