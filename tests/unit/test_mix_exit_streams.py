"""The exit's stream answers (mixnet/exit_streams.py) without a network: what fits in the
SURBs goes, in order and numbered; a frame that can never fit ends the stream with 1009."""

from __future__ import annotations

import contextlib
from typing import Any

from atopos.clock import SystemClock
from atopos.mixnet.exit_streams import ExitStreams, _Stream
from atopos.protocol.mix_stream import decode_batch


def _stream(frames: list[str | bytes]) -> _Stream:
    socket: Any = None  # never touched by _drain
    stream = _Stream(socket, contextlib.AsyncExitStack(), 0.0)
    stream.incoming = list(frames)
    return stream


def test_an_answer_takes_what_its_budget_holds_in_order() -> None:
    streams = ExitStreams("http://127.0.0.1:9", SystemClock())
    stream = _stream(["a" * 100, "b" * 100, "c" * 100])
    first = streams._drain(stream, 4 + 2 * 105)
    second = streams._drain(stream, 1000)
    assert decode_batch(first.body) == (0, ["a" * 100, "b" * 100])
    assert decode_batch(second.body) == (2, ["c" * 100])


def test_a_frame_larger_than_any_answer_closes_with_1009() -> None:
    streams = ExitStreams("http://127.0.0.1:9", SystemClock())
    answer = streams._drain(_stream(["x" * 5000]), 1000)
    assert answer.status == 410
    assert dict(answer.headers) == {"x-atopos-close-code": "1009"}
