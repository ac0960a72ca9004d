// The room key schedule (rooms.md section 4), as crypto/room_keys.py: proof keys from the
// link's capabilities, the invite seal, the room secret and its keys, sealed names, member
// authentication and a member's per-room key pairs. Every derivation is HKDF-SHA256 with a
// label of its own and the room id as salt.

import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  aesKey,
  ed25519FromSeed,
  ed25519Sign,
  hkdf,
  hmac,
  hmacKey,
  x25519,
  x25519FromPrivate,
} from "./room-webcrypto.js";
import { bytesEqual, bytesOf, concatBytes, u16, u8 } from "./room-bytes.js";
import { RoomDecryptionFailed } from "./room-errors.js";

export const ROOM_ID_BYTES = 16;
export const SECRET_BYTES = 32;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const CHALLENGE_BYTES = 32;
export const SEALED_LINK_BYTES = 48;
export const MAX_PROFILE_TEXT_BYTES = 126;
export const PROFILE_PADDED_BYTES = 2 + MAX_PROFILE_TEXT_BYTES;
const METADATA_NONCE_BYTES = 12;
export const SEALED_PROFILE_BYTES = METADATA_NONCE_BYTES + PROFILE_PADDED_BYTES + 16;

/** Which capability a join proof is made with; its byte is signed. */
export const ProofKind = Object.freeze({ link: 1, invite: 2, creator: 3 });
const PROOF_INFO = {
  1: bytesOf("atopos/room/v1/join-auth"),
  2: bytesOf("atopos/room/v1/invite-auth"),
  3: bytesOf("atopos/room/v1/creator-auth"),
};
const JOIN_PROOF_LABEL = bytesOf("atopos/room/v1/join-proof\0");
const END_PROOF_LABEL = bytesOf("atopos/room/v1/end-proof\0");
const MEMBER_AUTH_LABEL = bytesOf("atopos/room/v1/member-auth\0");
const ROOM_NAME_AAD_LABEL = bytesOf("atopos/room/v1/room-name\0");
const PROFILE_AAD_LABEL = bytesOf("atopos/room/v1/profile\0");
const INVITE_SEAL_INFO = bytesOf("atopos/room/v1/invite-seal");
const ROOT_INFO = bytesOf("atopos/room/v1/root");
const MEMBER_AUTH_INFO = bytesOf("atopos/room/v1/member-auth");
const METADATA_INFO = bytesOf("atopos/room/v1/metadata");
const EPOCH_BASE_INFO = bytesOf("atopos/room/v1/epoch-base");
const ZERO_NONCE = new Uint8Array(12);

function check(value, size, name) {
  if (!(value instanceof Uint8Array) || value.length !== size) {
    throw new RangeError(`${name} must be ${size} bytes`);
  }
  return value;
}

// -- proofs to the relay (4.1) -----------------------------------------------------------------

/** The 32-byte Ed25519 seed a capability proves itself with (S_link, I or C). */
export function deriveProofSeed(kind, secret, roomId) {
  return hkdf(
    check(secret, SECRET_BYTES, "secret"),
    check(roomId, 16, "room id"),
    PROOF_INFO[kind],
  );
}

/** {privateKey (non-extractable), publicKey: the verifier the relay stores}. */
export async function deriveProofKey(kind, secret, roomId) {
  const seed = await deriveProofSeed(kind, secret, roomId);
  try {
    return await ed25519FromSeed(seed);
  } finally {
    seed.fill(0);
  }
}

export function joinProofMessage(kind, roomId, challenge) {
  return concatBytes([
    JOIN_PROOF_LABEL,
    u8(kind),
    check(roomId, ROOM_ID_BYTES, "room id"),
    check(challenge, CHALLENGE_BYTES, "challenge"),
  ]);
}

export function endProofMessage(roomId, challenge) {
  return concatBytes([
    END_PROOF_LABEL,
    check(roomId, ROOM_ID_BYTES, "room id"),
    check(challenge, CHALLENGE_BYTES, "challenge"),
  ]);
}

// -- invites (4.2) -----------------------------------------------------------------------------

async function inviteSealKey(inviteSecret, roomId) {
  return hkdf(check(inviteSecret, SECRET_BYTES, "invite secret"), roomId, INVITE_SEAL_INFO);
}

/** S_link sealed for one invite: AES-GCM(HKDF(I), 12 zero bytes, S_link, aad room_id). */
export async function sealInviteLink(inviteSecret, roomId, sLink) {
  const key = await inviteSealKey(inviteSecret, roomId);
  return aesGcmEncrypt(key, ZERO_NONCE, check(sLink, SECRET_BYTES, "S_link"), roomId);
}

/** S_link from an invite's sealed copy; RoomDecryptionFailed if anything differs. */
export async function openInviteLink(inviteSecret, roomId, sealedLink) {
  const key = await inviteSealKey(inviteSecret, roomId);
  return aesGcmDecrypt(key, ZERO_NONCE, sealedLink, roomId);
}

// -- room secrets (4.3) ------------------------------------------------------------------------

/** The room secret and its three derived values as raw bytes (test vectors compare them). */
export async function deriveRoomSecretBytes(sLink, sRelay, roomId) {
  check(roomId, ROOM_ID_BYTES, "room id");
  const ikm = concatBytes([check(sLink, 32, "S_link"), check(sRelay, 32, "S_relay")]);
  const root = await hkdf(ikm, roomId, ROOT_INFO);
  ikm.fill(0);
  return {
    roomSecret: root,
    memberAuthKey: await hkdf(root, roomId, MEMBER_AUTH_INFO),
    metadataKey: await hkdf(root, roomId, METADATA_INFO),
    epochBase: await hkdf(root, roomId, EPOCH_BASE_INFO),
  };
}

/**
 * What both shards give, as the member keeps it: the member-auth key (HMAC) and metadata key
 * (AES-GCM) as non-extractable CryptoKeys; the epoch base stays bytes because it is an HKDF
 * salt, which WebCrypto takes only as bytes.
 */
export async function deriveRoomSecrets(sLink, sRelay, roomId) {
  const raw = await deriveRoomSecretBytes(sLink, sRelay, roomId);
  const secrets = Object.freeze({
    roomId,
    memberAuthKey: await hmacKey(raw.memberAuthKey),
    metadataKey: await aesKey(raw.metadataKey),
    epochBase: raw.epochBase,
  });
  raw.roomSecret.fill(0);
  raw.memberAuthKey.fill(0);
  raw.metadataKey.fill(0);
  return secrets;
}

export function memberAuthMessage(roomId, nonce, signKey, sealKey, profile) {
  return concatBytes([
    MEMBER_AUTH_LABEL,
    check(roomId, ROOM_ID_BYTES, "room id"),
    check(nonce, CHALLENGE_BYTES, "nonce"),
    check(signKey, KEY_BYTES, "sign key"),
    check(sealKey, KEY_BYTES, "seal key"),
    check(profile, SEALED_PROFILE_BYTES, "profile"),
  ]);
}

export function memberAuthTag(secrets, message) {
  return hmac(secrets.memberAuthKey, message);
}

export async function verifyMemberAuth(secrets, message, tag) {
  return bytesEqual(await memberAuthTag(secrets, message), tag);
}

// -- names (4.4) -------------------------------------------------------------------------------

export function roomNameAad(roomId, isKnock, isInviteOnly) {
  const flags = (isKnock ? 1 : 0) | (isInviteOnly ? 2 : 0);
  return concatBytes([ROOM_NAME_AAD_LABEL, check(roomId, ROOM_ID_BYTES, "room id"), u8(flags)]);
}

export function profileAad(roomId, signKey) {
  return concatBytes([PROFILE_AAD_LABEL, roomId, check(signKey, KEY_BYTES, "sign key")]);
}

/** True when `text` fits a sealed name (at most 126 bytes of UTF-8). */
export function isSealableName(text) {
  return typeof text === "string" && bytesOf(text).length <= MAX_PROFILE_TEXT_BYTES;
}

/** nonce(12) || AES-GCM(metadata key, nonce, u16(len) || utf8 || zeros, aad): 156 bytes. */
export async function sealMetadata(secrets, text, aad, randomBytes) {
  const raw = bytesOf(text);
  if (raw.length > MAX_PROFILE_TEXT_BYTES) {
    throw new RangeError(`a name is at most ${MAX_PROFILE_TEXT_BYTES} bytes of UTF-8`);
  }
  const padded = concatBytes([
    u16(raw.length),
    raw,
    new Uint8Array(MAX_PROFILE_TEXT_BYTES - raw.length),
  ]);
  const nonce = randomBytes(METADATA_NONCE_BYTES);
  return concatBytes([nonce, await aesGcmEncrypt(secrets.metadataKey, nonce, padded, aad)]);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The name inside `sealed`; RoomDecryptionFailed for a wrong key, tampering or padding. */
export async function openMetadata(secrets, sealed, aad) {
  if (!(sealed instanceof Uint8Array) || sealed.length !== SEALED_PROFILE_BYTES) {
    throw new RoomDecryptionFailed();
  }
  const padded = await aesGcmDecrypt(
    secrets.metadataKey,
    sealed.slice(0, METADATA_NONCE_BYTES),
    sealed.slice(METADATA_NONCE_BYTES),
    aad,
  );
  const length = (padded[0] << 8) | padded[1];
  if (length > MAX_PROFILE_TEXT_BYTES || padded.slice(2 + length).some((byte) => byte !== 0)) {
    throw new RoomDecryptionFailed();
  }
  try {
    return strictUtf8.decode(padded.slice(2, 2 + length));
  } catch {
    throw new RoomDecryptionFailed();
  }
}

// -- a member's per-room keys (4.5) ---------------------------------------------------------

/**
 * A member's fresh per-room key pairs: Ed25519 signs its frames, X25519 receives epoch
 * secrets. The X25519 private key is a non-extractable CryptoKey. The Ed25519 seed is kept
 * as bytes on purpose: the protocol publishes it when the member leaves (deniability).
 * A suspendable pair (Extra Lock's idle lock) also keeps the X25519 private bytes, so that
 * `toSnapshot` can hand both to the lock and the page can drop every CryptoKey.
 */
export class MemberKeys {
  static async fromBytes(signSeed, sealPrivate, { isSuspendable = false } = {}) {
    const signing = await ed25519FromSeed(check(signSeed, KEY_BYTES, "seed"));
    const sealing = await x25519FromPrivate(check(sealPrivate, KEY_BYTES, "key"));
    const kept = isSuspendable ? sealPrivate.slice() : null;
    sealPrivate.fill(0);
    return new MemberKeys(signSeed.slice(), signing, sealing, kept);
  }

  /** 32 + 32 bytes of `randomBytes`: the Ed25519 seed first, then the X25519 key. */
  static async generate(randomBytes, options = {}) {
    const seed = randomBytes(KEY_BYTES);
    const seal = randomBytes(KEY_BYTES);
    return MemberKeys.fromBytes(seed, seal, options);
  }

  constructor(seed, signing, sealing, sealPrivate = null) {
    this.signKey = signing.publicKey;
    this.sealKey = sealing.publicKey;
    this.#seed = seed;
    this.#sign = signing.privateKey;
    this.#seal = sealing.privateKey;
    this.#sealPrivate = sealPrivate;
  }

  #seed;
  #sign;
  #seal;
  #sealPrivate;

  sign(message) {
    return ed25519Sign(this.#sign, message);
  }

  /** X25519(own private, ephemeral public); throws for a small-order point. */
  sharedSecret(ephemeralPublic) {
    return x25519(this.#seal, ephemeralPublic);
  }

  /** The Ed25519 seed: published at leave (deniability). */
  signingSeed() {
    return this.#seed.slice();
  }

  /** Copies of {signSeed, sealPrivate} of a suspendable pair (`fromBytes` takes them back). */
  toSnapshot() {
    if (this.#sealPrivate === null) throw new TypeError("these keys were not made suspendable");
    return { signSeed: this.#seed.slice(), sealPrivate: this.#sealPrivate.slice() };
  }

  /** Overwrite the bytes this object holds (the CryptoKeys go with the object). */
  wipe() {
    this.#seed.fill(0);
    this.#sealPrivate?.fill(0);
  }
}
