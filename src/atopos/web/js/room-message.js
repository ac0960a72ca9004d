// Message encryption inside a room (rooms.md section 8.2), as crypto/room_message.py: the
// plaintext u32(len) || body || zeros is padded to the Padmé bucket (at least 512 bytes) and
// sealed with AES-256-GCM under the ratchet's one-time key; the AAD binds room, epoch,
// sender and counter.

import { paddedSize } from "./padding.js";
import { bytesOf, concatBytes, u32, u64 } from "./room-bytes.js";
import { RoomDecryptionFailed } from "./room-errors.js";
import { aesGcmDecrypt, aesGcmEncrypt } from "./room-webcrypto.js";

export const MAX_BODY_BYTES = 16384;
const AAD_LABEL = bytesOf("atopos/room/v1/message\0");

export function messageAad(roomId, epoch, sender, counter) {
  return concatBytes([AAD_LABEL, roomId, u64(epoch), u32(sender), u64(counter)]);
}

/** The padded plaintext of `body` (exported for the vectors' padded length). */
export function padBody(body) {
  if (body.length > MAX_BODY_BYTES) {
    throw new RangeError(`a message body is at most ${MAX_BODY_BYTES} bytes`);
  }
  const framed = 4 + body.length;
  const padded = new Uint8Array(paddedSize(framed));
  padded.set(u32(body.length), 0);
  padded.set(body, 4);
  return padded;
}

export async function encryptMessage(messageKey, aad, body) {
  try {
    return await aesGcmEncrypt(messageKey.key, messageKey.nonce, padBody(body), aad);
  } finally {
    messageKey.key.fill(0);
  }
}

/** The body; RoomDecryptionFailed for tampering, a wrong key or context, or bad padding. */
export async function decryptMessage(messageKey, aad, ciphertext) {
  let padded;
  try {
    padded = await aesGcmDecrypt(messageKey.key, messageKey.nonce, ciphertext, aad);
  } finally {
    messageKey.key.fill(0);
  }
  if (padded.length < 4) throw new RoomDecryptionFailed();
  const length = new DataView(padded.buffer, padded.byteOffset).getUint32(0);
  const end = 4 + length;
  if (length > MAX_BODY_BYTES || end > padded.length || padded.length !== paddedSize(end)) {
    throw new RoomDecryptionFailed();
  }
  if (padded.slice(end).some((byte) => byte !== 0)) throw new RoomDecryptionFailed();
  return padded.slice(4, end);
}
