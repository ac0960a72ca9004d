// The roster of an epoch and its hashes (rooms.md section 6), as crypto/room_roster.py.
// An entry is {index, identity, signKey, sealKey, profile}; entries are sorted by index.

import { bytesEqual, bytesOf, concatBytes, u32 } from "./room-bytes.js";
import { sha256 } from "./room-webcrypto.js";

const ROSTER_LABEL = bytesOf("atopos/room/v1/roster\0");
const IDENTITY_LABEL = bytesOf("atopos/room/v1/identities\0");

function count(roster) {
  for (let i = 1; i < roster.length; i++) {
    if (!(roster[i - 1].index < roster[i].index)) {
      throw new RangeError("roster entries must be sorted by index without repeats");
    }
  }
  return u32(roster.length);
}

export function rosterHash(roster) {
  const parts = [ROSTER_LABEL, count(roster)];
  for (const e of roster) parts.push(u32(e.index), e.identity, e.signKey, e.sealKey, e.profile);
  return sha256(concatBytes(parts));
}

export function identityHash(roster) {
  const parts = [IDENTITY_LABEL, count(roster)];
  for (const e of roster) parts.push(u32(e.index), e.identity);
  return sha256(concatBytes(parts));
}

/** True when two entries hold the same index and bytes. */
export function entriesEqual(a, b) {
  return (
    a !== undefined &&
    b !== undefined &&
    a.index === b.index &&
    bytesEqual(a.identity, b.identity) &&
    bytesEqual(a.signKey, b.signKey) &&
    bytesEqual(a.sealKey, b.sealKey) &&
    bytesEqual(a.profile, b.profile)
  );
}

export function rostersEqual(a, b) {
  return a.length === b.length && a.every((entry, i) => entriesEqual(entry, b[i]));
}
