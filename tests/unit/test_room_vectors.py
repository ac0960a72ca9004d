"""The room crypto and member machine against tests/vectors/rooms/ (rooms.md section 16).

The files are written by an independent implementation of the spec (except transcript.json,
a recording replayed here); the browser client runs the same files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from tests.rooms_support import HostileReplay, seat_takeover_replays

from atopos.crypto.base64url import b64url_decode as raw
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.room_keys import (
    MemberKeys,
    ProofKind,
    RoomSecrets,
    derive_epoch_secret,
    derive_proof_key,
    derive_room_secrets,
    end_proof_message,
    join_proof_message,
    member_auth_message,
    member_auth_tag,
    open_invite_link,
    open_metadata,
    profile_aad,
    room_name_aad,
    seal_invite_link,
    seal_metadata,
)
from atopos.crypto.room_message import decrypt_message, encrypt_message, message_aad
from atopos.crypto.room_published_seeds import (
    open_published_seeds,
    published_seeds_aad,
    published_seeds_key,
    seal_published_seeds,
)
from atopos.crypto.room_ratchet import (
    EpochChains,
    derive_chain_key,
    derive_epoch_link,
    message_key_from_material,
    step_chain,
)
from atopos.crypto.room_roster import RosterEntry, identity_hash, roster_hash
from atopos.crypto.room_safety import safety_code
from atopos.crypto.room_seal import open_secret, seal_aad, seal_secret
from atopos.crypto.room_transcript import (
    CommitReason,
    JoinEvidence,
    SealedEntry,
    commit_auth_message,
    commit_signing_input,
    confirm_tag,
    joins_hash,
    member_tag,
    membership_after,
    membership_start,
    message_signing_input,
    sealed_hash,
    transcript_after,
    transcript_start,
    verify_member_tag,
)
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import MessageReceived
from atopos.protocol.room_link import parse_room_link
from atopos.protocol.room_member import RoomMember
from atopos.protocol.room_wire import b64, decode_client_frame, decode_relay_frame

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rooms"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text("utf-8"))


class _Stream:
    def __init__(self, label: str) -> None:
        self.label, self.counter = label, 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(
                f"atopos room vectors/{self.label}/{self.counter}".encode()
            ).digest()
            self.counter += 1
        return out[:size]


def test_vector_files_are_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_room_vectors", VECTORS / "generate_room_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, build in generator.FILES.items():
        assert (VECTORS / name).read_text("utf-8") == generator.dump(build()), name


@pytest.mark.parametrize("case", _load("key_schedule.json")["cases"])
def test_key_schedule(case: dict[str, Any]) -> None:
    room_id, challenge = raw(case["room_id"]), raw(case["challenge"])
    secrets = {
        ProofKind.LINK: raw(case["s_link"]),
        ProofKind.INVITE: raw(case["invite_secret"]),
        ProofKind.CREATOR: raw(case["creator_secret"]),
    }
    for kind, secret in secrets.items():
        expected = case["proofs"][kind.name.lower()]
        key = derive_proof_key(kind, secret, room_id)
        assert b64(key.private_bytes_raw()) == expected["seed"]
        assert b64(key.public_key().public_bytes_raw()) == expected["verifier"]
        assert b64(join_proof_message(kind, room_id, challenge)) == expected["message"]
        assert b64(key.sign(join_proof_message(kind, room_id, challenge))) == expected["sig"]
    creator = derive_proof_key(ProofKind.CREATOR, secrets[ProofKind.CREATOR], room_id)
    assert b64(creator.sign(end_proof_message(room_id, challenge))) == case["end_proof"]
    sealed_link = seal_invite_link(secrets[ProofKind.INVITE], room_id, secrets[ProofKind.LINK])
    assert b64(sealed_link) == case["sealed_link"]
    assert open_invite_link(secrets[ProofKind.INVITE], room_id, sealed_link) == raw(case["s_link"])
    room = derive_room_secrets(raw(case["s_link"]), raw(case["s_relay"]), room_id)
    assert b64(room.room_secret) == case["room_secret"]
    assert b64(room.member_auth_key) == case["member_auth_key"]
    assert b64(room.metadata_key) == case["metadata_key"]
    assert b64(room.epoch_base) == case["epoch_base"]
    name_aad = room_name_aad(room_id, case["knock"], case["invite_only"])
    sealed_name = seal_metadata(
        room, case["room_name"], name_aad, lambda n: raw(case["name_nonce"])
    )
    assert b64(sealed_name) == case["sealed_room_name"]
    assert open_metadata(room, sealed_name, name_aad) == case["room_name"]
    with pytest.raises(DecryptionFailed):  # another mode: the name does not open
        open_metadata(room, sealed_name, room_name_aad(room_id, not case["knock"], False))
    member = case["member"]
    aad = profile_aad(room_id, raw(member["sign_key"]))
    profile = seal_metadata(room, member["name"], aad, lambda n: raw(member["profile_nonce"]))
    assert b64(profile) == member["profile"]
    message = member_auth_message(
        room_id, challenge, raw(member["sign_key"]), raw(member["seal_key"]), profile
    )
    assert b64(member_auth_tag(room, message)) == member["auth"]


@pytest.mark.parametrize("case", _load("sealing.json")["cases"])
def test_sealing(case: dict[str, Any]) -> None:
    aad = seal_aad(raw(case["room_id"]), case["epoch"], case["index"], raw(case["roster_hash"]))
    assert b64(aad) == case["aad"]
    ephemeral, sealed = seal_secret(
        raw(case["recipient_public"]),
        raw(case["epoch_secret"]),
        raw(case["ephemeral_private"]),
        aad,
    )
    assert (b64(ephemeral), b64(sealed)) == (case["ephemeral_public"], case["sealed"])
    recipient = MemberKeys(bytes(32), raw(case["recipient_private"]))
    assert open_secret(recipient, ephemeral, sealed, aad) == raw(case["epoch_secret"])
    for bad in case["invalid_sealed"]:
        with pytest.raises(DecryptionFailed):
            open_secret(recipient, ephemeral, raw(bad), aad)


@pytest.mark.parametrize("case", _load("ratchet.json")["cases"])
def test_ratchet(case: dict[str, Any]) -> None:
    secret, room_id = raw(case["epoch_secret"]), raw(case["room_id"])
    chain_key = derive_chain_key(secret, room_id, case["epoch"], case["sender"])
    assert b64(chain_key) == case["chain_key_0"]
    assert b64(derive_epoch_link(secret, room_id)) == case["epoch_link"]
    for step in case["steps"]:
        material, chain_key = step_chain(chain_key)
        key = message_key_from_material(step["counter"], material)
        assert (b64(material), b64(key.key), b64(key.nonce)) == (
            step["material"],
            step["key"],
            step["nonce"],
        )
    # the same keys through the receiving side, out of order
    chains = EpochChains(secret, room_id, case["epoch"], [case["sender"], 99], own_index=99)
    for step in reversed(case["steps"]):
        assert b64(chains.receive_key(case["sender"], step["counter"]).key) == step["key"]


@pytest.mark.parametrize("case", _load("messages.json")["cases"])
def test_messages(case: dict[str, Any]) -> None:
    from atopos.crypto.room_ratchet import MessageKey

    room_id = raw(case["room_id"])
    aad = message_aad(room_id, case["epoch"], case["sender"], case["counter"])
    assert b64(aad) == case["aad"]
    key = MessageKey(case["counter"], raw(case["key"]), raw(case["nonce"]))
    ciphertext = encrypt_message(key, aad, case["body"].encode("utf-8"))
    assert b64(ciphertext) == case["ct"]
    assert len(ciphertext) == case["padded_length"] + 16
    assert decrypt_message(key, aad, ciphertext) == case["body"].encode("utf-8")
    signer = MemberKeys(raw(case["sign_seed"]), bytes(32))
    signed = message_signing_input(
        room_id, case["epoch"], case["sender"], case["counter"], ciphertext
    )
    assert b64(signer.sign(signed)) == case["sig"]


def test_commit() -> None:
    case = _load("commits.json")
    room_id = raw(case["room_id"])
    roster = [
        RosterEntry(
            m["index"],
            raw(m["identity"]),
            raw(m["sign_key"]),
            raw(m["seal_key"]),
            raw(m["profile"]),
        )
        for m in case["roster"]
    ]
    assert b64(roster_hash(roster)) == case["roster_hash"]
    assert b64(identity_hash(roster)) == case["identity_hash"]
    joiner = roster[-1]
    join = case["join"]
    joins = [
        JoinEvidence(
            joiner.index,
            joiner.sign_key,
            joiner.seal_key,
            raw(join["nonce"]),
            raw(join["auth"]),
            joiner.profile,
            join["admitted_by"],
            raw(join["admission"]),
        )
    ]
    assert b64(joins_hash(joins)) == case["joins_hash"]
    epoch_secret = derive_epoch_secret(
        raw(case["previous_epoch_link"]),
        raw(case["fresh"]),
        room_id,
        case["epoch"],
        roster_hash(roster),
    )
    assert b64(epoch_secret) == case["epoch_secret"]
    sealed = []
    for item in case["sealed"]:
        entry = next(e for e in roster if e.index == item["index"])
        aad = seal_aad(room_id, case["epoch"], entry.index, roster_hash(roster))
        ephemeral, box = seal_secret(
            entry.seal_key, epoch_secret, raw(item["ephemeral_private"]), aad
        )
        assert (b64(ephemeral), b64(box)) == (item["ephemeral"], item["secret"])
        sealed.append(SealedEntry(entry.index, ephemeral, box))
    assert b64(sealed_hash(sealed)) == case["sealed_hash"]
    signing_input = commit_signing_input(
        room_id,
        case["epoch"],
        0,
        CommitReason.CHANGE,
        raw(case["transcript"]),
        raw(case["membership"]),
        roster_hash(roster),
        joins_hash(joins),
        sealed_hash(sealed),
    )
    assert b64(signing_input) == case["signing_input"]
    committer = MemberKeys(raw(case["roster"][0]["sign_seed"]), bytes(32))
    assert b64(committer.sign(signing_input)) == case["sig"]
    room = RoomSecrets(room_id, bytes(32), raw(case["member_auth_key"]), bytes(32), bytes(32))
    assert b64(member_auth_tag(room, commit_auth_message(signing_input))) == case["room_auth"]
    previous_link = raw(case["previous_epoch_link"])
    assert b64(member_tag(previous_link, room_id, signing_input)) == case["member_tag"]
    assert verify_member_tag(previous_link, room_id, signing_input, raw(case["member_tag"]))
    assert not verify_member_tag(bytes(32), room_id, signing_input, raw(case["member_tag"]))
    after = transcript_after(signing_input)
    assert b64(after) == case["transcript_after"]
    assert b64(confirm_tag(epoch_secret, room_id, after)) == case["confirm"]
    assert (
        b64(membership_after(raw(case["membership"]), CommitReason.CHANGE, case["epoch"], roster))
        == case["membership_after"]
    )
    assert membership_after(raw(case["membership"]), CommitReason.UPDATE, 1, roster) == raw(
        case["membership"]
    )
    assert b64(transcript_start(room_id)) == case["transcript_start"]
    assert b64(membership_start(room_id)) == case["membership_start"]


@pytest.mark.parametrize("case", _load("safety.json")["cases"])
def test_safety_code(case: dict[str, Any]) -> None:
    assert safety_code(raw(case["room_id"]), raw(case["membership"])) == case["code"]


@pytest.mark.parametrize("case", _load("published_seeds.json")["cases"])
def test_published_seeds(case: dict[str, Any]) -> None:
    room_id, link = raw(case["room_id"]), raw(case["epoch_link"])
    epoch, index = case["epoch"], case["index"]
    seeds = [raw(seed) for seed in case["seeds"]]
    assert b64(published_seeds_key(link, room_id, index)) == case["key"]
    assert b64(published_seeds_aad(room_id, epoch, index)) == case["aad"]
    sealed = seal_published_seeds(link, room_id, epoch, index, seeds, lambda n: raw(case["nonce"]))
    assert b64(sealed) == case["sealed_seeds"]
    assert open_published_seeds(link, room_id, epoch, index, sealed) == seeds
    for bad in case["invalid"]:
        with pytest.raises(DecryptionFailed):
            open_published_seeds(
                link, room_id, bad["epoch"], bad["index"], raw(bad["sealed_seeds"])
            )
    with pytest.raises(DecryptionFailed):  # another epoch link opens nothing
        open_published_seeds(bytes(32), room_id, epoch, index, sealed)


@pytest.mark.parametrize("member", _load("transcript.json")["members"], ids=lambda m: m["name"])
def test_transcript_replays_to_the_same_frames(member: dict[str, Any]) -> None:
    link = parse_room_link(member["link"])
    replay = RoomMember(link, member["name"], _Stream(member["random_label"]))
    sent: list[str] = []
    texts: list[list[Any]] = []
    for step in member["steps"]:
        if "receive" in step:
            for event in replay.receive(step["receive"], 0):
                if isinstance(event, MessageReceived):
                    texts.append([event.sender, event.text])
        else:
            getattr(replay, step["command"])(*step["args"])
        sent += replay.outgoing()
    assert sent == member["sent"]
    assert texts == member["texts"]
    assert replay.safety_code == member["safety_code"]


_INVALID = _load("invalid_frames.json")


@pytest.mark.parametrize(
    ("side", "case"),
    [("client", c) for c in _INVALID["client"]] + [("relay", c) for c in _INVALID["relay"]],
    ids=lambda value: value["name"] if isinstance(value, dict) else value,
)
def test_invalid_frames(side: str, case: dict[str, Any]) -> None:
    decode = decode_client_frame if side == "client" else decode_relay_frame
    if case["error"] is None:
        decode(case["frame"])
        return
    with pytest.raises(RoomProtocolError) as caught:
        decode(case["frame"])
    assert caught.value.code == case["error"]


@pytest.mark.parametrize(
    "case", seat_takeover_replays(_load("transcript.json")), ids=lambda case: case.name
)
def test_a_hostile_relay_cannot_take_over_a_departed_members_seat(
    case: HostileReplay,
) -> None:
    """rooms.md 7.3 and 14: the recorded room's alice, shown a commit the relay made in
    carol's name with her signing seed (and `left` withheld), or carol's copied state
    speaking after her `left`, refuses it; the same frames go to the browser client."""
    alice = next(m for m in _load("transcript.json")["members"] if m["name"] == "alice")
    replay = RoomMember(parse_room_link(alice["link"]), "alice", _Stream(alice["random_label"]))
    *before, hostile = case.steps
    for step in before:
        if "receive" in step:
            replay.receive(str(step["receive"]), 0)
        else:
            getattr(replay, str(step["command"]))(*step["args"])  # type: ignore[misc]
        replay.outgoing()
    epoch = replay.epoch
    assert epoch is not None
    if case.error is None:
        replay.receive(str(hostile["receive"]), 0)
        assert replay.epoch == epoch + 1
        return
    with pytest.raises(RoomProtocolError) as caught:
        replay.receive(str(hostile["receive"]), 0)
    assert caught.value.code == case.error
    assert replay.epoch == epoch
