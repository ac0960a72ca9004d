"""Numbered frame batches of the exit's WebSockets (protocol/mix_stream.py)."""

from __future__ import annotations

import pytest

from atopos.protocol.mix_stream import (
    MAX_BUFFERED_FRAMES,
    FrameReorder,
    InvalidBatch,
    decode_batch,
    encode_batch,
)


def test_batches_round_trip_text_and_binary() -> None:
    frames: list[str | bytes] = ["héllo", b"\x00\x01", ""]
    assert decode_batch(encode_batch(7, frames)) == (7, frames)
    for bad in (b"\x00\x00", encode_batch(0, ["x"])[:-1], b"\x00\x00\x00\x00\x03"):
        with pytest.raises(InvalidBatch):
            decode_batch(bad)


def test_frames_come_out_in_order_once() -> None:
    reorder = FrameReorder()
    assert reorder.add(2, ["c", "d"]) == []
    assert reorder.add(0, ["a"]) == ["a"]
    assert reorder.add(1, ["b"]) == ["b", "c", "d"]
    assert reorder.add(0, ["a", "b"]) == []  # repeats are ignored
    with pytest.raises(InvalidBatch):
        reorder.add(4 + MAX_BUFFERED_FRAMES, ["too far"])
