"""A TCP proxy on loopback that cuts the answer to a reveal: it forwards every connection to the
server byte for byte, and when the browser asks for `…/reveal`, or for `…/ticket` with
`"reveal":true` (the one-shot step or a stamp, whose answer may be the envelope), and the answer
is not JSON (a stamp answered with a challenge is, and goes through whole), it passes on the
answer's head and the first `body_bytes` of its body, then closes the connection. The browser
sees what a dropped mobile connection or a restarted proxy does to a download: the body ends
before its `Content-Length`."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from urllib.parse import urlsplit

__all__ = ["CuttingProxy"]

_HEAD_END = b"\r\n\r\n"
_JSON_HEAD = re.compile(rb"\r\ncontent-type:[ \t]*application/json", re.IGNORECASE)


class CuttingProxy:
    def __init__(self, upstream: str, body_bytes: int) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None
        assert parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._body_bytes = body_bytes
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> CuttingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream, timeout=30)
            with self._lock:
                self._sockets += [client, upstream]
            is_reveal = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, is_reveal)).start()
            threading.Thread(target=self._answers, args=(upstream, client, is_reveal)).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, is_reveal: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                # Marked before it is passed on, so the answer is already cut.
                if b"/reveal HTTP/1.1" in data or b'"reveal":true' in data:
                    is_reveal.set()
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _answers(
        self, upstream: socket.socket, client: socket.socket, is_reveal: threading.Event
    ) -> None:
        answer = b""
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if not is_reveal.is_set():
                    client.sendall(data)
                    continue
                answer += data
                head_end = answer.find(_HEAD_END)
                if head_end < 0:
                    continue
                if _JSON_HEAD.search(answer[:head_end]):
                    # Not the envelope: passed on whole (the browser asks nothing more on this
                    # connection before it has read this answer).
                    is_reveal.clear()
                    client.sendall(answer)
                    answer = b""
                    continue
                limit = head_end + len(_HEAD_END) + self._body_bytes
                if len(answer) >= limit:
                    client.sendall(answer[:limit])
                    self.cuts += 1
                    break
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
