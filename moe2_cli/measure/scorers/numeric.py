"""``numeric``: the number an answer gives as its answer, compared with a tolerance.

Where the answer is, first found wins:

1. the last ``\\boxed{...}``: its content (after a last ``=``) must be one number, units and
   currency aside (``\\boxed{2\\sqrt{3}}`` is no number, and scores 0);
2. the first number after the last ``####``;
3. the first number after the last "answer is" / "answer:";
4. otherwise the last sentence that has a number, parenthesised asides dropped: the first number
   after its last ``=``; else, when the sentence begins with a number, that number
   (``5 apples (2 + 3)`` gives 5); else its last number (``so she has 5 apples left`` gives 5).

An answer with no number in digits is read again with numbers in words turned into digits
(``eighteen``, ``twenty-five``, ``one hundred and twelve``; text2num leaves a lone "one" or
"zero" alone, since they are so often not numbers).

Numbers may carry thousands separators (``1,234``), a currency sign, a sign, decimals, a
fraction (``3/4``, ``\\frac{3}{4}``, ``\\dfrac``) or a percent sign; ``25%`` matches 25 and
0.25. Two numbers are equal within an absolute 1e-9 or a relative 1e-6, whichever is larger.
Lines that repeat the question are not read: an echoed question is not an answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from text_to_num import alpha2digit

from moe2_cli.measure.scorers.text import NOTHING, Verdict, best, drop_echo

ABS_TOLERANCE, REL_TOLERANCE = 1e-9, 1e-6
_NUMBER = re.compile(
    r"(?<![\w.])(?:(?P<sign>[-\u2212])\s?)?\$?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?P<pct>\s*%)?")
_LATEX = [  # LaTeX spellings of plain text, applied in order
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\frac\{\s*([^{}]+?)\s*\}\{\s*([^{}]+?)\s*\}"), r"\1/\2"),
    (re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\[,!; ]|\\left|\\right"), ""),
    (re.compile(r"\^\{?\\circ\}?"), ""),
    (re.compile(r"\\([$%])"), r"\1"),
]
_HASHES = re.compile(r"####([^\n]*)")
_ANSWER = re.compile(r"\banswer\s*(?:is|would be|should be|=|:)\s*:?", re.IGNORECASE)
_ASIDE = re.compile(r"\([^()]*\)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_LEADING = re.compile(r"^[\s*_`>#:-]*(?=[-\u2212$.\d])")


def plain(text: str) -> str:
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    return text


def _value(match: re.Match[str]) -> tuple[float, bool]:
    value = float(match["num"].replace(",", ""))
    if match["den"] is not None:
        value = value / float(match["den"]) if float(match["den"]) else math.nan
    return (-value if match["sign"] else value), match["pct"] is not None


def last_boxed(text: str) -> tuple[str, str] | None:
    """The last ``\\boxed{...}``, whole and its content (braces balanced)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[start:j + 1], text[i:j]
    return None


def _boxed(text: str) -> tuple[re.Match[str] | None, str] | None:
    found = last_boxed(text)
    if found is None:
        return None
    whole, content = found
    numbers = list(_NUMBER.finditer(plain(content).split("=")[-1]))
    return (numbers[0] if len(numbers) == 1 else None), whole


def _after(pattern: re.Pattern[str], text: str) -> tuple[re.Match[str], str] | None:
    marks = list(pattern.finditer(text))
    if not marks:
        return None
    rest = text[marks[-1].end():].split("\n", 1)[0]
    number = _NUMBER.search(rest)
    return (number, text[marks[-1].start():marks[-1].end()] + rest[:number.end()]) if number else None


def _final_sentence(text: str) -> tuple[re.Match[str], str] | None:
    for sentence in reversed(_SENTENCE_END.split(text)):
        sentence = _ASIDE.sub("", sentence).strip()
        numbers = list(_NUMBER.finditer(sentence))
        if not numbers:
            continue
        after = list(_NUMBER.finditer(sentence.rsplit("=", 1)[1])) if "=" in sentence else []
        lead = _LEADING.match(sentence)
        if not after and lead is not None and numbers[0].start() == lead.end():
            after = numbers[:1]
        chosen = after[0] if after else numbers[-1]
        return chosen, chosen.group(0)
    return None


def read_answer(text: str) -> tuple[float, bool, str] | tuple[None, bool, str | None]:
    """The answer's number, whether it was a percentage, and the text it was read from."""
    boxed = _boxed(text)
    if boxed is not None:
        number, whole = boxed
        return (*_value(number), whole) if number is not None else (None, False, whole)
    text = plain(text)
    for found in (_after(_HASHES, text), _after(_ANSWER, text), _final_sentence(text)):
        if found is not None:
            return (*_value(found[0]), found[1].strip())
    return None, False, None


def _readings(value: float, percent: bool) -> list[float]:
    return [value, value / 100] if percent else [value]


def close(a: float, b: float) -> bool:
    return abs(a - b) <= max(ABS_TOLERANCE, REL_TOLERANCE * max(abs(a), abs(b)))


def _read_words(text: str) -> tuple[float, bool, str] | tuple[None, bool, str | None]:
    """:func:`read_answer`, and again on the text with numbers in words as digits if it has none."""
    found = read_answer(text)
    if found[0] is not None or found[2] is not None:
        return found
    in_digits = alpha2digit(text, "en")
    if in_digits == text:
        return found
    value, percent, matched = read_answer(in_digits)
    if value is None:
        return found
    return value, percent, f"{matched} (from words)"


def score_numeric(answer: str, references: Sequence[str], question: str = "") -> Verdict:
    got, got_percent, matched = _read_words(drop_echo(answer, question))
    if got is None:
        return Verdict(0.0, matched) if matched else NOTHING
    verdicts = [Verdict(0.0, matched)]
    for reference in references:
        want, want_percent, _ = read_answer(reference)
        if want is not None and any(close(a, b) for a in _readings(got, got_percent)
                                    for b in _readings(want, want_percent)):
            verdicts.append(Verdict(1.0, matched))
    return best(verdicts)
