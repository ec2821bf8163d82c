"""Per-category max_tokens caps: moe2's defaults, the scenario's own, then the command line's."""

from __future__ import annotations

import pytest

from moe2_cli.errors import UsageError
from moe2_cli.scenario.caps import DEFAULT_MAX_TOKENS, FALLBACK_MAX_TOKENS, parse_max_tokens, token_caps
from moe2_cli.scenario.scenario import load_scenario
from tests.conftest import FIXTURES

CATEGORIES = ("mcq", "math", "stem")


def test_every_category_has_a_cap_and_the_shipped_ones_their_own():
    caps = token_caps(CATEGORIES)
    assert caps == {"mcq": DEFAULT_MAX_TOKENS["mcq"], "math": DEFAULT_MAX_TOKENS["math"], "stem": FALLBACK_MAX_TOKENS}
    assert caps["mcq"] < DEFAULT_MAX_TOKENS["open_qa"] < caps["math"], "a letter needs fewer tokens than a proof"


def test_the_scenario_overrides_the_default_and_a_named_flag_overrides_both():
    assert token_caps(CATEGORIES, {"math": 300}) == {"mcq": 32, "math": 300, "stem": 512}
    assert token_caps(CATEGORIES, {"math": 300}, {"math": 100}) == {"mcq": 32, "math": 100, "stem": 512}


def test_a_flat_flag_replaces_the_defaults_only():
    assert token_caps(CATEGORIES, {"math": 300}, {None: 64}) == {"mcq": 64, "math": 300, "stem": 64}
    assert token_caps(CATEGORIES, {}, {None: 64, "stem": 8}) == {"mcq": 64, "math": 64, "stem": 8}


def test_flags_parse_with_the_later_winning():
    assert parse_max_tokens(["math=256", "128", "math=64"], CATEGORIES) == {"math": 64, None: 128}


@pytest.mark.parametrize(("spec", "needle"), [
    ("maths=5", "unknown category 'maths' (did you mean 'math'?)"),
    ("math=0", "from 1 to"), ("math=-3", "from 1 to"), ("math=1.5", "got 'math=1.5'"), ("lots", "got 'lots'"),
    (f"math={2**40}", "from 1 to"),
])
def test_bad_flags_say_what_is_wrong(spec, needle):
    with pytest.raises(UsageError) as caught:
        parse_max_tokens([spec], CATEGORIES)
    assert caught.value.subject == "max_tokens" and needle in caught.value.message


def test_a_scenario_reads_its_categories_caps(tmp_path):
    text = (FIXTURES / "good" / "scenario.yaml").read_text()
    path = tmp_path / "scenario.yaml"
    path.write_text(text.replace("profile: tiny-device", f"profile: {FIXTURES / 'good' / 'profiles'}/tiny-device.yaml")
                    .replace("mcq: {share: 0.6}", "mcq: {share: 0.6, max_tokens: 24}"))
    assert load_scenario(FIXTURES / "good" / "scenario.yaml").max_tokens == {}
    assert load_scenario(path).max_tokens == {"mcq": 24}
