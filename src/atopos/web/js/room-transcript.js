// What members sign and chain (rooms.md section 7.2 and 9), as crypto/room_transcript.py:
// fixed byte strings for commits, admissions and messages, the transcript and membership
// hashes and the confirmation tag. Nothing signed or MACed is JSON.

import { bytesEqual, bytesOf, concatBytes, u16, u32, u64, u8 } from "./room-bytes.js";
import { identityHash } from "./room-roster.js";
import { hkdf, hmac, sha256 } from "./room-webcrypto.js";

/** Why a commit starts a new epoch; its byte is signed. */
export const CommitReason = Object.freeze({ found: 1, change: 2, update: 3 });

const COMMIT_LABEL = bytesOf("atopos/room/v1/commit\0");
const COMMIT_AUTH_LABEL = bytesOf("atopos/room/v1/commit-auth\0");
const JOINS_LABEL = bytesOf("atopos/room/v1/joins\0");
const SEALED_LABEL = bytesOf("atopos/room/v1/sealed\0");
const TRANSCRIPT_LABEL = bytesOf("atopos/room/v1/transcript\0");
const TRANSCRIPT_START_LABEL = bytesOf("atopos/room/v1/transcript-start\0");
const MEMBERSHIP_LABEL = bytesOf("atopos/room/v1/membership\0");
const MEMBERSHIP_START_LABEL = bytesOf("atopos/room/v1/membership-start\0");
const MESSAGE_SIG_LABEL = bytesOf("atopos/room/v1/message-sig\0");
const ADMIT_LABEL = bytesOf("atopos/room/v1/admit\0");
const CONFIRM_INFO = bytesOf("atopos/room/v1/confirm");
const MEMBERSHIP_KEY_INFO = bytesOf("atopos/room/v1/membership-tag");
const MEMBER_TAG_LABEL = bytesOf("atopos/room/v1/member-tag\0");

/** joins: [{index, signKey, sealKey, nonce, auth, profile, admittedBy?, admission?}]. */
export function joinsHash(joins) {
  const parts = [JOINS_LABEL, u32(joins.length)];
  for (const j of joins) {
    parts.push(u32(j.index), j.signKey, j.sealKey, j.nonce, j.auth, u16(j.profile.length));
    parts.push(j.profile);
    if (j.admittedBy == null || j.admission == null) parts.push(u8(0));
    else parts.push(u8(1), u32(j.admittedBy), j.admission);
  }
  return sha256(concatBytes(parts));
}

/** sealed: [{index, ephemeral, sealed}]. */
export function sealedHash(sealed) {
  const parts = [SEALED_LABEL, u32(sealed.length)];
  for (const s of sealed) parts.push(u32(s.index), s.ephemeral, s.sealed);
  return sha256(concatBytes(parts));
}

export function commitSigningInput(
  roomId,
  epoch,
  committer,
  reason,
  transcript,
  membership,
  rosterDigest,
  joinsDigest,
  sealedDigest,
) {
  return concatBytes([
    COMMIT_LABEL,
    roomId,
    u64(epoch),
    u32(committer),
    u8(reason),
    transcript,
    membership,
    rosterDigest,
    joinsDigest,
    sealedDigest,
  ]);
}

export function commitAuthMessage(signingInput) {
  return concatBytes([COMMIT_AUTH_LABEL, signingInput]);
}

/**
 * HMAC(HKDF(epoch_link[n-1], salt room_id, ".../membership-tag"), label || signing input):
 * only members of epoch n-1 hold its link, so neither the relay nor a link holder can make
 * it, even with a departed member's published signing seed.
 */
export async function memberTag(previousLink, roomId, signingInput) {
  const key = await hkdf(previousLink, roomId, MEMBERSHIP_KEY_INFO);
  try {
    return await hmac(key, concatBytes([MEMBER_TAG_LABEL, signingInput]));
  } finally {
    key.fill(0);
  }
}

/** Constant-time check of a commit's member tag against epoch_link[n-1]. */
export async function verifyMemberTag(previousLink, roomId, signingInput, tag) {
  return bytesEqual(await memberTag(previousLink, roomId, signingInput), tag);
}

export function transcriptStart(roomId) {
  return sha256(concatBytes([TRANSCRIPT_START_LABEL, roomId]));
}

export function transcriptAfter(signingInput) {
  return sha256(concatBytes([TRANSCRIPT_LABEL, signingInput]));
}

export function membershipStart(roomId) {
  return sha256(concatBytes([MEMBERSHIP_START_LABEL, roomId]));
}

/** Unchanged by an update; otherwise SHA-256(label || previous || u64(epoch) || ids). */
export async function membershipAfter(previous, reason, epoch, roster) {
  if (reason === CommitReason.update) return previous;
  return sha256(concatBytes([MEMBERSHIP_LABEL, previous, u64(epoch), await identityHash(roster)]));
}

export async function confirmKey(epochSecret, roomId) {
  return hkdf(epochSecret, roomId, CONFIRM_INFO);
}

export async function confirmTag(epochSecret, roomId, transcript) {
  const key = await confirmKey(epochSecret, roomId);
  try {
    return await hmac(key, transcript);
  } finally {
    key.fill(0);
  }
}

export function messageSigningInput(roomId, epoch, sender, counter, ciphertext) {
  return concatBytes([
    MESSAGE_SIG_LABEL,
    roomId,
    u64(epoch),
    u32(sender),
    u64(counter),
    ciphertext,
  ]);
}

export function admissionMessage(roomId, joiner, nonce, signKey, sealKey) {
  return concatBytes([ADMIT_LABEL, roomId, u32(joiner), nonce, signKey, sealKey]);
}
