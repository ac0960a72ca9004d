// The key-knowledge proof (docs/protocol/access.md, "Key-knowledge proof"), on WebCrypto:
// the twin of src/atopos/crypto/access_proof.py, held to tests/vectors/access_proof.json.
// The access key is an Ed25519 key pair whose private key is
// HKDF-SHA256(link key [|| Argon2id(passphrase)], empty salt, "atopos/access-key/v1", 32);
// the creator uploads its public half, a reader signs "atopos/access-proof/v1" || 0x00 ||
// secret id || challenge with it at the ticket step, or "atopos/stamp-proof/v1" || 0x00 ||
// secret id || stamp over a stamp it made (its own label: a signature over a "challenge" is
// never one over a stamp, so a relay cannot have a reader sign a stamp it spends later).

import { decode } from "./base64url.js";
import { derivePassphraseKey } from "./kdf.js";

export const ACCESS_KEY_INFO = new TextEncoder().encode("atopos/access-key/v1");
export const ACCESS_PROOF_LABEL = new TextEncoder().encode("atopos/access-proof/v1\0");
// Without its 0x00 separator (appended where it is used), as constants.json states it.
export const STAMP_PROOF_LABEL = new TextEncoder().encode("atopos/stamp-proof/v1");
const SECRET_ID_BYTES = 16;
// PKCS #8 wrapping of a raw 32-byte Ed25519 private key (RFC 8410): WebCrypto imports no
// raw private keys.
const PKCS8_ED25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);

/** The 32-byte access seed (the Ed25519 private key) of a link key and passphrase key. */
export async function accessSeed(linkKey, passphraseKey = null) {
  const ikm = new Uint8Array(linkKey.length + (passphraseKey?.length ?? 0));
  ikm.set(linkKey);
  if (passphraseKey !== null) ikm.set(passphraseKey, linkKey.length);
  try {
    const hkdf = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
    const bits = await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: ACCESS_KEY_INFO },
      hkdf,
      256,
    );
    return new Uint8Array(bits);
  } finally {
    ikm.fill(0);
  }
}

/**
 * The access key of `linkKey` and, when `argon2` ({memoryKib, iterations, lanes, salt}) is
 * given, of `passphrase` stretched with it: {publicKey (32 bytes), signProof(secretId,
 * challenge) -> 64 bytes, signStampProof(secretId, stamp) -> 64 bytes}. The private key is
 * imported non-extractable once its public half is known.
 */
export async function accessKey(linkKey, { passphrase = null, argon2 = null } = {}) {
  let passphraseKey = null;
  if (argon2 !== null) {
    if (passphrase === null) throw new RangeError("this access key needs the passphrase");
    passphraseKey = await derivePassphraseKey(passphrase, argon2.salt, argon2);
  }
  try {
    return await accessKeyOf(linkKey, passphraseKey);
  } finally {
    passphraseKey?.fill(0);
  }
}

/** `accessKey` from the Argon2id output itself (the creator has it already). */
export async function accessKeyOf(linkKey, passphraseKey = null) {
  const seed = await accessSeed(linkKey, passphraseKey);
  const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + seed.length);
  pkcs8.set(PKCS8_ED25519_PREFIX);
  pkcs8.set(seed, PKCS8_ED25519_PREFIX.length);
  seed.fill(0);
  try {
    // Imported extractable once, only to read the public half (JWK `x`) ...
    const extractable = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", extractable);
    const publicKey = decode(jwk.x);
    // ... and kept only non-extractable.
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", false, ["sign"]);
    return {
      publicKey,
      async signProof(secretId, challenge) {
        const message = accessProofMessage(secretId, challenge);
        return new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, message));
      },
      async signStampProof(secretId, stamp) {
        const message = stampProofMessage(secretId, stamp);
        return new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, message));
      },
    };
  } finally {
    pkcs8.fill(0);
  }
}

/** "atopos/access-proof/v1" || 0x00 || secret id (16 bytes) || UTF-8(challenge). */
export function accessProofMessage(secretId, challenge) {
  return labelledMessage(ACCESS_PROOF_LABEL, secretId, challenge);
}

/** "atopos/stamp-proof/v1" || 0x00 || secret id (16 bytes) || UTF-8(stamp). */
export function stampProofMessage(secretId, stamp) {
  const label = new Uint8Array(STAMP_PROOF_LABEL.length + 1);
  label.set(STAMP_PROOF_LABEL);
  return labelledMessage(label, secretId, stamp);
}

function labelledMessage(label, secretId, text) {
  if (!(secretId instanceof Uint8Array) || secretId.length !== SECRET_ID_BYTES) {
    throw new RangeError("a secret id is 16 bytes");
  }
  const bytes = new TextEncoder().encode(text);
  const message = new Uint8Array(label.length + SECRET_ID_BYTES + bytes.length);
  message.set(label);
  message.set(secretId, label.length);
  message.set(bytes, label.length + SECRET_ID_BYTES);
  return message;
}
