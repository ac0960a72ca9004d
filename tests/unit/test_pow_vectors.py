"""tests/vectors/pow.json against atopos.crypto.pow (the browser tests run the same file
against pow-worker.js): the hash of each challenge and nonce, its leading zero bits, which
nonces pass, and the smallest nonce that does."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from atopos.crypto import pow as proof_of_work

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
POW: dict[str, Any] = json.loads((VECTORS / "pow.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", POW["vectors"], ids=[v["name"] for v in POW["vectors"]])
def test_pow_vector(vector: dict[str, Any]) -> None:
    challenge = vector["challenge"].encode("utf-8")
    bits = vector["bits"]
    for entry in vector["nonces"]:
        digest = hashlib.sha256(b"%s:%d" % (challenge, entry["nonce"])).digest()
        assert digest.hex() == entry["sha256"]
        assert proof_of_work.leading_zero_bits(digest) == entry["leading_zero_bits"]
        assert proof_of_work.verify(challenge, entry["nonce"], bits) is entry["passes"]
    assert proof_of_work.solve(challenge, bits) == vector["first_nonce"]


def test_out_of_range_nonces_never_pass() -> None:
    assert POW["max_nonce"] == proof_of_work.MAX_NONCE
    for nonce in POW["out_of_range_nonces"]:
        assert proof_of_work.verify(b"c", nonce, 0) is False


def test_the_vectors_cover_passing_and_failing_nonces() -> None:
    passes = [e["passes"] for v in POW["vectors"] for e in v["nonces"] if v["bits"] > 0]
    assert True in passes
    assert False in passes


def test_the_file_is_what_its_generator_writes() -> None:
    generator = runpy.run_path(str(VECTORS / "generate_pow_vectors.py"))
    assert generator["build"]() == POW
