"""Check a prompt set's references with each prompt's own scorer.

Every reference, given as the answer, must score 1 against itself, and the canonical answer (the
first reference) must score 1 against the prompt's references. A reference that fails cannot be
matched even by itself (an mcq reference that is no option letter, a numeric one that is no
number), so a right answer would be scored wrong. Prints each failure; exits 1 on any.

    python benchmarks/check_prompt_references.py [PROMPTS]   # default: the shipped set
"""

from __future__ import annotations

import argparse
import sys

from moe2_cli.errors import Moe2Error
from moe2_cli.measure.prompts import Prompt, load_prompts
from moe2_cli.measure.scorers import score


def failures(prompts: list[Prompt]) -> list[str]:
    """One line per reference that fails a check."""
    out = []
    for prompt in prompts:
        for reference in prompt.references:
            if score(prompt.scorer, reference, [reference], prompt.text) != 1.0:
                out.append(f"{prompt.id}: reference {reference!r} does not score 1 against itself ({prompt.scorer})")
        canonical = prompt.references[0]
        if score(prompt.scorer, canonical, prompt.references, prompt.text) != 1.0:
            out.append(f"{prompt.id}: canonical answer {canonical!r} does not score 1 ({prompt.scorer})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="?", help="a prompt file (default: the shipped set)")
    args = parser.parse_args()
    try:
        prompts = load_prompts(args.prompts)
    except Moe2Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    found = failures(prompts)
    for line in found:
        print(line)
    references = sum(len(p.references) for p in prompts)
    print(f"{len(prompts)} prompts, {references} references: {len(found)} failures")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
