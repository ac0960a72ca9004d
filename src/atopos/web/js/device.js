// Device binding (docs/protocol/device.md): the device code, public-key checks, the device
// proof and the seal of the device secret to the device's X25519 key. Sans-storage: the
// browser's own device (non-extractable keys in IndexedDB) lives in device-store.js.

import { decode, encode } from "./base64url.js";

export const DEVICE_CODE_PREFIX = "atd1-";
export const DEVICE_CODE_LENGTH = 96;
export const PUBLIC_KEY_BYTES = 32;
export const DEVICE_SECRET_BYTES = 32;
export const SEALED_DEVICE_SECRET_BYTES = 48;
export const SECRET_ID_BYTES = 16;
export const CHECKSUM_BYTES = 4;
const utf8 = new TextEncoder();
export const CODE_LABEL = utf8.encode("atopos/device-code/v1");
export const PROOF_LABEL = utf8.encode("atopos/device-proof/v1");
export const SEAL_INFO = utf8.encode("atopos/device-seal/v1");
// PKCS #8 for a raw 32-byte private key (RFC 8410): only to replay test vectors.
const PKCS8_PREFIX = {
  Ed25519: "302e020100300506032b657004220420",
  X25519: "302e020100300506032b656e04220420",
};

/** The byte arrays in `pieces`, one after another, in one new Uint8Array. */
export function concatBytes(pieces) {
  const out = new Uint8Array(pieces.reduce((total, piece) => total + piece.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}

function fromHex(text) {
  return Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));
}

// -- public-key checks (section 3) ------------------------------------------------------------

const P = 2n ** 255n - 19n;

function mod(a) {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function power(base, exponent) {
  let result = 1n;
  let b = mod(base);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

const D = mod(-121665n * power(121666n, P - 2n));
const SQRT_M1 = power(2n, (P - 1n) / 4n);

function littleEndian(bytes) {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  return value;
}

/** RFC 8032 5.1.3 decoding with canonical y, and not of small order ([8]P != identity). */
export function isValidEd25519PublicKey(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== PUBLIC_KEY_BYTES) return false;
  const encoded = littleEndian(bytes);
  const sign = encoded >> 255n;
  const y = encoded & (2n ** 255n - 1n);
  if (y >= P) return false;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  let x = mod(u * power(v, 3n) * power(u * power(v, 7n), (P - 5n) / 8n));
  const check = mod(v * x * x);
  if (check === mod(-u)) x = mod(x * SQRT_M1);
  else if (check !== u) return false;
  if (x === 0n && sign === 1n) return false;
  if ((x & 1n) !== sign) x = P - x;
  // Three doublings in extended coordinates (a = -1), then compare with the identity.
  let [X, Y, Z] = [x, y, 1n];
  for (let i = 0; i < 3; i++) {
    const A = mod(X * X);
    const B = mod(Y * Y);
    const C = mod(2n * Z * Z);
    const E = mod((X + Y) * (X + Y) - A - B);
    const G = mod(B - A);
    const F = mod(G - C);
    const H = mod(-A - B);
    [X, Y, Z] = [mod(E * F), mod(G * H), mod(F * G)];
  }
  return !(X === 0n && Y === Z);
}

/** Canonical (u < p) and not of small order: an exchange with it must not give zeros. */
export async function isValidX25519PublicKey(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== PUBLIC_KEY_BYTES) return false;
  if (littleEndian(bytes) >= P) return false;
  try {
    const probe = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    const key = await crypto.subtle.importKey("raw", bytes, { name: "X25519" }, true, []);
    // deriveBits throws OperationError on an all-zero result: that is the small-order test.
    await crypto.subtle.deriveBits({ name: "X25519", public: key }, probe.privateKey, 256);
    return true;
  } catch {
    return false;
  }
}

// -- the device code (section 4) --------------------------------------------------------------

/** A code that is not a device code; `kind` is prefix|length|encoding|checksum|keys. */
export class InvalidDeviceCode extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "InvalidDeviceCode";
    this.kind = kind;
  }
}

async function checksum(signingKey, sealingKey) {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    concatBytes([CODE_LABEL, Uint8Array.of(0), signingKey, sealingKey]),
  );
  return new Uint8Array(digest, 0, CHECKSUM_BYTES);
}

/** The device code of two raw public keys: "atd1-" + base64url(ed || x || checksum). */
export async function deviceCode(signingKey, sealingKey) {
  const sum = await checksum(signingKey, sealingKey);
  return DEVICE_CODE_PREFIX + encode(concatBytes([signingKey, sealingKey, sum]));
}

/**
 * Parse a pasted device code strictly, in the order of section 4; resolves to
 * {signingKey, sealingKey, code} or rejects with InvalidDeviceCode.
 */
export async function parseDeviceCode(text) {
  const code = String(text).trim();
  if (!code.startsWith(DEVICE_CODE_PREFIX)) {
    throw new InvalidDeviceCode(
      "prefix",
      `A device code starts with '${DEVICE_CODE_PREFIX}'; copy the whole code.`,
    );
  }
  if (code.length !== DEVICE_CODE_LENGTH) {
    throw new InvalidDeviceCode(
      "length",
      `A device code has ${DEVICE_CODE_LENGTH} characters and this one has ${code.length};` +
        " copy the whole code.",
    );
  }
  const bytes = decode(code.slice(DEVICE_CODE_PREFIX.length));
  if (bytes === null || bytes.length !== 2 * PUBLIC_KEY_BYTES + CHECKSUM_BYTES) {
    throw new InvalidDeviceCode(
      "encoding",
      "The device code contains characters that cannot be in one; copy it again.",
    );
  }
  const signingKey = bytes.slice(0, PUBLIC_KEY_BYTES);
  const sealingKey = bytes.slice(PUBLIC_KEY_BYTES, 2 * PUBLIC_KEY_BYTES);
  const expected = await checksum(signingKey, sealingKey);
  let difference = 0;
  for (let i = 0; i < CHECKSUM_BYTES; i++) {
    difference |= expected[i] ^ bytes[2 * PUBLIC_KEY_BYTES + i];
  }
  if (difference !== 0) {
    throw new InvalidDeviceCode(
      "checksum",
      "The device code has a typo (its checksum does not match).",
    );
  }
  if (!isValidEd25519PublicKey(signingKey) || !(await isValidX25519PublicKey(sealingKey))) {
    throw new InvalidDeviceCode("keys", "The device code does not hold usable keys.");
  }
  return Object.freeze({ signingKey, sealingKey, code });
}

// -- the device proof (section 7) ----------------------------------------------------------

/** "atopos/device-proof/v1" || 0x00 || secret id (16 raw bytes) || utf8(challenge). */
export function deviceProofMessage(secretId, challenge) {
  const id = typeof secretId === "string" ? decode(secretId) : secretId;
  if (id === null || id.length !== SECRET_ID_BYTES) throw new RangeError("bad secret id");
  return concatBytes([PROOF_LABEL, Uint8Array.of(0), id, utf8.encode(challenge)]);
}

/** base64url(Ed25519-Sign(private, message)): 86 characters. */
export async function signDeviceProof(signingPrivateKey, secretId, challenge) {
  const signature = await crypto.subtle.sign(
    { name: "Ed25519" },
    signingPrivateKey,
    deviceProofMessage(secretId, challenge),
  );
  return encode(new Uint8Array(signature));
}

// -- sealing the device secret (section 6) -----------------------------------------------

/** Import a raw 32-byte private key through PKCS #8 (test vectors only). */
export function importRawPrivateKey(raw, algorithm, usages, extractable = false) {
  const der = concatBytes([fromHex(PKCS8_PREFIX[algorithm]), raw]);
  return crypto.subtle.importKey("pkcs8", der, { name: algorithm }, extractable, usages);
}

async function sealKey(shared, ephemeralPublic, devicePublic) {
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: concatBytes([ephemeralPublic, devicePublic]),
      info: SEAL_INFO,
    },
    ikm,
    256,
  );
  const raw = new Uint8Array(bits);
  try {
    return await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  } finally {
    raw.fill(0);
  }
}

function sealParameters(aad) {
  return { name: "AES-GCM", iv: new Uint8Array(12), additionalData: aad, tagLength: 128 };
}

/**
 * An ephemeral X25519 key pair for one envelope: generated by WebCrypto, or — to replay a
 * test vector — imported from 32 injected bytes. Resolves to {privateKey, publicKey (raw)}.
 */
export async function ephemeralKeyPair(raw = null) {
  if (raw === null) {
    const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return { privateKey: pair.privateKey, publicKey };
  }
  const privateKey = await importRawPrivateKey(raw, "X25519", ["deriveBits"], true);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return { privateKey, publicKey: decode(jwk.x) };
}

/** Seal `deviceSecret` to `devicePublic` (X25519, checked); returns the 48 sealed bytes. */
export async function sealDeviceSecret(devicePublic, deviceSecret, ephemeral, aad) {
  if (!(await isValidX25519PublicKey(devicePublic))) {
    throw new RangeError("the device's X25519 key is not usable");
  }
  const deviceKey = await crypto.subtle.importKey(
    "raw",
    devicePublic,
    { name: "X25519" },
    true,
    [],
  );
  const shared = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: deviceKey },
      ephemeral.privateKey,
      256,
    ),
  );
  const key = await sealKey(shared, ephemeral.publicKey, devicePublic);
  shared.fill(0);
  return new Uint8Array(await crypto.subtle.encrypt(sealParameters(aad), key, deviceSecret));
}

/**
 * The device secret sealed to `device` ({sealingKey, sharedSecret(ephemeralPublic)}).
 * Throws (any error) for another device, a changed byte or a small-order ephemeral key;
 * the envelope reader reports every such failure as DecryptionFailed.
 */
export async function openDeviceSecret(device, ephemeralPublic, sealed, aad) {
  const shared = await device.sharedSecret(ephemeralPublic);
  if (shared.every((byte) => byte === 0)) throw new Error("all-zero exchange");
  const key = await sealKey(shared, ephemeralPublic, device.sealingKey);
  shared.fill(0);
  return new Uint8Array(await crypto.subtle.decrypt(sealParameters(aad), key, sealed));
}

/**
 * A device (for the envelope reader and the proof) over CryptoKeys: `sealing` and
 * `signing` are key pairs (the private halves may be non-extractable), the public keys raw.
 */
export function deviceFromKeys({ signing, sealing, signingPublic, sealingPublic, code }) {
  return Object.freeze({
    code,
    signingKey: signingPublic,
    sealingKey: sealingPublic,
    async sharedSecret(ephemeralPublic) {
      const key = await crypto.subtle.importKey(
        "raw",
        ephemeralPublic,
        { name: "X25519" },
        true,
        [],
      );
      return new Uint8Array(
        await crypto.subtle.deriveBits({ name: "X25519", public: key }, sealing.privateKey, 256),
      );
    },
    signProof(secretId, challenge) {
      return signDeviceProof(signing.privateKey, secretId, challenge);
    },
  });
}
