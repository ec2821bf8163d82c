"""Splitting an expert's byte stream into server-sent event lines, whatever the chunking."""

from __future__ import annotations

import asyncio

import pytest

from moe2_cli.serve.streams import data_of, lines_of


async def _chunks(parts):
    for part in parts:
        yield part


def lines(parts: list[bytes]) -> list[str]:
    async def collect():
        return [line async for line in lines_of(_chunks(parts))]

    return asyncio.run(collect())


TEXT = "data: {\"a\": \"é\"}\r\n\r\ndata: b\rdata: c\n\n: ping\ndata: [DONE]\n\n".encode()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, len(TEXT)])
def test_lines_are_the_same_however_the_bytes_are_cut(size):
    parts = [TEXT[i:i + size] for i in range(0, len(TEXT), size)]
    assert lines(parts) == ['data: {"a": "é"}', "", "data: b", "data: c", "", ": ping", "data: [DONE]", ""]


def test_events_join_their_data_lines():
    async def collect():
        return [e async for e in data_of(lines_of(_chunks([TEXT])))]

    assert asyncio.run(collect()) == ['{"a": "é"}', "b\nc", "[DONE]"]
