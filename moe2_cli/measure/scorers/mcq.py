"""``mcq``: the option letter an answer explicitly chooses.

A choice is read, strongest first (the last one found of the strongest kind wins):

1. a statement: "the answer is (B)", "Answer: **B**", "correct option is B", "I choose B",
   "B is correct", "Option B:" opening a line, ``\\boxed{B}``;
2. a bare letter as the last line ("B", "B.", "(B)", "**B**", "Option B", "b"); an option line
   ("B) text") as the last line when it does not restate the prompt's option B; a reply that
   opens with one option line and lists no other ("B. Paris" then an explanation);
3. one letter, and only one, marked anywhere as "(B)", "**B**" or "option B".

Never from a line that repeats the question, from a list of options (two or more lines that
each name a different option, or one line naming several: an echoed option list chooses
nothing), or from a line restating option X of the prompt as "X. <its text>". A letter the
prompt offers no option for is no choice; a lower-case letter counts when no word follows it
("the answer is a bird" chooses nothing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from moe2_cli.measure.scorers.text import NOTHING, Verdict, is_echo, normalise

LETTERS = "ABCDEFGHIJ"
_L = r"[(\[*_`\s]*([A-Ja-j])(?![A-Za-z0-9])"  # a letter, maybe bracketed or bold
_STATEMENTS = (
    re.compile(r"(?i:\b(?:answer|option|choice)\s*(?:is|would be|should be|=|:)\s*:?\s*"
               r"(?:clearly|definitely|probably|likely|therefore)?\s*(?:option|choice)?)" + _L),
    re.compile(r"(?i:\bI\s*(?:would|will|'d|'ll)?\s*(?:choose|pick|select|go with))\s*(?i:option)?" + _L),
    re.compile(r"\\boxed\{\s*\(?([A-Ja-j])\)?\s*\}"),
    re.compile(r"(?<![A-Za-z0-9])(?:(?i:option)\s*)?[(\[*]*([A-J])[)\]*]*\s+is\s+(?:the\s+)?(?:correct|right|best)\b"),
    re.compile(r"^[\s*_#>-]*(?i:option)\s*[(\[]?([A-Ja-j])[)\]]?\s*(?:[:.\u2013-]|$)", re.MULTILINE),
)
_OPTION_LINE = re.compile(r"^[\s>*_•-]*(?:(?i:option|choice)\s+)?"
                          r"(?:\(([A-J])\)|\[([A-J])\]|([A-J])\s*[.):\u2013-](?=[\s*_]))[\s*_]*(\S.*?)[\s*_]*$")
_INLINE_OPTION = re.compile(r"(?:^|\s)\(?([A-J])[.)]\s+\S")
_BARE = re.compile(r"^(?:(?i:option|choice)\s*)?[(\[]?([A-Ja-j])[)\]]?[.:]?$")
_MARKED = re.compile(r"\(([A-Ja-j])\)|\*\*\(?([A-J])\)?\*\*|(?i:\boption)\s+([A-J])\b")
_DECORATION = re.compile(r"[*_`#>\s]+")


def options(question: str) -> dict[str, str]:
    """The prompt's options, letter -> normalised text."""
    found = {}
    for line in question.splitlines():
        option = _option(line)
        if option is not None:
            found[option[0]] = normalise(option[1])
    return found


def _option(line: str) -> tuple[str, str] | None:
    match = _OPTION_LINE.match(line)
    if match is None:
        return None
    return next(g for g in match.groups()[:3] if g), match.group(4)


def _restates(option: tuple[str, str], offered: dict[str, str]) -> bool:
    said, text = normalise(option[1]), offered.get(option[0])
    return bool(said) and text is not None and text.startswith(said)


def _listing(lines: list[str]) -> set[int]:
    """Indexes of the lines that list options: several option lines, or one naming several."""
    option_lines = {i: _option(line) for i, line in enumerate(lines)}
    letters = {o[0] for o in option_lines.values() if o}
    listed = {i for i, o in option_lines.items() if o} if len(letters) >= 2 else set()
    return listed | {i for i, line in enumerate(lines) if len(set(_INLINE_OPTION.findall(line))) >= 2}


Choice = tuple[str, str]  # the letter and the text it was read from


def _letter(match: re.Match[str], valid: str) -> str | None:
    letter = next(g for g in match.groups() if g)
    if letter.islower() and re.match(r"\s+[a-z]", match.string[match.end():]):
        return None
    return letter.upper() if letter.upper() in valid else None


def _closed(match: re.Match[str]) -> str:
    """The match with the brackets and bold marks that close it: ``(B)``, not ``(B``."""
    closing = re.match(r"[)\]*_`]*", match.string[match.end():])
    return (match.group(0) + (closing.group(0) if closing else "")).strip()


def _stated(lines: list[str], valid: str) -> Choice | None:
    """The last statement of a choice (by line, then by place in the line)."""
    found = [((n, match.start()), letter, _closed(match))
             for n, line in enumerate(lines) for pattern in _STATEMENTS for match in pattern.finditer(line)
             if (letter := _letter(match, valid)) is not None]
    return max(found)[1:] if found else None


def _bare(kept: list[str], raw: list[str], listed: set[int], offered: dict[str, str], valid: str) -> Choice | None:
    """A bare letter or an own option line ending the reply, or one option line opening it."""
    if kept:
        match = _BARE.match(_DECORATION.sub(" ", kept[-1]).strip())
        if match and match.group(1).upper() in valid:
            return match.group(1).upper(), kept[-1].strip()
        option = _option(kept[-1])
        if option and option[0] in valid and not _restates(option, offered):
            return option[0], kept[-1].strip()
    opening = _option(raw[0]) if raw and 0 not in listed else None
    if opening and opening[0] in valid and {o[0] for o in map(_option, raw[1:]) if o} <= {opening[0]}:
        return opening[0], raw[0].strip()
    return None


def _marked(lines: list[str], valid: str) -> Choice | None:
    marks = [(next(g for g in m.groups() if g).upper(), m.group(0)) for line in lines for m in _MARKED.finditer(line)]
    letters = {letter for letter, _ in marks if letter in valid}
    if len(letters) != 1:
        return None
    letter = letters.pop()
    return letter, next(text for chosen, text in marks if chosen == letter)


def choice(answer: str, question: str = "") -> Choice | None:
    """The letter the answer chooses and the text it was read from; None when it chooses none."""
    offered = options(question)
    valid = "".join(offered) or LETTERS
    raw = [line for line in answer.splitlines() if line.strip()]
    listed = _listing(raw)
    kept = [line for i, line in enumerate(raw) if i not in listed and not is_echo(line, question)
            and not ((o := _option(line)) and _restates(o, offered))]
    return _stated(kept, valid) or _bare(kept, raw, listed, offered, valid) or _marked(kept, valid)


def score_mcq(answer: str, references: Sequence[str], question: str = "") -> Verdict:
    chosen = choice(answer, question)
    if chosen is None:
        return NOTHING
    return Verdict(float(any(chosen[0] == r.strip().upper() for r in references)), chosen[1])
