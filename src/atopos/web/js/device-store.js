// This browser's device (docs/protocol/device.md section 2): an Ed25519 key pair (the proof)
// and an X25519 key pair (the seal), made by WebCrypto as NON-extractable keys and kept as
// CryptoKey objects in IndexedDB. A structured clone keeps a CryptoKey non-extractable, so
// the private bytes never exist in JavaScript; clearing the site's data destroys the device.

import { deviceCode, deviceFromKeys } from "./device.js";
import { hasWebCrypto } from "./ui.js";

const DB_NAME = "atopos";
const DB_VERSION = 1;
const STORE = "device";
const ENTRY = "this-device";
const FORMAT = 1;

// The answer cannot change while the page is open: the probe (two throwaway key pairs)
// runs once, on the first call.
let deviceKeySupport = null;

/** Binding needs Ed25519 and X25519 in WebCrypto; a browser that lacks them is told so. */
export function supportsDeviceKeys() {
  deviceKeySupport ??= probeDeviceKeys();
  return deviceKeySupport;
}

async function probeDeviceKeys() {
  if (!hasWebCrypto()) return false;
  if (globalThis.indexedDB === undefined) return false;
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    return true;
  } catch {
    return false;
  }
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDatabase() {
  const req = indexedDB.open(DB_NAME, DB_VERSION);
  req.onupgradeneeded = () => {
    if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
  };
  return request(req);
}

async function withStore(mode, action) {
  const db = await openDatabase();
  try {
    const transaction = db.transaction(STORE, mode);
    const done = new Promise((resolve, reject) => {
      transaction.oncomplete = resolve;
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
    // A failed request also aborts the transaction; its error is the one reported.
    done.catch(() => {});
    const result = await action(transaction.objectStore(STORE));
    await done;
    return result;
  } finally {
    db.close();
  }
}

async function fromRecord(record) {
  if (record === undefined || record === null || record.format !== FORMAT) return null;
  const { signing, sealing } = record;
  const signingPublic = new Uint8Array(await crypto.subtle.exportKey("raw", signing.publicKey));
  const sealingPublic = new Uint8Array(await crypto.subtle.exportKey("raw", sealing.publicKey));
  const code = await deviceCode(signingPublic, sealingPublic);
  return deviceFromKeys({ signing, sealing, signingPublic, sealingPublic, code });
}

/** This browser's device, or null when it has none. Never makes one. */
export async function loadDevice() {
  const record = await withStore("readonly", (store) => request(store.get(ENTRY)));
  return fromRecord(record);
}

/**
 * This browser's device, made on first use. Two tabs doing this at once end up with one
 * device: `add` refuses to overwrite, and the loser reads the winner's keys.
 */
export async function loadOrCreateDevice() {
  const existing = await loadDevice();
  if (existing !== null) return { device: existing, isNew: false };
  const signing = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const sealing = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const record = { format: FORMAT, signing, sealing, createdAt: Date.now() };
  try {
    await withStore("readwrite", (store) => request(store.add(record, ENTRY)));
  } catch (error) {
    if (error?.name !== "ConstraintError") throw error;
    return { device: await loadDevice(), isNew: false };
  }
  return { device: await fromRecord(record), isNew: true };
}

/** Delete the device: its private keys exist nowhere else, so this cannot be undone. */
export async function forgetDevice() {
  await withStore("readwrite", (store) => request(store.delete(ENTRY)));
}
