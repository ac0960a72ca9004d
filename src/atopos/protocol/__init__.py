"""Sans-I/O wire formats and state machines: they take bytes and events and return bytes,
requests or outcomes, and never open a socket, read a clock or draw random bytes.

Secrets: `answers` (what an HTTP answer of the server means to a client) and `access_path`
(the reader's challenge -> proof of work -> ticket -> reveal walk). Rooms: `room_*`
(docs/protocol/rooms.md).
"""
