// Commits (rooms.md section 7), as protocol/room_commit.py: building one, and the checks a
// member runs before it takes the new epoch. Every check throws RoomProtocolError and
// changes nothing; the member state machine (room-member.js) decides when.

import { isValidEd25519PublicKey, isValidX25519PublicKey } from "./device.js";
import { bytesEqual } from "./room-bytes.js";
import { RoomProtocolError } from "./room-errors.js";
import { memberAuthMessage, memberAuthTag, SECRET_BYTES, verifyMemberAuth } from "./room-keys.js";
import { rosterHash, rostersEqual } from "./room-roster.js";
import { sealAad, sealSecret } from "./room-seal.js";
import {
  admissionMessage,
  CommitReason,
  commitAuthMessage,
  commitSigningInput,
  confirmTag,
  joinsHash,
  memberTag,
  sealedHash,
  transcriptAfter,
  verifyMemberTag,
} from "./room-transcript.js";
import { ed25519Verify, hkdf } from "./room-webcrypto.js";
import { bytesOf, concatBytes, u64 } from "./room-bytes.js";
import { b64, unb64 } from "./room-wire.js";

export const REASON_NAMES = Object.freeze({ 1: "found", 2: "change", 3: "update" });
const EPOCH_INFO = bytesOf("atopos/room/v1/epoch");

/** epoch_secret[n] = HKDF(ikm fresh, salt epoch_link[n-1], ".../epoch" || room || u64(n) || roster hash). */
export function deriveEpochSecret(previous, fresh, roomId, epoch, rosterDigest) {
  return hkdf(fresh, previous, concatBytes([EPOCH_INFO, roomId, u64(epoch), rosterDigest]));
}

// -- wire <-> values ------------------------------------------------------------------------

export function rosterFromWire(items) {
  const roster = items.map((item) => ({
    index: item.index,
    identity: unb64(item.identity),
    signKey: unb64(item.sign_key),
    sealKey: unb64(item.seal_key),
    profile: unb64(item.profile),
  }));
  for (let i = 1; i < roster.length; i++) {
    if (!(roster[i - 1].index < roster[i].index)) {
      throw new RoomProtocolError("bad_commit", "The roster is not sorted by index.");
    }
  }
  return roster;
}

export function rosterToWire(roster) {
  return roster.map((e) => ({
    index: e.index,
    identity: b64(e.identity),
    sign_key: b64(e.signKey),
    seal_key: b64(e.sealKey),
    profile: b64(e.profile),
  }));
}

export function joinFromWire(item) {
  return {
    index: item.index,
    signKey: unb64(item.sign_key),
    sealKey: unb64(item.seal_key),
    nonce: unb64(item.nonce),
    auth: unb64(item.auth),
    profile: unb64(item.profile),
    admittedBy: item.admitted_by ?? null,
    admission: item.admission == null ? null : unb64(item.admission),
  };
}

function joinToWire(join) {
  const item = {
    index: join.index,
    sign_key: b64(join.signKey),
    seal_key: b64(join.sealKey),
    nonce: b64(join.nonce),
    auth: b64(join.auth),
    profile: b64(join.profile),
  };
  if (join.admittedBy !== null) item.admitted_by = join.admittedBy;
  if (join.admission !== null) item.admission = b64(join.admission);
  return item;
}

export function joinsEqual(a, b) {
  return (
    a.length === b.length &&
    a.every(
      (x, i) =>
        x.index === b[i].index &&
        bytesEqual(x.signKey, b[i].signKey) &&
        bytesEqual(x.sealKey, b[i].sealKey) &&
        bytesEqual(x.nonce, b[i].nonce) &&
        bytesEqual(x.auth, b[i].auth) &&
        bytesEqual(x.profile, b[i].profile) &&
        x.admittedBy === b[i].admittedBy &&
        (x.admission === null
          ? b[i].admission === null
          : b[i].admission !== null && bytesEqual(x.admission, b[i].admission)),
    )
  );
}

/** A relayed commit as values, with the signing input it claims. */
export async function readCommit(roomId, frame) {
  const reason = CommitReason[frame.reason];
  const roster = rosterFromWire(frame.roster);
  const joins = frame.joins.map(joinFromWire);
  const sealed = frame.sealed.map((item) => ({
    index: item.index,
    ephemeral: unb64(item.ephemeral),
    sealed: unb64(item.secret),
  }));
  const transcript = unb64(frame.transcript);
  const membership = unb64(frame.membership);
  const rosterDigest = await rosterHash(roster);
  const signingInput = commitSigningInput(
    roomId,
    frame.epoch,
    frame.committer,
    reason,
    transcript,
    membership,
    rosterDigest,
    await joinsHash(joins),
    await sealedHash(sealed),
  );
  return {
    epoch: frame.epoch,
    committer: frame.committer,
    reason,
    roster,
    joins,
    sealed,
    transcript,
    membership,
    rosterDigest,
    signingInput,
    roomAuth: unb64(frame.room_auth),
    memberTag: unb64(frame.member_tag),
    confirm: unb64(frame.confirm),
    sig: unb64(frame.sig),
    entry(index) {
      return roster.find((e) => e.index === index);
    },
    sealedTo(index) {
      return sealed.find((s) => s.index === index);
    },
  };
}

// -- building -------------------------------------------------------------------------------

/**
 * Sections 7.1-7.2: {frame, signingInput, epochSecret}; `previousLink` is epoch_link[n-1]
 * (the epoch base for a founding commit): it seeds the epoch secret and keys the member tag.
 */
export async function buildCommit({
  secrets,
  committer,
  epoch,
  reason,
  roster,
  joins,
  previousLink,
  transcript,
  membership,
  signer,
  randomBytes,
}) {
  const roomId = secrets.roomId;
  const digest = await rosterHash(roster);
  const fresh = randomBytes(SECRET_BYTES);
  const epochSecret = await deriveEpochSecret(previousLink, fresh, roomId, epoch, digest);
  fresh.fill(0);
  const sealed = [];
  for (const entry of roster) {
    if (entry.index === committer) continue;
    const ephemeralPrivate = randomBytes(SECRET_BYTES);
    const { ephemeral, sealed: box } = await sealSecret(
      entry.sealKey,
      epochSecret,
      ephemeralPrivate,
      sealAad(roomId, epoch, entry.index, digest),
    );
    ephemeralPrivate.fill(0);
    sealed.push({ index: entry.index, ephemeral, sealed: box });
  }
  const signingInput = commitSigningInput(
    roomId,
    epoch,
    committer,
    reason,
    transcript,
    membership,
    digest,
    await joinsHash(joins),
    await sealedHash(sealed),
  );
  const frame = {
    t: "commit",
    epoch,
    committer,
    reason: REASON_NAMES[reason],
    transcript: b64(transcript),
    membership: b64(membership),
    roster: rosterToWire(roster),
    joins: joins.map(joinToWire),
    sealed: sealed.map((s) => ({
      index: s.index,
      ephemeral: b64(s.ephemeral),
      secret: b64(s.sealed),
    })),
    room_auth: b64(await memberAuthTag(secrets, commitAuthMessage(signingInput))),
    member_tag: b64(await memberTag(previousLink, roomId, signingInput)),
    confirm: b64(await confirmTag(epochSecret, roomId, await transcriptAfter(signingInput))),
    sig: b64(await signer.sign(signingInput)),
  };
  return { frame, signingInput, epochSecret };
}

// -- checking -------------------------------------------------------------------------------

/** Usable keys and a member-auth tag only holders of both shards can make (4.6). */
export async function joinerIsAuthentic(secrets, join) {
  if (!isValidEd25519PublicKey(join.signKey) || !(await isValidX25519PublicKey(join.sealKey))) {
    return false;
  }
  const message = memberAuthMessage(
    secrets.roomId,
    join.nonce,
    join.signKey,
    join.sealKey,
    join.profile,
  );
  return verifyMemberAuth(secrets, message, join.auth);
}

export async function checkJoins(secrets, isKnock, joins, roster, admitters) {
  for (const join of joins) {
    const entry = roster.find((e) => e.index === join.index);
    if (
      entry === undefined ||
      !bytesEqual(entry.identity, join.signKey) ||
      !bytesEqual(entry.signKey, join.signKey) ||
      !bytesEqual(entry.sealKey, join.sealKey) ||
      !bytesEqual(entry.profile, join.profile)
    ) {
      throw new RoomProtocolError("bad_commit", "A joiner is not in the roster as announced.");
    }
    if (!(await joinerIsAuthentic(secrets, join))) {
      throw new RoomProtocolError("bad_auth", "A joiner did not prove the room secret.");
    }
    if (isKnock) {
      const admitter = admitters.find((e) => e.index === join.admittedBy);
      const message = admissionMessage(
        secrets.roomId,
        join.index,
        join.nonce,
        join.signKey,
        join.sealKey,
      );
      if (
        admitter === undefined ||
        admitter.index === join.index ||
        join.admission === null ||
        !(await ed25519Verify(admitter.signKey, join.admission, message))
      ) {
        throw new RoomProtocolError("not_admitted", "A joiner was not admitted.");
      }
    }
  }
}

export async function checkUpdate(current, view) {
  const expected = current.map((e, i) =>
    e.index === view.committer && view.roster[i] !== undefined
      ? { ...e, signKey: view.roster[i].signKey, sealKey: view.roster[i].sealKey }
      : e,
  );
  if (
    view.joins.length ||
    view.roster.length !== current.length ||
    !rostersEqual(view.roster, expected)
  ) {
    throw new RoomProtocolError("bad_commit", "An update may change only its own keys.");
  }
  const fresh = view.entry(view.committer);
  if (
    fresh === undefined ||
    !isValidEd25519PublicKey(fresh.signKey) ||
    !(await isValidX25519PublicKey(fresh.sealKey))
  ) {
    throw new RoomProtocolError("bad_commit", "An update brings unusable keys.");
  }
}

export async function checkChange(secrets, isKnock, current, view, announced) {
  if (
    announced === null ||
    announced.epoch !== view.epoch ||
    announced.committer !== view.committer ||
    !rostersEqual(rosterFromWire(announced.roster), view.roster) ||
    !joinsEqual(announced.joins.map(joinFromWire), view.joins)
  ) {
    throw new RoomProtocolError("bad_commit", "The commit is not the announced change.");
  }
  const joined = new Set(view.joins.map((j) => j.index));
  const old = new Map(current.map((e) => [e.index, e]));
  for (const entry of view.roster) {
    if (
      !joined.has(entry.index) &&
      !rostersEqual([entry], old.has(entry.index) ? [old.get(entry.index)] : [])
    ) {
      throw new RoomProtocolError("bad_commit", "The commit changes a member's keys.");
    }
    if (joined.has(entry.index) && old.has(entry.index)) {
      throw new RoomProtocolError("bad_commit", "A joiner is already a member.");
    }
  }
  await checkJoins(secrets, isKnock, view.joins, view.roster, current);
}

export function checkSealedToAll(view) {
  const expected = view.roster.filter((e) => e.index !== view.committer).map((e) => e.index);
  const got = view.sealed.map((s) => s.index);
  if (expected.length !== got.length || expected.some((index, i) => index !== got[i])) {
    throw new RoomProtocolError("bad_commit", "The commit does not seal to every member.");
  }
}

export async function checkSignature(signer, view) {
  if (signer === undefined || !(await ed25519Verify(signer.signKey, view.sig, view.signingInput))) {
    throw new RoomProtocolError("bad_signature", "The commit is not signed by its committer.");
  }
}

export async function checkRoomAuth(secrets, view) {
  if (!(await verifyMemberAuth(secrets, commitAuthMessage(view.signingInput), view.roomAuth))) {
    throw new RoomProtocolError("bad_auth", "The commit was not made by a room member.");
  }
}

/**
 * Section 7.3 step 3: made by a member of the previous epoch (who holds its epoch link), not
 * by the relay with a link and a departed member's published signing seed.
 */
export async function checkMemberTag(previousLink, roomId, view) {
  if (!(await verifyMemberTag(previousLink, roomId, view.signingInput, view.memberTag))) {
    throw new RoomProtocolError("bad_auth", "The commit was not made by a member of this epoch.");
  }
}
