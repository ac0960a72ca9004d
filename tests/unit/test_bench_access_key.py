"""The wrk scripts carry the access key (create.lua) and its private seed (access.lua) of an
all-zero link key; both must be what crypto/access_proof.py derives, or the benchmark's
tickets would all be refused."""

from __future__ import annotations

import re
from pathlib import Path

from atopos.crypto.access_proof import (
    ACCESS_KEY_INFO,
    ACCESS_PROOF_LABEL,
    STAMP_PROOF_LABEL,
    AccessSigner,
)
from atopos.crypto.base64url import b64url_encode
from atopos.crypto.hkdf import derive_key

WRK = Path(__file__).resolve().parents[2] / "bench" / "wrk"


def test_the_wrk_scripts_hold_the_all_zero_link_keys_access_key() -> None:
    seed = re.search(r'SEED_HEX = "([0-9a-f]{64})"', (WRK / "access.lua").read_text())
    public = re.search(r"access_key=([A-Za-z0-9_-]{43})", (WRK / "create.lua").read_text())
    assert seed is not None
    assert public is not None
    assert bytes.fromhex(seed.group(1)) == derive_key(bytes(32), info=ACCESS_KEY_INFO)
    assert public.group(1) == b64url_encode(AccessSigner(bytes(32)).public_key)


def test_the_wrk_scripts_sign_challenges_and_stamps_under_their_own_labels() -> None:
    script = (WRK / "access.lua").read_text()
    labels = dict(re.findall(r'^local (LABEL|STAMP_LABEL) = "([^"]*)\\0"$', script, re.MULTILINE))
    assert labels["LABEL"].encode() + b"\x00" == ACCESS_PROOF_LABEL
    assert labels["STAMP_LABEL"].encode() + b"\x00" == STAMP_PROOF_LABEL
    # flow.lua signs its stamps with the stamp label, its challenges with the challenge one.
    flow = (WRK / "flow.lua").read_text()
    assert "access.stamp_proof(id, stamp)" in flow
    assert "access.proof(id, stamp)" not in flow
