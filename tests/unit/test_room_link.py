"""Room links and room creation (rooms.md sections 2-3)."""

from __future__ import annotations

import msgspec
import pytest
from tests.rooms_support import SeededRandom, open_room

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.room_keys import ProofKind, derive_proof_key, open_invite_link
from atopos.protocol.room_creation import RoomCreation, make_room
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_link import parse_room_link
from atopos.protocol.room_member import MemberState


def test_links_round_trip_and_carry_what_they_should() -> None:
    new = make_room("https://rooms.example/base", SeededRandom("links"), invites=2, knock=True)
    creator, member = new.creator_link, new.member_link
    assert creator.text().startswith("https://rooms.example/base/r/")
    for link in (creator, member, *new.invite_links):
        assert parse_room_link(link.text()) == link
    assert creator.proof_kind is ProofKind.CREATOR
    assert member.proof_kind is ProofKind.LINK
    assert {link.proof_kind for link in new.invite_links} == {ProofKind.INVITE}
    assert "#i." in new.invite_links[0].text()
    assert member.s_link is not None
    assert member.s_link.hex() not in repr(member)


def test_the_upload_holds_no_link_secret_and_verifiers_match() -> None:
    new = make_room("https://x.example", SeededRandom("upload"), invites=1, name="Plans")
    upload = msgspec.json.encode(new.creation)
    assert msgspec.json.decode(upload, type=RoomCreation) == new.creation
    member = new.member_link
    assert member.s_link is not None
    assert new.creator_link.creator_secret is not None
    for secret in (member.s_link, new.creator_link.creator_secret):
        assert secret not in b"".join(
            b64url_decode(v)
            for v in upload.decode().replace('"', " ").split()
            if len(v) == 43 and all(c.isalnum() or c in "-_" for c in v)
        )
    room_id = member.room_id
    verifier = derive_proof_key(ProofKind.LINK, member.s_link, room_id).public_key()
    assert b64url_decode(new.creation.join_verifier) == verifier.public_bytes_raw()
    invite = new.invite_links[0]
    assert invite.invite_secret is not None
    sealed = b64url_decode(new.creation.invites[0].sealed_link)
    assert open_invite_link(invite.invite_secret, room_id, sealed) == member.s_link


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ftp://x.example/r/AAAAAAAAAAAAAAAAAAAAAA#" + "A" * 43,
        "https://x.example/s/AAAAAAAAAAAAAAAAAAAAAA#" + "A" * 43,
        "https://x.example/r/AAAAAAAAAAAAAAAAAAAAA#" + "A" * 43,
        "https://x.example/r/AAAAAAAAAAAAAAAAAAAAAA#" + "A" * 42,
        "https://x.example/r/AAAAAAAAAAAAAAAAAAAAAA#" + "A" * 43 + ".",
        "https://x.example/r/AAAAAAAAAAAAAAAAAAAAAA#" + "A" * 42 + "B",
        "https://x.example/r/AAAAAAAAAAAAAAAAAAAAAA#i." + "A" * 44,
        "https://x.example/r/AAAAAAAAAAAAAAAAAAAAAA?x=1#" + "A" * 43,
    ],
)
def test_damaged_links_are_refused(text: str) -> None:
    with pytest.raises(RoomProtocolError) as caught:
        parse_room_link(text)
    assert caught.value.code == "malformed"


def test_only_the_creator_ends_the_room_and_everyone_publishes_keys() -> None:
    room = open_room("alice", "bob")
    with pytest.raises(RoomProtocolError):
        room.members["bob"].member.end()
    room.members["alice"].member.end()
    room.relay.pump()
    assert room.relay.is_ended
    for connection in room.members.values():
        assert connection.member.state in (MemberState.LEAVING, MemberState.CLOSED)
        assert connection.member._epoch is None  # keys dropped
    left = [t for t in room.relay.fanned if '"t":"left"' in t]
    assert len(left) == 2
