"""Named random streams: distinct names with distinct keys draw independent numbers, and every
stream is the generator it has always been (changing a key would change moe2's output)."""

from __future__ import annotations

import numpy as np

from moe2_cli.rng import STREAMS, stream


def test_each_stream_is_the_seed_followed_by_its_key_and_index():
    for name, key in STREAMS.items():
        expected = np.random.default_rng([7, *key, 3]).random(4)
        np.testing.assert_array_equal(stream(7, name, 3).random(4), expected)


def test_keyed_streams_differ_from_the_seeds_own_stream_and_each_other():
    keyed = [name for name, key in STREAMS.items() if key]
    draws = {tuple(stream(5, name).random(3)) for name in keyed}
    draws.add(tuple(stream(5, "synthetic-outcomes").random(3)))
    assert len(draws) == len(keyed) + 1


def test_the_seeds_own_stream_is_default_rng_of_the_seed():
    np.testing.assert_array_equal(stream(11, "gate-init").random(3), np.random.default_rng(11).random(3))
