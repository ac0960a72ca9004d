// Sealing an epoch secret to one member (rooms.md section 5), as crypto/room_seal.py: an
// HPKE-like base mode from WebCrypto parts — a fresh X25519 ephemeral key per recipient,
// k = HKDF(X25519(eph, recipient), salt = eph_pub || recipient_pub, "atopos/room/v1/seal"),
// AES-256-GCM(k, 12 zero bytes, secret, aad). k encrypts one value, so the nonce is constant.

import { isValidX25519PublicKey } from "./device.js";
import { bytesOf, concatBytes, isAllZero, u32, u64 } from "./room-bytes.js";
import { RoomDecryptionFailed } from "./room-errors.js";
import { aesGcmDecrypt, aesGcmEncrypt, hkdf, x25519, x25519FromPrivate } from "./room-webcrypto.js";

export const SEALED_SECRET_BYTES = 48;
const SEAL_INFO = bytesOf("atopos/room/v1/seal");
const SEAL_AAD_LABEL = bytesOf("atopos/room/v1/seal\0");
const NONCE = new Uint8Array(12);

/** label || room_id || u64(epoch) || u32(recipient) || roster_hash. */
export function sealAad(roomId, epoch, recipient, rosterHash) {
  return concatBytes([SEAL_AAD_LABEL, roomId, u64(epoch), u32(recipient), rosterHash]);
}

function sealKey(shared, ephemeralPublic, recipientPublic) {
  return hkdf(shared, concatBytes([ephemeralPublic, recipientPublic]), SEAL_INFO);
}

/** {ephemeral (public, 32), sealed (48)} for a 32-byte secret; RangeError for a bad key. */
export async function sealSecret(recipientPublic, secret, ephemeralPrivate, aad) {
  if (secret.length !== 32) throw new RangeError("the sealed secret is 32 bytes");
  if (!(await isValidX25519PublicKey(recipientPublic))) {
    throw new RangeError("the recipient's X25519 key is not usable");
  }
  const ephemeral = await x25519FromPrivate(ephemeralPrivate);
  const shared = await x25519(ephemeral.privateKey, recipientPublic);
  const key = await sealKey(shared, ephemeral.publicKey, recipientPublic);
  shared.fill(0);
  const sealed = await aesGcmEncrypt(key, NONCE, secret, aad);
  key.fill(0);
  return { ephemeral: ephemeral.publicKey, sealed };
}

/** The secret sealed to `opener` ({sealKey, sharedSecret()}); RoomDecryptionFailed else. */
export async function openSecret(opener, ephemeralPublic, sealed, aad) {
  if (sealed.length !== SEALED_SECRET_BYTES) throw new RoomDecryptionFailed();
  let shared;
  try {
    shared = await opener.sharedSecret(ephemeralPublic);
  } catch {
    throw new RoomDecryptionFailed();
  }
  if (isAllZero(shared)) throw new RoomDecryptionFailed();
  const key = await sealKey(shared, ephemeralPublic, opener.sealKey);
  shared.fill(0);
  try {
    return await aesGcmDecrypt(key, NONCE, sealed, aad);
  } finally {
    key.fill(0);
  }
}
