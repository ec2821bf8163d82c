"""Names that identify things a user picks by name (servers, LLMs, experts, categories): one
spelling per thing.

Files are read in Unicode normal form C (:mod:`moe2_cli.inputs`, :mod:`moe2_cli.yamlio`), so
two byte spellings of one accented name are one name. Names that still differ only by case,
by compatibility forms (a full-width letter) or by invisible characters (a zero-width space,
a bidirectional mark) look the same on a screen but would be two experts or two categories:
they are refused, and the message names both. Query and prompt ids are not names a person
types; they are compared exactly (base64 ids differ by case alone).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# Code points that draw nothing yet are not format characters (Cf): variation selectors,
# the combining grapheme joiner, Hangul fillers, Mongolian free variation selectors.
_IGNORABLE = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0,
                        *range(0x180B, 0x1810), *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
_INVISIBLE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def lookalike_key(name: str) -> str:
    """What a name looks like: compatibility-normalised, case-folded, invisible characters dropped."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in folded
                   if ord(c) not in _IGNORABLE and unicodedata.category(c) not in _INVISIBLE_CATEGORIES)


def lookalikes(names: Iterable[str]) -> list[tuple[str, str]]:
    """(earlier, later) for each name that looks like an earlier, different one."""
    first: dict[str, str] = {}
    pairs = []
    for name in names:
        earlier = first.setdefault(lookalike_key(name), name)
        if earlier != name:
            pairs.append((earlier, name))
    return pairs


def lookalike_message(what: str, earlier: str, later: str) -> str:
    """The one wording of a look-alike refusal; ``repr`` shows the invisible characters."""
    return (f"{what} {later!r} looks like {earlier!r}: names that differ only in case, Unicode form or "
            "invisible characters would be two different things")
