"""Exit fragments, reassembly caps and reply framing (protocol/mix_exit.py)."""

from __future__ import annotations

import pytest

from atopos.crypto.sphinx import HEADER_BYTES, MESSAGE_BYTES, Surb
from atopos.protocol.mix_exit import (
    MAX_REPLY_CHUNK,
    ExitLimits,
    ExitRequest,
    InvalidExitMessage,
    ReplyAssembler,
    RequestAssembler,
    decode_request,
    encode_request,
    reply_messages,
    request_fragments,
)
from atopos.protocol.mix_message import MAX_DATA_BYTES

SESSION = b"s" * 16
SURB = Surb(b"\x01" * 32, b"\x02" * HEADER_BYTES, b"\x03" * 128)


def test_fragments_reassemble_in_any_order_with_their_surbs() -> None:
    request = ExitRequest("POST", "/api/v1/x", (("content-type", "a/b"),), bytes(range(256)) * 40)
    fragments = request_fragments(SESSION, 7, encode_request(request), [SURB] * 5)
    assert all(len(f) <= MAX_DATA_BYTES for f in fragments)
    assembler = RequestAssembler(ExitLimits())
    results = [assembler.add(f, 0.0) for f in reversed(fragments)]
    assert results[:-1] == [None] * (len(fragments) - 1)
    whole = results[-1]
    assert whole is not None
    assert whole.surbs == (SURB,) * 5
    assert decode_request(whole.request) == request
    assert assembler.open_requests == 1
    assembler.finish(SESSION, 7)
    assert assembler.open_requests == 0


def test_caps_per_session_total_and_age() -> None:
    assembler = RequestAssembler(ExitLimits(max_per_session=2, max_open=3, reassembly_seconds=5))
    big = bytes(5000)
    for request_id in (1, 2):
        assembler.add(request_fragments(SESSION, request_id, big, [SURB])[0], 0.0)
    with pytest.raises(InvalidExitMessage):
        assembler.add(request_fragments(SESSION, 3, big, [SURB])[0], 0.0)
    assembler.add(request_fragments(b"t" * 16, 1, big, [SURB])[0], 0.0)
    with pytest.raises(InvalidExitMessage):
        assembler.add(request_fragments(b"u" * 16, 1, big, [SURB])[0], 0.0)
    assembler.expire(5.0)
    assert assembler.open_requests == 0


def test_too_many_surbs_or_fragments_and_repeats_are_refused() -> None:
    assembler = RequestAssembler(ExitLimits(max_surbs=2, max_fragments=3))
    fragments = request_fragments(SESSION, 1, b"x", [SURB] * 3)
    assembler.add(fragments[0], 0.0)
    with pytest.raises(InvalidExitMessage):
        assembler.add(fragments[0], 0.0)  # a repeat
    with pytest.raises(InvalidExitMessage):
        assembler.add(fragments[1], 0.0)  # three SURBs, two allowed
    with pytest.raises(InvalidExitMessage):
        assembler.add(request_fragments(SESSION, 2, bytes(9000), [SURB])[0], 0.0)


def test_path_must_stay_on_the_server() -> None:
    for path in ("http://elsewhere/", "//elsewhere/x", "x"):
        with pytest.raises(InvalidExitMessage):
            decode_request(encode_request(ExitRequest("GET", path, (), b"")))


def test_replies_fill_one_message_each_and_come_back_whole() -> None:
    answer = bytes(range(251)) * 20
    messages = reply_messages(SESSION, 9, answer, 4)
    assert len(messages) == -(-len(answer) // MAX_REPLY_CHUNK)
    assert all(len(m) == MESSAGE_BYTES for m in messages)
    with pytest.raises(ValueError, match="more reply blocks"):
        reply_messages(SESSION, 9, answer, 2)
    replies = ReplyAssembler(SESSION, 4)
    replies.expect(9)
    assert [replies.add(m) for m in reversed(messages)][-1] == (9, answer)
    with pytest.raises(InvalidExitMessage):
        replies.add(messages[0])  # forgotten once whole
