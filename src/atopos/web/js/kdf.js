// Key derivation for envelopes (docs/protocol/envelope.md section 3): Argon2id stretches a
// passphrase, HKDF-SHA256 makes the AES-256-GCM key and the 7-byte nonce prefix.

export const ARGON2_SALT_BYTES = 16;
export const ENVELOPE_SALT_BYTES = 32;
export const PASSPHRASE_KEY_BYTES = 32;
export const ENVELOPE_INFO = new TextEncoder().encode("atopos/envelope/v1");
export const KEY_BYTES = 32;
export const NONCE_PREFIX_BYTES = 7;

/** UTF-8 of the passphrase's NFC form, so the same words typed anywhere give one key. */
export function normalizePassphrase(passphrase) {
  return new TextEncoder().encode(passphrase.normalize("NFC"));
}

/**
 * Where Argon2id's progress goes, for the page to show: a "passphrase-progress" event whose
 * detail is {engine: "wasm" | "plain", fraction: 0..1 or null}. The plain JavaScript engine
 * (no WebAssembly, as in Tor Browser's "Safer" level) takes tens of seconds at our
 * parameters (docs/browser.md), so the pages say so while it runs.
 */
export const passphraseProgress = new EventTarget();

function announce(engine, fraction) {
  passphraseProgress.dispatchEvent(
    new CustomEvent("passphrase-progress", { detail: { engine, fraction } }),
  );
}

/**
 * Argon2id (version 0x13, 32-byte tag, no secret, no associated data) of the normalised
 * passphrase, computed in a short-lived worker by the vendored hash-wasm build, or by the
 * vendored @noble/hashes where the browser has no WebAssembly (same bytes, slower).
 */
export async function derivePassphraseKey(passphrase, salt, { memoryKib, iterations, lanes }) {
  const password = normalizePassphrase(passphrase);
  const worker = new Worker(new URL("./argon2-worker.js", import.meta.url), { type: "module" });
  let engine = null;
  try {
    const reply = await new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => {
        if (data.engine !== undefined) {
          engine = data.engine;
          announce(engine, engine === "plain" ? 0 : null);
        } else if (data.progress !== undefined) {
          announce(engine, data.progress);
        } else {
          resolve(data);
        }
      };
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error("The passphrase could not be processed in this browser."));
      };
      worker.postMessage({ password, salt: salt.slice(), memoryKib, iterations, lanes }, [
        password.buffer,
      ]);
    });
    if (reply.error !== undefined) throw new Error(reply.error);
    return reply.key;
  } finally {
    worker.terminate();
  }
}

/**
 * HKDF-SHA256(ikm = link key [|| passphrase key] [|| device secret], salt,
 * info "atopos/envelope/v1", 39 bytes). Returns the AES-GCM key (not extractable) and the
 * nonce prefix.
 */
export async function deriveEnvelopeKeys(linkKey, salt, passphraseKey = null, deviceSecret = null) {
  const ikm = new Uint8Array(
    linkKey.length + (passphraseKey?.length ?? 0) + (deviceSecret?.length ?? 0),
  );
  ikm.set(linkKey);
  if (passphraseKey !== null) ikm.set(passphraseKey, linkKey.length);
  if (deviceSecret !== null) ikm.set(deviceSecret, linkKey.length + (passphraseKey?.length ?? 0));
  try {
    const hkdf = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
    const okm = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt, info: ENVELOPE_INFO },
        hkdf,
        (KEY_BYTES + NONCE_PREFIX_BYTES) * 8,
      ),
    );
    const key = await crypto.subtle.importKey("raw", okm.subarray(0, KEY_BYTES), "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    const noncePrefix = okm.slice(KEY_BYTES);
    okm.fill(0);
    return { key, noncePrefix };
  } finally {
    ikm.fill(0);
  }
}
