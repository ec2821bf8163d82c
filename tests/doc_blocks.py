"""The command lines that README.md and docs/*.md show, and what each says it prints.

Conventions the documentation follows (and tests/test_docs.py checks):

- A ```console block holds ``$ command`` lines, each followed by the output it prints (stdout,
  then stderr), as a 100-column terminal without colour shows it. A ```bash block holds command
  lines only; their output is not shown, their exit code is.
- A command exits 0 unless its line ends with ``# exit N``.
- ``[…]`` in shown output stands for text that differs from run to run (wall times, dates): in a
  line it matches any text, and a line that is only ``[…]`` matches any number of lines.
- A block preceded by ``<!-- not run: reason -->`` is not run; the test keeps that list short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

WILDCARD = "[…]"
_FENCE = re.compile(r"^```(console|bash)\n(.*?)^```", re.M | re.S)
_NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
_EXIT = re.compile(r"#\s*exit (\d+)\s*$")


@dataclass(frozen=True)
class Step:
    """One shown command: where it is, the line itself, its exit code and its shown output
    (None in a bash block, where no output is shown)."""

    where: str
    command: str
    exit_code: int
    shown: str | None


@dataclass(frozen=True)
class Block:
    where: str
    steps: tuple[Step, ...]
    not_run: str | None


def read_blocks(path: Path, root: Path) -> list[Block]:
    """The console and bash blocks of one Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        where = f"{path.relative_to(root)}:{line}"
        reason = _NOT_RUN.search(text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1])
        parse = _console_steps if match.group(1) == "console" else _bash_steps
        blocks.append(Block(where, tuple(parse(match.group(2), where)), reason.group(1) if reason else None))
    return blocks


def _logical_lines(body: str) -> list[str]:
    """Lines with backslash continuations joined."""
    return body.replace("\\\n", " ").splitlines()


def _step(where: str, command: str, shown: str | None) -> Step:
    code = _EXIT.search(command)
    return Step(where, command, int(code.group(1)) if code else 0, shown)


def _bash_steps(body: str, where: str) -> list[Step]:
    return [_step(where, line.strip(), None) for line in _logical_lines(body)
            if line.strip() and not line.lstrip().startswith("#")]


def _console_steps(body: str, where: str) -> list[Step]:
    steps: list[tuple[str, list[str]]] = []
    for line in _logical_lines(body):
        if line.startswith("$ "):
            steps.append((line[2:].strip(), []))
        elif steps:
            steps[-1][1].append(line)
        else:
            raise ValueError(f"{where}: a console block must start with a '$ ' command line")
    return [_step(where, command, "\n".join(shown)) for command, shown in steps]


def _line_pattern(line: str) -> str:
    if line.strip() == WILDCARD:
        return r"(?:[^\n]*\n)*?"
    # Runs of spaces are compared as one: figures and words count, not a table's padding.
    tokens = [".*?".join(re.escape(part) for part in token.split(WILDCARD)) for token in line.split()]
    return r"[ \t]*" + r"[ \t]+".join(tokens) + r"[ \t]*\n"


def _normalised(text: str) -> str:
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return "".join(line + "\n" for line in lines)


def shown_matches(shown: str, actual: str) -> bool:
    """Whether the actual output is the shown one, token for token, ``[…]`` aside."""
    pattern = "".join(_line_pattern(line) for line in _normalised(shown).splitlines(keepends=False))
    return re.fullmatch(pattern, _normalised(actual)) is not None
