// The WebCrypto operations the room protocol is built from (rooms.md "Notation"): HKDF-SHA256,
// HMAC-SHA256, SHA-256, SHA-512 (the safety code), AES-256-GCM, Ed25519 and X25519. Nothing
// here is home-made: each function is one or two crypto.subtle calls. Private keys become
// non-extractable CryptoKeys as soon as their public half is known.

import { decode } from "./base64url.js";
import { importRawPrivateKey, isValidEd25519PublicKey } from "./device.js";
import { RoomDecryptionFailed } from "./room-errors.js";

const subtle = globalThis.crypto.subtle;

/** HKDF-SHA256(ikm, salt, info) of `length` bytes (an empty salt is the RFC's zero salt). */
export async function hkdf(ikm, salt, info, length = 32) {
  const key = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: salt ?? new Uint8Array(0), info },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

/** An HMAC-SHA256 key (non-extractable) from raw bytes. */
export function hmacKey(raw) {
  return subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

/** HMAC-SHA256(key, data); `key` is raw bytes or an HMAC CryptoKey. */
export async function hmac(key, data) {
  const cryptoKey = key instanceof Uint8Array ? await hmacKey(key) : key;
  return new Uint8Array(await subtle.sign("HMAC", cryptoKey, data));
}

export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", data));
}

/** SHA-512, for the safety code only (rooms.md section 9). */
export async function sha512(data) {
  return new Uint8Array(await subtle.digest("SHA-512", data));
}

/** An AES-256-GCM key (non-extractable) from 32 raw bytes. */
export function aesKey(raw) {
  return subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function asAesKey(key) {
  return key instanceof Uint8Array ? aesKey(key) : key;
}

/** AES-256-GCM: ciphertext || 16-byte tag. */
export async function aesGcmEncrypt(key, nonce, plaintext, aad) {
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 };
  return new Uint8Array(await subtle.encrypt(params, await asAesKey(key), plaintext));
}

/** The plaintext; RoomDecryptionFailed for anything that does not open. */
export async function aesGcmDecrypt(key, nonce, ciphertext, aad) {
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 };
  try {
    return new Uint8Array(await subtle.decrypt(params, await asAesKey(key), ciphertext));
  } catch {
    throw new RoomDecryptionFailed();
  }
}

async function publicHalf(raw, algorithm, usages) {
  // WebCrypto has no "public key of this private key" call: import once extractable to read
  // the JWK's x, then keep only a non-extractable import.
  const probe = await importRawPrivateKey(raw, algorithm, usages, true);
  const jwk = await subtle.exportKey("jwk", probe);
  const privateKey = await importRawPrivateKey(raw, algorithm, usages, false);
  return { privateKey, publicKey: decode(jwk.x) };
}

/** An Ed25519 signing key from its 32-byte seed: {privateKey (non-extractable), publicKey}. */
export function ed25519FromSeed(seed) {
  return publicHalf(seed, "Ed25519", ["sign"]);
}

/** An X25519 key pair from 32 private bytes: {privateKey (non-extractable), publicKey}. */
export function x25519FromPrivate(raw) {
  return publicHalf(raw, "X25519", ["deriveBits"]);
}

export async function ed25519Sign(privateKey, message) {
  return new Uint8Array(await subtle.sign({ name: "Ed25519" }, privateKey, message));
}

const usableKeys = new Map();

function isUsableVerifyingKey(raw) {
  // The point check is BigInt arithmetic; a room checks the same few keys on every frame.
  const text = Array.from(raw, (byte) => byte.toString(16).padStart(2, "0")).join("");
  let answer = usableKeys.get(text);
  if (answer === undefined) {
    answer = isValidEd25519PublicKey(raw);
    if (usableKeys.size > 4096) usableKeys.clear();
    usableKeys.set(text, answer);
  }
  return answer;
}

/** True when `signature` verifies under `publicKey` (canonical, not small order). */
export async function ed25519Verify(publicKey, signature, message) {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false;
  if (!(publicKey instanceof Uint8Array) || !isUsableVerifyingKey(publicKey)) return false;
  try {
    const key = await subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false;
  }
}

/** X25519(privateKey, publicRaw): 32 bytes; throws for a small-order point (all zero). */
export async function x25519(privateKey, publicRaw) {
  const key = await subtle.importKey("raw", publicRaw, { name: "X25519" }, false, []);
  const bits = await subtle.deriveBits({ name: "X25519", public: key }, privateKey, 256);
  return new Uint8Array(bits);
}
