// Extra Lock for a room in the browser: the only thing ever stored about a room, and only
// under a passphrase. Two sealed things, both AES-256-GCM under one key from
// Argon2id(passphrase) (js/kdf.js: 64 MiB, 3 passes, 4 lanes):
//
// * the record, kept in localStorage under one fixed name (which says nothing about the
//   room): the room link, the display name and the idle-lock period. A reload asks for the
//   passphrase and joins again with the opened link; a wrong passphrase opens nothing.
//   Leaving, the room's end and Panic delete it. Without Extra Lock nothing is stored.
//   Record: base64url(salt(16) || nonce(12) || AES-GCM(key, nonce, utf8 JSON {link, name,
//   idle}, "atopos/room-lock/v1")).
// * the suspended room, kept only in the page's memory while the idle lock is on: the
//   member's state and what the page showed (js/room-snapshot.js bytes), sealed as
//   nonce(12) || AES-GCM(key, nonce, bytes, "atopos/room-lock/v1/suspended").
//
// While the room is open the page holds the key as a non-extractable CryptoKey (a LockKey,
// with its salt), to seal the room when it goes idle; the idle lock then drops it, and only
// the passphrase makes it again.

import { decode, encode } from "./base64url.js";
import { derivePassphraseKey } from "./kdf.js";
import { concatBytes } from "./room-bytes.js";
import { aesGcmDecrypt, aesGcmEncrypt, aesKey } from "./room-webcrypto.js";

export const LOCK_STORAGE_KEY = "atopos-room-lock";
export const EXTRA_LOCK_ARGON2 = Object.freeze({ memoryKib: 65536, iterations: 3, lanes: 4 });
/** Seconds without a key or pointer input before an Extra Lock room locks itself (as the
 * terminal's `--idle-lock`); the join and make-a-room pages offer other periods. */
export const DEFAULT_IDLE_LOCK_SECONDS = 300;
export const MIN_IDLE_LOCK_SECONDS = 10;
/** Relay frames a locked page keeps unread (as the terminal, client/rooms.py); one more
 * gives up the seat. */
export const MAX_HELD_FRAMES = 10_000;
const AAD = new TextEncoder().encode("atopos/room-lock/v1");
const SUSPENDED_AAD = new TextEncoder().encode("atopos/room-lock/v1/suspended");
const SALT_BYTES = 16;
const NONCE_BYTES = 12;

/** The passphrase does not open the stored room (or the record is damaged). */
export class WrongRoomPassphrase extends Error {
  constructor() {
    super("This passphrase does not open the room kept in this browser.");
    this.name = "WrongRoomPassphrase";
  }
}

/** True when a locked room is kept in this browser. */
export function hasRoomLock() {
  try {
    return localStorage.getItem(LOCK_STORAGE_KEY) !== null;
  } catch {
    return false;
  }
}

/** {salt, key}: the AES-256-GCM key (non-extractable CryptoKey) Argon2id gives for `salt`. */
async function lockKeyFor(passphrase, salt, argon2) {
  const raw = await derivePassphraseKey(passphrase, salt, argon2);
  try {
    return Object.freeze({ salt, key: await aesKey(raw) });
  } finally {
    raw.fill(0);
  }
}

function idlePeriod(value) {
  return Number.isInteger(value) && value >= MIN_IDLE_LOCK_SECONDS
    ? value
    : DEFAULT_IDLE_LOCK_SECONDS;
}

/**
 * Seal {link, name, idleSeconds} under the passphrase and keep it (replacing any earlier
 * one); resolves to the LockKey, for sealing the room when it goes idle.
 */
export async function keepRoomLock(
  { link, name, idleSeconds = DEFAULT_IDLE_LOCK_SECONDS },
  passphrase,
  argon2 = EXTRA_LOCK_ARGON2,
) {
  const lockKey = await lockKeyFor(
    passphrase,
    crypto.getRandomValues(new Uint8Array(SALT_BYTES)),
    argon2,
  );
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const plaintext = new TextEncoder().encode(
    JSON.stringify({ link, name, idle: idlePeriod(idleSeconds) }),
  );
  const sealed = await aesGcmEncrypt(lockKey.key, nonce, plaintext, AAD);
  plaintext.fill(0);
  localStorage.setItem(LOCK_STORAGE_KEY, encode(concatBytes([lockKey.salt, nonce, sealed])));
  return lockKey;
}

/**
 * {link, name, idleSeconds, lockKey} of the kept room; WrongRoomPassphrase for a wrong
 * passphrase.
 */
export async function openRoomLock(passphrase, argon2 = EXTRA_LOCK_ARGON2) {
  const record = decode(localStorage.getItem(LOCK_STORAGE_KEY) ?? "");
  if (record === null || record.length < SALT_BYTES + NONCE_BYTES + 16) {
    throw new WrongRoomPassphrase();
  }
  const lockKey = await lockKeyFor(passphrase, record.slice(0, SALT_BYTES), argon2);
  const nonce = record.slice(SALT_BYTES, SALT_BYTES + NONCE_BYTES);
  try {
    const plaintext = await aesGcmDecrypt(
      lockKey.key,
      nonce,
      record.slice(SALT_BYTES + NONCE_BYTES),
      AAD,
    );
    const { link, name, idle } = JSON.parse(new TextDecoder().decode(plaintext));
    plaintext.fill(0);
    return { link: String(link), name: String(name), idleSeconds: idlePeriod(idle), lockKey };
  } catch {
    throw new WrongRoomPassphrase();
  }
}

/** The suspended room's bytes sealed under the LockKey: nonce(12) || AES-GCM. */
export async function sealSuspendedRoom(lockKey, bytes) {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  return concatBytes([nonce, await aesGcmEncrypt(lockKey.key, nonce, bytes, SUSPENDED_AAD)]);
}

/**
 * {bytes, lockKey}: the suspended room opened with the passphrase (Argon2id with the salt
 * of the LockKey that sealed it); WrongRoomPassphrase for a wrong passphrase.
 */
export async function openSuspendedRoom(salt, sealed, passphrase, argon2 = EXTRA_LOCK_ARGON2) {
  const lockKey = await lockKeyFor(passphrase, salt, argon2);
  try {
    const bytes = await aesGcmDecrypt(
      lockKey.key,
      sealed.slice(0, NONCE_BYTES),
      sealed.slice(NONCE_BYTES),
      SUSPENDED_AAD,
    );
    return { bytes, lockKey };
  } catch {
    throw new WrongRoomPassphrase();
  }
}

/** Delete the kept room. */
export function forgetRoomLock() {
  try {
    localStorage.removeItem(LOCK_STORAGE_KEY);
  } catch {
    // storage disabled: nothing kept
  }
}
