// Extra Lock for a room in the browser: the only thing ever stored about a room, and only
// under a passphrase. The record is the room link and the display name, sealed with
// AES-256-GCM under Argon2id(passphrase) (js/kdf.js: 64 MiB, 3 passes, 4 lanes), kept in
// localStorage under one fixed name (which says nothing about the room). A reload asks for
// the passphrase and joins again with the opened link; a wrong passphrase opens nothing.
// Leaving, the room's end and Panic delete it. Without Extra Lock nothing is stored.
//
// Record: base64url(salt(16) || nonce(12) || AES-GCM(key, nonce, utf8 JSON {link, name}, aad)).

import { decode, encode } from "./base64url.js";
import { derivePassphraseKey } from "./kdf.js";
import { concatBytes } from "./room-bytes.js";
import { aesGcmDecrypt, aesGcmEncrypt } from "./room-webcrypto.js";

export const LOCK_STORAGE_KEY = "atopos-room-lock";
export const EXTRA_LOCK_ARGON2 = Object.freeze({ memoryKib: 65536, iterations: 3, lanes: 4 });
const AAD = new TextEncoder().encode("atopos/room-lock/v1");
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

/** Seal {link, name} under the passphrase and keep it (replacing any earlier one). */
export async function keepRoomLock(linkText, name, passphrase, argon2 = EXTRA_LOCK_ARGON2) {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const key = await derivePassphraseKey(passphrase, salt, argon2);
  try {
    const plaintext = new TextEncoder().encode(JSON.stringify({ link: linkText, name }));
    const sealed = await aesGcmEncrypt(key, nonce, plaintext, AAD);
    plaintext.fill(0);
    localStorage.setItem(LOCK_STORAGE_KEY, encode(concatBytes([salt, nonce, sealed])));
  } finally {
    key.fill(0);
  }
}

/** {link, name} of the kept room; WrongRoomPassphrase for a wrong passphrase. */
export async function openRoomLock(passphrase, argon2 = EXTRA_LOCK_ARGON2) {
  const record = decode(localStorage.getItem(LOCK_STORAGE_KEY) ?? "");
  if (record === null || record.length < SALT_BYTES + NONCE_BYTES + 16) {
    throw new WrongRoomPassphrase();
  }
  const salt = record.slice(0, SALT_BYTES);
  const nonce = record.slice(SALT_BYTES, SALT_BYTES + NONCE_BYTES);
  const key = await derivePassphraseKey(passphrase, salt, argon2);
  try {
    const plaintext = await aesGcmDecrypt(key, nonce, record.slice(SALT_BYTES + NONCE_BYTES), AAD);
    const { link, name } = JSON.parse(new TextDecoder().decode(plaintext));
    plaintext.fill(0);
    return { link: String(link), name: String(name) };
  } catch {
    throw new WrongRoomPassphrase();
  } finally {
    key.fill(0);
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
