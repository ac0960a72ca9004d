// A leaving member's signing seeds, sealed for the members of its epoch (rooms.md section
// 11.4), as crypto/room_published_seeds.py:
//   key    = HKDF(epoch_link[n], salt = room_id, info = "atopos/room/v1/published-seeds" || u32(index))
//   aad    = "atopos/room/v1/published-seeds\0" || room_id || u64(n) || u32(index)
//   sealed = nonce(12, random) || AES-256-GCM(key, nonce, seed_1 || … || seed_k, aad)
// The members of epoch n hold epoch_link[n] (deniability needs them to read the seeds); the
// relay does not, so it cannot sign with them while it withholds the leaver's `left`.

import { bytesOf, concatBytes, u32, u64 } from "./room-bytes.js";
import { RoomDecryptionFailed } from "./room-errors.js";
import { aesGcmDecrypt, aesGcmEncrypt, hkdf } from "./room-webcrypto.js";

export const MAX_PUBLISHED_SEEDS = 64;
const SEED_BYTES = 32;
const NONCE_BYTES = 12;
const OVERHEAD = NONCE_BYTES + 16;
export const MIN_SEALED_SEEDS_BYTES = OVERHEAD + SEED_BYTES;
export const MAX_SEALED_SEEDS_BYTES = OVERHEAD + SEED_BYTES * MAX_PUBLISHED_SEEDS;
const INFO = "atopos/room/v1/published-seeds";
const AAD_LABEL = bytesOf("atopos/room/v1/published-seeds\0");

/** How many seeds `size` sealed bytes hold, or null unless size = 12 + 32k + 16, 1 ≤ k ≤ 64. */
export function sealedSeedCount(size) {
  const count = (size - OVERHEAD) / SEED_BYTES;
  return Number.isInteger(count) && count >= 1 && count <= MAX_PUBLISHED_SEEDS ? count : null;
}

/** HKDF(epoch_link, salt = room_id, info = label || u32(index)). */
export function publishedSeedsKey(epochLink, roomId, index) {
  return hkdf(epochLink, roomId, concatBytes([bytesOf(INFO), u32(index)]));
}

/** label || room_id || u64(epoch) || u32(index). */
export function publishedSeedsAad(roomId, epoch, index) {
  return concatBytes([AAD_LABEL, roomId, u64(epoch), u32(index)]);
}

/** nonce || AES-256-GCM(key, nonce, the seeds concatenated, aad): what `leave` carries. */
export async function sealPublishedSeeds(epochLink, roomId, epoch, index, seeds, randomBytes) {
  if (seeds.length < 1 || seeds.length > MAX_PUBLISHED_SEEDS) {
    throw new RangeError(`a member publishes 1 to ${MAX_PUBLISHED_SEEDS} seeds`);
  }
  if (!seeds.every((seed) => seed.length === SEED_BYTES)) {
    throw new RangeError("a seed is 32 bytes");
  }
  const plaintext = concatBytes(seeds);
  const key = await publishedSeedsKey(epochLink, roomId, index);
  const nonce = randomBytes(NONCE_BYTES);
  try {
    const sealed = await aesGcmEncrypt(
      key,
      nonce,
      plaintext,
      publishedSeedsAad(roomId, epoch, index),
    );
    return concatBytes([nonce, sealed]);
  } finally {
    key.fill(0);
    plaintext.fill(0);
  }
}

/** The seeds member `index` published leaving epoch `epoch`, for a holder of that epoch's
 * link; RoomDecryptionFailed for anything else. */
export async function openPublishedSeeds(epochLink, roomId, epoch, index, sealed) {
  if (sealedSeedCount(sealed.length) === null) throw new RoomDecryptionFailed();
  const key = await publishedSeedsKey(epochLink, roomId, index);
  try {
    const plaintext = await aesGcmDecrypt(
      key,
      sealed.subarray(0, NONCE_BYTES),
      sealed.subarray(NONCE_BYTES),
      publishedSeedsAad(roomId, epoch, index),
    );
    const seeds = [];
    for (let at = 0; at < plaintext.length; at += SEED_BYTES) {
      seeds.push(plaintext.slice(at, at + SEED_BYTES));
    }
    return seeds;
  } finally {
    key.fill(0);
  }
}
