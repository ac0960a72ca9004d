"""The frames between workers and the SQLite writer process (storage/sqlite_writer_frames.py):
cut alike however the bytes arrive, capped, and errors rebuilt as their own types."""

from __future__ import annotations

import struct

import pytest

from atopos.errors import (
    AnswerTooLarge,
    AtoposError,
    Gone,
    RateLimited,
    StorageFull,
    Unavailable,
    WrongKey,
)
from atopos.server.errors import response_for
from atopos.storage.port import TicketUsed
from atopos.storage.request_port import RequestTaken
from atopos.storage.sqlite_batches import BUSY_MESSAGE, WritersBusy
from atopos.storage.sqlite_writer_frames import (
    MAX_FRAME,
    FrameReader,
    FrameTooLarge,
    encode_frame,
    error_from_reply,
    error_reply,
)


def test_frames_are_cut_alike_whether_bytes_come_one_by_one_or_all_at_once() -> None:
    payloads = [(1, "insert_chunk", (b"o" * 16, 0, b"x" * 70_000), 12.5), (2, True, None)]
    stream = b"".join(encode_frame(p) for p in payloads)
    reader = FrameReader()
    assert [p for i in range(len(stream)) for p in reader.feed(stream[i : i + 1])] == payloads
    assert FrameReader().feed(stream) == payloads


def test_a_frame_over_the_cap_is_refused_from_its_length_alone() -> None:
    with pytest.raises(FrameTooLarge):
        FrameReader().feed(struct.pack(">I", MAX_FRAME + 1))
    assert FrameReader().feed(struct.pack(">I", MAX_FRAME)) == []  # waits for the rest


@pytest.mark.parametrize(
    "error",
    [
        TicketUsed(),
        RequestTaken(),
        Gone("gone"),
        StorageFull("full"),
        WritersBusy(BUSY_MESSAGE),
        Unavailable("down"),
    ],
)
def test_errors_come_back_as_their_own_type_and_message(error: Exception) -> None:
    (reply,) = FrameReader().feed(encode_frame((7, False, error_reply(error))))
    rebuilt = error_from_reply(reply[2])
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_a_reply_that_carries_no_error_class_is_refused() -> None:
    with pytest.raises(TypeError):
        error_from_reply((int, (), {}))


@pytest.mark.parametrize(
    "error",
    [
        TicketUsed(),
        RequestTaken(),
        StorageFull("full"),
        WritersBusy(BUSY_MESSAGE),
        WrongKey(),
        RateLimited("slow down", retry_after=17),
        AnswerTooLarge("too large", size=1234, limit=1000),
    ],
)
def test_a_worker_answers_a_carried_error_as_one_process_answers_the_error(
    error: AtoposError,
) -> None:
    """Status, headers and body (message, `size`), and attributes such as `retry_after`:
    a worker's HTTP answer is the one the single process gives."""
    (reply,) = FrameReader().feed(encode_frame((7, False, error_reply(error))))
    rebuilt = error_from_reply(reply[2])
    assert isinstance(rebuilt, AtoposError)
    assert vars(rebuilt) == vars(error)
    there, here = response_for(rebuilt), response_for(error)
    assert (there.status_code, there.body) == (here.status_code, here.body)
    assert there.headers.items() == here.headers.items()
