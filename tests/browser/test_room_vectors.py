"""Every room vector file (tests/vectors/rooms/, rooms.md section 16) against the browser's
room modules, loaded from the running server into a page as the room page loads them.

Each check runs in the page and returns the list of mismatches it found (empty: the JS
gives the vector's bytes). transcript.json is replayed step by step into a JS RoomMember
built from the same link, display name and random stream, which must send exactly the
recorded frames, read the same texts and show the same safety code. The member transition
table of room-member.js must equal protocol/room_member.py's TRANSITIONS.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from atopos.protocol.room_member import TRANSITIONS
from tests.browser.harness import open_vector_page
from tests.rooms_support import HostileReplay, seat_takeover_replays
from tests.servers import ServerProcess

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rooms"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text("utf-8"))


def _stream(label: str, size: int) -> str:
    """The generator's random blocks (SHA-256 of label and counter), as base64url. Each draw
    of the generator's stream takes whole 32-byte blocks and drops what it does not use."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"atopos room vectors/{label}/{counter}".encode()).digest()
        counter += 1
    return base64.urlsafe_b64encode(out[:size]).decode().rstrip("=")


_TOOLS = """
window.roomTools = {
  load: async () => ({
    b64: await import("/static/js/base64url.js"),
    keys: await import("/static/js/room-keys.js"),
    seal: await import("/static/js/room-seal.js"),
    seeds: await import("/static/js/room-published-seeds.js"),
    ratchet: await import("/static/js/room-ratchet.js"),
    message: await import("/static/js/room-message.js"),
    roster: await import("/static/js/room-roster.js"),
    transcript: await import("/static/js/room-transcript.js"),
    safety: await import("/static/js/room-safety.js"),
    commit: await import("/static/js/room-commit.js"),
    wire: await import("/static/js/room-wire.js"),
    link: await import("/static/js/room-link.js"),
    member: await import("/static/js/room-member.js"),
    webcrypto: await import("/static/js/room-webcrypto.js"),
    device: await import("/static/js/device.js"),
  }),
  checker: () => {
    const failures = [];
    const same = (label, got, expected) => {
      if (got !== expected) failures.push(`${label}: got ${got}, expected ${expected}`);
    };
    return { failures, same };
  },
};
"""


@pytest.fixture(scope="module")
def page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, _TOOLS) as vector_page:
        yield vector_page


_KEY_SCHEDULE = """
async (c) => {
  const m = await window.roomTools.load();
  const { failures, same } = window.roomTools.checker();
  const raw = m.b64.decode, enc = m.b64.encode;
  const roomId = raw(c.room_id), challenge = raw(c.challenge);
  const secrets = {
    link: raw(c.s_link), invite: raw(c.invite_secret), creator: raw(c.creator_secret),
  };
  for (const [name, secret] of Object.entries(secrets)) {
    const kind = m.keys.ProofKind[name];
    const expected = c.proofs[name];
    same(`${name} seed`, enc(await m.keys.deriveProofSeed(kind, secret, roomId)), expected.seed);
    const key = await m.keys.deriveProofKey(kind, secret, roomId);
    same(`${name} verifier`, enc(key.publicKey), expected.verifier);
    const message = m.keys.joinProofMessage(kind, roomId, challenge);
    same(`${name} message`, enc(message), expected.message);
    same(`${name} sig`, enc(await m.webcrypto.ed25519Sign(key.privateKey, message)), expected.sig);
    same(`${name} key non-extractable`, key.privateKey.extractable, false);
  }
  const creator = await m.keys.deriveProofKey(3, secrets.creator, roomId);
  same("end proof", enc(await m.webcrypto.ed25519Sign(creator.privateKey,
    m.keys.endProofMessage(roomId, challenge))), c.end_proof);
  const sealedLink = await m.keys.sealInviteLink(secrets.invite, roomId, secrets.link);
  same("sealed link", enc(sealedLink), c.sealed_link);
  const opened = await m.keys.openInviteLink(secrets.invite, roomId, sealedLink);
  same("opened link", enc(opened), c.s_link);
  const rawSecrets = await m.keys.deriveRoomSecretBytes(secrets.link, raw(c.s_relay), roomId);
  same("room secret", enc(rawSecrets.roomSecret), c.room_secret);
  same("member auth key", enc(rawSecrets.memberAuthKey), c.member_auth_key);
  same("metadata key", enc(rawSecrets.metadataKey), c.metadata_key);
  same("epoch base", enc(rawSecrets.epochBase), c.epoch_base);
  const room = await m.keys.deriveRoomSecrets(secrets.link, raw(c.s_relay), roomId);
  same("metadata key non-extractable", room.metadataKey.extractable, false);
  const nameAad = m.keys.roomNameAad(roomId, c.knock, c.invite_only);
  const sealedName = await m.keys.sealMetadata(room, c.room_name, nameAad, () => raw(c.name_nonce));
  same("sealed room name", enc(sealedName), c.sealed_room_name);
  same("opened room name", await m.keys.openMetadata(room, sealedName, nameAad), c.room_name);
  let refused = false;
  try {
    await m.keys.openMetadata(room, sealedName, m.keys.roomNameAad(roomId, !c.knock, false));
  } catch (error) { refused = error.name === "RoomDecryptionFailed"; }
  same("another mode does not open", refused, true);
  const member = c.member;
  const aad = m.keys.profileAad(roomId, raw(member.sign_key));
  const nonce = () => raw(member.profile_nonce);
  const profile = await m.keys.sealMetadata(room, member.name, aad, nonce);
  same("profile", enc(profile), member.profile);
  const message = m.keys.memberAuthMessage(roomId, challenge, raw(member.sign_key),
    raw(member.seal_key), profile);
  same("member auth", enc(await m.keys.memberAuthTag(room, message)), member.auth);
  return failures;
}
"""

_PUBLISHED_SEEDS = """
async (c) => {
  const m = await window.roomTools.load();
  const { failures, same } = window.roomTools.checker();
  const raw = m.b64.decode, enc = m.b64.encode;
  const roomId = raw(c.room_id), link = raw(c.epoch_link);
  same("key", enc(await m.seeds.publishedSeedsKey(link, roomId, c.index)), c.key);
  same("aad", enc(m.seeds.publishedSeedsAad(roomId, c.epoch, c.index)), c.aad);
  const seeds = c.seeds.map(raw);
  const sealed = await m.seeds.sealPublishedSeeds(
    link, roomId, c.epoch, c.index, seeds, () => raw(c.nonce),
  );
  same("sealed seeds", enc(sealed), c.sealed_seeds);
  const opened = await m.seeds.openPublishedSeeds(link, roomId, c.epoch, c.index, sealed);
  same("opened seeds", JSON.stringify(opened.map(enc)), JSON.stringify(c.seeds));
  const refusals = [
    ...c.invalid.map((bad) => [bad.name, link, bad.epoch, bad.index, raw(bad.sealed_seeds)]),
    ["another epoch link", new Uint8Array(32), c.epoch, c.index, sealed],
  ];
  for (const [name, key, epoch, index, value] of refusals) {
    let refused = false;
    try {
      await m.seeds.openPublishedSeeds(key, roomId, epoch, index, value);
    } catch (error) { refused = error.name === "RoomDecryptionFailed"; }
    same(`${name} does not open`, refused, true);
  }
  return failures;
}
"""

_SEALING = """
async (c) => {
  const m = await window.roomTools.load();
  const { failures, same } = window.roomTools.checker();
  const raw = m.b64.decode, enc = m.b64.encode;
  const aad = m.seal.sealAad(raw(c.room_id), c.epoch, c.index, raw(c.roster_hash));
  same("aad", enc(aad), c.aad);
  const { ephemeral, sealed } = await m.seal.sealSecret(raw(c.recipient_public),
    raw(c.epoch_secret), raw(c.ephemeral_private), aad);
  same("ephemeral", enc(ephemeral), c.ephemeral_public);
  same("sealed", enc(sealed), c.sealed);
  const pair = await m.webcrypto.x25519FromPrivate(raw(c.recipient_private));
  same("recipient public", enc(pair.publicKey), c.recipient_public);
  const opener = { sealKey: pair.publicKey,
    sharedSecret: (eph) => m.webcrypto.x25519(pair.privateKey, eph) };
  same("opened", enc(await m.seal.openSecret(opener, ephemeral, sealed, aad)), c.epoch_secret);
  for (const bad of c.invalid_sealed) {
    let refused = false;
    try { await m.seal.openSecret(opener, ephemeral, raw(bad), aad); }
    catch (error) { refused = error.name === "RoomDecryptionFailed"; }
    same(`invalid ${bad.slice(0, 12)} refused`, refused, true);
  }
  return failures;
}
"""

_RATCHET = """
async (c) => {
  const m = await window.roomTools.load();
  const { failures, same } = window.roomTools.checker();
  const raw = m.b64.decode, enc = m.b64.encode;
  const secret = raw(c.epoch_secret), roomId = raw(c.room_id);
  let chainKey = await m.ratchet.deriveChainKey(secret, roomId, c.epoch, c.sender);
  same("chain key 0", enc(chainKey), c.chain_key_0);
  same("epoch link", enc(await m.ratchet.deriveEpochLink(secret, roomId)), c.epoch_link);
  same("confirm key", enc(await m.transcript.confirmKey(secret, roomId)), c.confirm_key);
  for (const step of c.steps) {
    const [material, next] = await m.ratchet.stepChain(chainKey);
    chainKey = next;
    const key = await m.ratchet.messageKeyFromMaterial(step.counter, material);
    same(`material ${step.counter}`, enc(material), step.material);
    same(`key ${step.counter}`, enc(key.key), step.key);
    same(`nonce ${step.counter}`, enc(key.nonce), step.nonce);
  }
  const chains = await m.ratchet.EpochChains.create(secret, roomId, c.epoch, [c.sender, 99], 99);
  for (const step of [...c.steps].reverse()) {
    const received = await chains.receiveKey(c.sender, step.counter);
    same(`received key ${step.counter}`, enc(received.key), step.key);
  }
  let replay = false;
  try { await chains.receiveKey(c.sender, c.steps[0].counter); }
  catch (error) { replay = error.name === "MessageKeyUnavailable"; }
  same("a used key is gone", replay, true);
  return failures;
}
"""

_MESSAGES = """
async (c) => {
  const m = await window.roomTools.load();
  const { failures, same } = window.roomTools.checker();
  const raw = m.b64.decode, enc = m.b64.encode;
  const roomId = raw(c.room_id);
  const aad = m.message.messageAad(roomId, c.epoch, c.sender, c.counter);
  same("aad", enc(aad), c.aad);
  const body = new TextEncoder().encode(c.body);
  same("padded length", m.message.padBody(body).length, c.padded_length);
  const key = () => ({ counter: c.counter, key: raw(c.key), nonce: raw(c.nonce) });
  const ct = await m.message.encryptMessage(key(), aad, body);
  same("ct", enc(ct), c.ct);
  same("opened", new TextDecoder().decode(await m.message.decryptMessage(key(), aad, ct)), c.body);
  const signer = await m.webcrypto.ed25519FromSeed(raw(c.sign_seed));
  same("sign key", enc(signer.publicKey), c.sign_key);
  const signed = m.transcript.messageSigningInput(roomId, c.epoch, c.sender, c.counter, ct);
  same("sig", enc(await m.webcrypto.ed25519Sign(signer.privateKey, signed)), c.sig);
  same("sig verifies", await m.webcrypto.ed25519Verify(signer.publicKey, raw(c.sig), signed), true);
  const tampered = ct.slice(); tampered[0] ^= 1;
  let refused = false;
  try { await m.message.decryptMessage(key(), aad, tampered); }
  catch (error) { refused = error.name === "RoomDecryptionFailed"; }
  same("tampered refused", refused, true);
  return failures;
}
"""

_COMMIT = """
async (c) => {
  const m = await window.roomTools.load();
  const { failures, same } = window.roomTools.checker();
  const raw = m.b64.decode, enc = m.b64.encode;
  const roomId = raw(c.room_id);
  const roster = c.roster.map((e) => ({ index: e.index, identity: raw(e.identity),
    signKey: raw(e.sign_key), sealKey: raw(e.seal_key), profile: raw(e.profile) }));
  const rosterDigest = await m.roster.rosterHash(roster);
  same("roster hash", enc(rosterDigest), c.roster_hash);
  same("identity hash", enc(await m.roster.identityHash(roster)), c.identity_hash);
  const joiner = roster[roster.length - 1];
  const joins = [{ index: joiner.index, signKey: joiner.signKey, sealKey: joiner.sealKey,
    nonce: raw(c.join.nonce), auth: raw(c.join.auth), profile: joiner.profile,
    admittedBy: c.join.admitted_by, admission: raw(c.join.admission) }];
  const joinsDigest = await m.transcript.joinsHash(joins);
  same("joins hash", enc(joinsDigest), c.joins_hash);
  const epochSecret = await m.commit.deriveEpochSecret(raw(c.previous_epoch_link), raw(c.fresh),
    roomId, c.epoch, rosterDigest);
  same("epoch secret", enc(epochSecret), c.epoch_secret);
  const sealed = [];
  for (const item of c.sealed) {
    const entry = roster.find((e) => e.index === item.index);
    const aad = m.seal.sealAad(roomId, c.epoch, entry.index, rosterDigest);
    const ephemeralPrivate = raw(item.ephemeral_private);
    const out = await m.seal.sealSecret(entry.sealKey, epochSecret, ephemeralPrivate, aad);
    same(`ephemeral ${item.index}`, enc(out.ephemeral), item.ephemeral);
    same(`sealed ${item.index}`, enc(out.sealed), item.secret);
    sealed.push({ index: entry.index, ephemeral: out.ephemeral, sealed: out.sealed });
  }
  const sealedDigest = await m.transcript.sealedHash(sealed);
  same("sealed hash", enc(sealedDigest), c.sealed_hash);
  const signingInput = m.transcript.commitSigningInput(roomId, c.epoch, 0, 2, raw(c.transcript),
    raw(c.membership), rosterDigest, joinsDigest, sealedDigest);
  same("signing input", enc(signingInput), c.signing_input);
  const committer = await m.webcrypto.ed25519FromSeed(raw(c.roster[0].sign_seed));
  same("sig", enc(await m.webcrypto.ed25519Sign(committer.privateKey, signingInput)), c.sig);
  const roomAuth = await m.webcrypto.hmac(raw(c.member_auth_key),
    m.transcript.commitAuthMessage(signingInput));
  same("room auth", enc(roomAuth), c.room_auth);
  const previousLink = raw(c.previous_epoch_link);
  same("member tag", enc(await m.transcript.memberTag(previousLink, roomId, signingInput)),
    c.member_tag);
  if (!(await m.transcript.verifyMemberTag(previousLink, roomId, signingInput,
    raw(c.member_tag)))) failures.push("member tag does not verify");
  if (await m.transcript.verifyMemberTag(new Uint8Array(32), roomId, signingInput,
    raw(c.member_tag))) failures.push("member tag verifies under another epoch link");
  const after = await m.transcript.transcriptAfter(signingInput);
  same("transcript after", enc(after), c.transcript_after);
  same("confirm", enc(await m.transcript.confirmTag(epochSecret, roomId, after)), c.confirm);
  same("membership after", enc(await m.transcript.membershipAfter(raw(c.membership), 2, c.epoch,
    roster)), c.membership_after);
  same("membership after update", enc(await m.transcript.membershipAfter(raw(c.membership), 3, 1,
    roster)), c.membership);
  same("transcript start", enc(await m.transcript.transcriptStart(roomId)), c.transcript_start);
  same("membership start", enc(await m.transcript.membershipStart(roomId)), c.membership_start);
  return failures;
}
"""

_SAFETY = """
async (c) => {
  const m = await window.roomTools.load();
  const code = await m.safety.safetyCode(m.b64.decode(c.room_id), m.b64.decode(c.membership));
  return [code, m.safety.safetyCodeLines(code)];
}
"""

_DECODE = """
async ([side, frame]) => {
  const m = await window.roomTools.load();
  try {
    if (side === "client") m.wire.decodeClientFrame(frame); else m.wire.decodeRelayFrame(frame);
    return null;
  } catch (error) {
    return error.name === "RoomProtocolError" ? error.code : `${error.name}: ${error.message}`;
  }
}
"""

_REPLAY = """
async ({ member, random, suspend = false }) => {
  const m = await window.roomTools.load();
  const codec = await import("/static/js/room-snapshot.js");
  const stream = m.b64.decode(random);
  let drawn = 0;
  const randomBytes = (size) => {
    if (drawn + size > stream.length) throw new Error("the test stream is too short");
    const out = stream.slice(drawn, drawn + size);
    drawn += Math.ceil(size / 32) * 32;
    return out;
  };
  const link = m.link.parseRoomLink(member.link);
  let replay = await m.member.RoomMember.create(link, member.name, randomBytes, {
    isSuspendable: suspend,
  });
  const sent = [];
  const texts = [];
  let suspended = 0;
  let spentRefuses = true;
  const commands = { send_text: "sendText", update: "update", leave: "leave" };
  for (const step of member.steps) {
    if (step.receive !== undefined) {
      let events;
      try {
        events = await replay.receive(step.receive, 0);
      } catch (error) {
        return { sent, texts, error: `${error.name} ${error.code}: ${error.message}` };
      }
      for (const event of events) {
        if (event.kind === "MessageReceived") texts.push([event.sender, event.text]);
      }
    } else {
      await replay[commands[step.command]](...step.args);
    }
    if (suspend && ["waiting", "active"].includes(replay.state)) {
      // Suspended with its frames still queued: the outbox goes through the bytes too.
      const bytes = codec.encodeSnapshot(replay.suspend());
      const spent = replay;
      replay = await m.member.RoomMember.resume(codec.decodeSnapshot(bytes), randomBytes);
      suspended += 1;
      try {
        await spent.receive(step.receive ?? "{}", 0);
        spentRefuses = false;
      } catch {
        // the spent member refuses every frame
      }
      if (spent.outgoing().length !== 0) spentRefuses = false;
    }
    sent.push(...replay.outgoing());
  }
  return {
    sent,
    texts,
    safetyCode: replay.safetyCode,
    state: replay.state,
    suspended,
    spentRefuses,
  };
}
"""


def _run(page: Page, script: str, argument: Any) -> Any:
    return page.evaluate(script, argument)


@pytest.mark.parametrize("case", _load("key_schedule.json")["cases"])
def test_key_schedule(page: Page, case: dict[str, Any]) -> None:
    assert _run(page, _KEY_SCHEDULE, case) == []


@pytest.mark.parametrize("case", _load("sealing.json")["cases"])
def test_sealing(page: Page, case: dict[str, Any]) -> None:
    assert _run(page, _SEALING, case) == []


@pytest.mark.parametrize("case", _load("published_seeds.json")["cases"])
def test_published_seeds(page: Page, case: dict[str, Any]) -> None:
    assert _run(page, _PUBLISHED_SEEDS, case) == []


@pytest.mark.parametrize("case", _load("ratchet.json")["cases"])
def test_ratchet(page: Page, case: dict[str, Any]) -> None:
    assert _run(page, _RATCHET, case) == []


_WIPE = """
async (c) => {
  const m = await window.roomTools.load();
  const raw = m.b64.decode;
  const chains = await m.ratchet.EpochChains.create(
    raw(c.epoch_secret), raw(c.room_id), c.epoch, [c.sender, 99], 99,
  );
  await chains.receiveKey(c.sender, 3); // leaves skipped material behind
  const link = chains.epochLink;
  const copy = chains.toSnapshot();
  chains.wipe();
  return {
    linkWiped: link.every((byte) => byte === 0),
    copyKept: m.b64.encode(copy.epochLink) === c.epoch_link,
    skippedKept: copy.skipped.length === 3 && copy.skipped.every(([, x]) => x.some(Boolean)),
  };
}
"""


def test_wiping_epoch_chains_overwrites_the_epoch_link_and_spares_a_snapshot(page: Page) -> None:
    """epoch_link chains the next epoch's secret (rooms.md section 8): a wiped EpochChains
    (a closed, left or idle-locked member) overwrites it like its chain keys; the copy the
    idle lock took stays whole."""
    case = _load("ratchet.json")["cases"][0]
    assert _run(page, _WIPE, case) == {"linkWiped": True, "copyKept": True, "skippedKept": True}


@pytest.mark.parametrize("case", _load("messages.json")["cases"])
def test_messages(page: Page, case: dict[str, Any]) -> None:
    assert _run(page, _MESSAGES, case) == []


def test_commit(page: Page) -> None:
    assert _run(page, _COMMIT, _load("commits.json")) == []


@pytest.mark.parametrize("case", _load("safety.json")["cases"])
def test_safety_code(page: Page, case: dict[str, Any]) -> None:
    groups = case["code"].split(" ")
    lines = [" ".join(groups[i : i + 4]) for i in range(0, 12, 4)]
    assert _run(page, _SAFETY, case) == [case["code"], lines]


_INVALID = _load("invalid_frames.json")


@pytest.mark.parametrize(
    ("side", "case"),
    [("client", c) for c in _INVALID["client"]] + [("relay", c) for c in _INVALID["relay"]],
    ids=lambda value: value["name"] if isinstance(value, dict) else value,
)
def test_invalid_frames(page: Page, side: str, case: dict[str, Any]) -> None:
    assert _run(page, _DECODE, [side, case["frame"]]) == case["error"]


@pytest.mark.parametrize("member", _load("transcript.json")["members"], ids=lambda m: m["name"])
def test_transcript_replays_to_the_same_frames(page: Page, member: dict[str, Any]) -> None:
    random = _stream(member["random_label"], 16384)
    result = _run(page, _REPLAY, {"member": member, "random": random})
    for got, expected in zip(result["sent"], member["sent"], strict=False):
        got_fields, expected_fields = json.loads(got), json.loads(expected)
        differing = [key for key in expected_fields if got_fields.get(key) != expected_fields[key]]
        assert got == expected, f"fields {differing} differ in {expected_fields['t']}"
    assert result.get("error") is None
    assert result["sent"] == member["sent"]
    assert result["texts"] == member["texts"]
    assert result["safetyCode"] == member["safety_code"]


@pytest.mark.parametrize("member", _load("transcript.json")["members"], ids=lambda m: m["name"])
def test_a_member_suspended_to_bytes_after_every_step_goes_on_the_same(
    page: Page, member: dict[str, Any]
) -> None:
    """Extra Lock's idle lock: RoomMember.suspend, room-snapshot.js's bytes and
    RoomMember.resume after every step (frames still queued) change nothing the member sends
    or reads, and the spent object refuses every frame."""
    random = _stream(member["random_label"], 16384)
    result = _run(page, _REPLAY, {"member": member, "random": random, "suspend": True})
    assert result.get("error") is None
    assert result["suspended"] >= len(member["steps"]) // 2
    assert result["spentRefuses"]
    assert result["sent"] == member["sent"]
    assert result["texts"] == member["texts"]
    assert result["safetyCode"] == member["safety_code"]


def test_transition_table_equals_the_python_one(page: Page) -> None:
    rows = page.evaluate(
        """async () => {
          const { TRANSITIONS } = await import("/static/js/room-member.js");
          return TRANSITIONS.map((row) => [...row]);
        }"""
    )
    python = sorted(
        [state.value, event, guard, target.value]
        for (state, event, guard), target in TRANSITIONS.items()
    )
    javascript = sorted(rows, key=lambda row: [str(item) for item in row])
    python_sorted = sorted(python, key=lambda row: [str(item) for item in row])
    assert len(rows) == len({tuple(row) for row in rows}), "the JS table repeats a row"
    assert javascript == python_sorted


_CREATE = """
async ({ random }) => {
  const m = await window.roomTools.load();
  const creation = await import("/static/js/room-creation.js");
  const stream = m.b64.decode(random);
  let drawn = 0;
  const randomBytes = (size) => {
    const out = stream.slice(drawn, drawn + size);
    drawn += Math.ceil(size / 32) * 32;
    return out;
  };
  const made = await creation.makeRoom("https://rooms.example", randomBytes, { name: "Plans" });
  return {
    body: JSON.stringify(made.creation),
    creator: made.creatorLink.text(),
    member: made.memberLink.text(),
    reparsed: m.link.parseRoomLink(made.creatorLink.text()).text(),
  };
}
"""


def test_room_creation_gives_the_recorded_upload_and_links(page: Page) -> None:
    recorded = _load("transcript.json")
    made = _run(page, _CREATE, {"random": _stream("transcript/create", 4096)})
    assert json.loads(made["body"]) == recorded["creation"]
    links = {member["name"]: member["link"] for member in recorded["members"]}
    assert made["creator"] == links["alice"]
    assert made["member"] == links["bob"]
    assert made["reparsed"] == links["alice"]


@pytest.mark.parametrize(
    "case", seat_takeover_replays(_load("transcript.json")), ids=lambda case: case.name
)
def test_a_hostile_relay_cannot_take_over_a_departed_members_seat(
    page: Page, case: HostileReplay
) -> None:
    """The frames of tests/unit/test_room_vectors.py's test of the same name, into the JS
    member: a commit in a departed member's name made by a relay with the room link is
    refused for its member tag; a departed member's own frames after its `left` are
    refused."""
    alice = next(m for m in _load("transcript.json")["members"] if m["name"] == "alice")
    member = {"link": alice["link"], "name": "alice", "steps": case.steps}
    random = _stream(alice["random_label"], 16384)
    result = _run(page, _REPLAY, {"member": member, "random": random})
    if case.error is None:
        assert result.get("error") is None
        assert result["state"] == "active"
    else:
        assert str(result.get("error")).split(":")[0] == f"RoomProtocolError {case.error}"
