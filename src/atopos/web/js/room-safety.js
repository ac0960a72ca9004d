// The safety code members compare out of band (rooms.md section 9), as crypto/room_safety.py:
// SHA-256("atopos/room/v1/safety\0" || room_id || membership)[0..8] as a big-endian integer
// mod 10^12, written as 12 digits in three groups of four.

import { bytesOf, concatBytes } from "./room-bytes.js";
import { sha256 } from "./room-webcrypto.js";

export const SAFETY_CODE_DIGITS = 12;
const LABEL = bytesOf("atopos/room/v1/safety\0");

export async function safetyCode(roomId, membership) {
  const digest = await sha256(concatBytes([LABEL, roomId, membership]));
  const number = new DataView(digest.buffer).getBigUint64(0) % 10n ** 12n;
  const digits = number.toString().padStart(SAFETY_CODE_DIGITS, "0");
  return `${digits.slice(0, 4)} ${digits.slice(4, 8)} ${digits.slice(8)}`;
}
