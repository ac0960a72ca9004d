"""The envelope test vectors (tests/vectors/envelope*.json) read back into what the Python
envelope API takes: metadata, Argon2 parameters and the vector's random bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atopos.crypto.envelope import DEFAULT_ARGON2, Argon2Params, Metadata

VECTORS = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text("utf-8"))
    return vectors


class Replay:
    """A `random_bytes` that hands out a fixed byte string in order and checks it is used up."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def __call__(self, size: int) -> bytes:
        piece = self.data[self.offset : self.offset + size]
        assert len(piece) == size, "the vector has too few random bytes"
        self.offset += size
        return piece

    @property
    def is_used_up(self) -> bool:
        return self.offset == len(self.data)


def metadata_of(vector: dict[str, Any]) -> Metadata:
    record = vector["metadata"]
    return Metadata(
        kind=record["kind"],
        size=record["size"],
        name=record.get("name"),
        media_type=record.get("type"),
    )


def argon2_of(vector: dict[str, Any]) -> Argon2Params:
    return DEFAULT_ARGON2 if vector["argon2"] is None else Argon2Params(**vector["argon2"])
