// The safety code members compare out of band (rooms.md section 9), as crypto/room_safety.py:
// h = SHA-512("atopos/room/v1/safety\0" || room_id || membership); for i in 0..11 the
// big-endian 40-bit integer h[5i .. 5i+5] mod 100000 is one group of 5 digits; the code is
// the 12 groups joined by single spaces (60 digits: short codes fall to a birthday search).

import { bytesOf, concatBytes } from "./room-bytes.js";
import { sha512 } from "./room-webcrypto.js";

export const SAFETY_CODE_GROUPS = 12;
export const SAFETY_CODE_DIGITS = SAFETY_CODE_GROUPS * 5;
export const SAFETY_CODE_GROUPS_PER_LINE = 4;
const LABEL = bytesOf("atopos/room/v1/safety\0");

export async function safetyCode(roomId, membership) {
  const digest = await sha512(concatBytes([LABEL, roomId, membership]));
  const groups = [];
  for (let index = 0; index < SAFETY_CODE_GROUPS; index += 1) {
    let chunk = 0n; // big-endian u40: beyond a Number's 32-bit shifts, so a BigInt
    for (const byte of digest.subarray(5 * index, 5 * index + 5)) {
      chunk = (chunk << 8n) | BigInt(byte);
    }
    groups.push((chunk % 100000n).toString().padStart(5, "0"));
  }
  return groups.join(" ");
}

/** `code` as people compare it: three lines of four groups each. */
export function safetyCodeLines(code) {
  const groups = code.split(" ");
  const lines = [];
  for (let i = 0; i < groups.length; i += SAFETY_CODE_GROUPS_PER_LINE) {
    lines.push(groups.slice(i, i + SAFETY_CODE_GROUPS_PER_LINE).join(" "));
  }
  return lines;
}
