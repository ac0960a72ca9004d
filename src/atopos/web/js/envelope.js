// The secret envelope, format version 1 — the browser twin of src/atopos/crypto/envelope.py,
// built from docs/protocol/envelope.md and checked against tests/vectors/ byte for byte.
//
//   envelope = header || sealed_chunk_0 || ... || sealed_chunk_n
//   P        = u32(len(meta)) || meta || content || zeros       (padded with Padmé)
//   sealed_i = AES-256-GCM(key, nonce_prefix || u32(i) || u8(i == n), chunk_i, aad = header)
//
// `Sealer` and `Opener` work chunk by chunk, so memory stays at about two chunks whatever
// the size of the content. Randomness comes from crypto.getRandomValues unless a test
// injects `randomBytes`.
//
// The header's flags byte (formerly "kdf") says what the content key needs besides the link
// key: bit 0 a passphrase (Argon2id fields follow the salt), bit 1 a device (an ephemeral
// X25519 public key and the device secret sealed to the device follow; docs/protocol/device.md).

import { accessKeyOf } from "./access-proof.js";
import {
  ARGON2_SALT_BYTES,
  deriveEnvelopeKeys,
  derivePassphraseKey,
  ENVELOPE_SALT_BYTES,
} from "./kdf.js";
import {
  concatBytes,
  DEVICE_SECRET_BYTES,
  ephemeralKeyPair,
  openDeviceSecret,
  PUBLIC_KEY_BYTES,
  SEALED_DEVICE_SECRET_BYTES,
  sealDeviceSecret,
} from "./device.js";
import { paddedSize } from "./padding.js";

export const MAGIC = Uint8Array.of(0x41, 0x54, 0x50, 0x53); // "ATPS"
export const VERSION = 1;
export const SUITE_AES256GCM_HKDFSHA256_STREAM = 1;
export const FLAG_PASSPHRASE = 1;
export const FLAG_DEVICE = 2;
const KNOWN_FLAGS = FLAG_PASSPHRASE | FLAG_DEVICE;
export const LINK_KEY_BYTES = 32;
export const DEFAULT_CHUNK_SIZE_LOG2 = 16;
export const MIN_CHUNK_SIZE_LOG2 = 10;
export const MAX_CHUNK_SIZE_LOG2 = 24;
export const MAX_METADATA_BYTES = 4096;
export const TAG_BYTES = 16;
export const HEADER_BYTES_WITHOUT_PASSPHRASE = 40;
export const HEADER_BYTES_WITH_PASSPHRASE = 68;
export const DEVICE_FIELDS_BYTES = PUBLIC_KEY_BYTES + SEALED_DEVICE_SECRET_BYTES;
export const HEADER_BYTES_MAX = HEADER_BYTES_WITH_PASSPHRASE + DEVICE_FIELDS_BYTES;
/** RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes. */
export const DEFAULT_ARGON2 = Object.freeze({ memoryKib: 65536, iterations: 3, lanes: 4 });

// The chunk counter is a u32 in the nonce; one more chunk would reuse a nonce.
export const MAX_CHUNKS = 2 ** 32;
// What a reader accepts from a header: a hostile envelope cannot make this device spend
// more than 1 GiB and 16 passes before the first tag is checked.
export const ARGON2_MEMORY_KIB_MAX = 2 ** 20;
export const ARGON2_ITERATIONS_MAX = 16;
export const ARGON2_LANES_MAX = 16;
const METADATA_KEYS = new Set(["kind", "name", "size", "type"]);
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// -- errors ----------------------------------------------------------------------------------

/** Any failure to open an envelope. Never says which check failed. */
export class DecryptionFailed extends Error {
  constructor(message = "The secret could not be decrypted.") {
    super(message);
    this.name = "DecryptionFailed";
  }
}

/** The envelope was made by a newer writer (unknown version, suite or kdf). */
export class UnsupportedEnvelope extends DecryptionFailed {
  constructor() {
    super("This secret was made by a newer version of Atopos.");
    this.name = "UnsupportedEnvelope";
  }
}

/** The envelope needs a passphrase and none was given; `header` is already parsed. */
export class PassphraseRequired extends Error {
  constructor(header) {
    super("This secret is protected by a passphrase.");
    this.name = "PassphraseRequired";
    this.header = header;
  }
}

/**
 * The envelope is sealed to a device and none was given; `header` is already parsed. Not a
 * decryption failure: the caller may load the device and start again.
 */
export class DeviceRequired extends Error {
  constructor(header) {
    super("This secret is sealed to a device.");
    this.name = "DeviceRequired";
    this.header = header;
  }
}

// -- metadata ----------------------------------------------------------------------------------

function isOptionalString(value) {
  return (
    value === undefined || value === null || (typeof value === "string" && value.isWellFormed())
  );
}

/** The exact metadata bytes of section 4.1: JSON.stringify with keys in a fixed order. */
export function encodeMetadata({ kind, size, name, type }) {
  if (kind !== "text" && kind !== "file") throw new RangeError("kind must be 'text' or 'file'");
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError("size must be an integer >= 0");
  if (!isOptionalString(name) || !isOptionalString(type)) {
    throw new RangeError("name and type must be well-formed strings");
  }
  const record = { kind };
  if (name !== undefined && name !== null) record.name = name;
  record.size = size;
  if (type !== undefined && type !== null) record.type = type;
  const encoded = utf8.encode(JSON.stringify(record));
  if (encoded.length > MAX_METADATA_BYTES) {
    throw new RangeError(`the metadata record is longer than ${MAX_METADATA_BYTES} bytes`);
  }
  return encoded;
}

function decodeMetadata(bytes) {
  let record;
  try {
    record = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    throw new DecryptionFailed();
  }
  if (record === null || typeof record !== "object" || Array.isArray(record)) {
    throw new DecryptionFailed();
  }
  const has = (key) => Object.hasOwn(record, key);
  if (Object.keys(record).some((key) => !METADATA_KEYS.has(key)) || !has("kind") || !has("size")) {
    throw new DecryptionFailed();
  }
  const { kind, size, name, type } = record;
  // JSON.parse cannot tell 42 from 42.0: the one tolerated difference from the Python reader.
  const isValid =
    (kind === "text" || kind === "file") &&
    Number.isSafeInteger(size) &&
    size >= 0 &&
    (!has("name") || (typeof name === "string" && name.isWellFormed())) &&
    (!has("type") || (typeof type === "string" && type.isWellFormed()));
  if (!isValid) throw new DecryptionFailed();
  const metadata = { kind, size };
  if (has("name")) metadata.name = name;
  if (has("type")) metadata.type = type;
  return Object.freeze(metadata);
}

// -- header ------------------------------------------------------------------------------------

/** Whether an Argon2id cost is within what a reader accepts (section 2's bounds). */
export function isValidArgon2({ memoryKib, iterations, lanes }) {
  return (
    Number.isInteger(lanes) &&
    lanes >= 1 &&
    lanes <= ARGON2_LANES_MAX &&
    Number.isInteger(iterations) &&
    iterations >= 1 &&
    iterations <= ARGON2_ITERATIONS_MAX &&
    Number.isInteger(memoryKib) &&
    memoryKib >= 8 * lanes &&
    memoryKib <= ARGON2_MEMORY_KIB_MAX
  );
}

/** The header up to, not including, the device fields (the sealer appends those). */
function encodeHeader(chunkSizeLog2, salt, argon2, argon2Salt, isDeviceBound) {
  const header = new Uint8Array(
    argon2 === null ? HEADER_BYTES_WITHOUT_PASSPHRASE : HEADER_BYTES_WITH_PASSPHRASE,
  );
  header.set(MAGIC);
  header[4] = VERSION;
  header[5] = SUITE_AES256GCM_HKDFSHA256_STREAM;
  header[6] = chunkSizeLog2;
  header[7] = (argon2 === null ? 0 : FLAG_PASSPHRASE) | (isDeviceBound ? FLAG_DEVICE : 0);
  header.set(salt, 8);
  if (argon2 !== null) {
    const view = new DataView(header.buffer);
    view.setUint32(40, argon2.memoryKib);
    view.setUint32(44, argon2.iterations);
    view.setUint32(48, argon2.lanes);
    header.set(argon2Salt, 52);
  }
  return header;
}

/**
 * Parse the header at the start of `data`. Returns null while `data` is too short to
 * decide; throws as early as a byte is wrong (UnsupportedEnvelope for an unknown version,
 * suite or flag, DecryptionFailed for anything else).
 */
export function parseHeader(data) {
  const seen = data.length;
  for (let i = 0; i < Math.min(seen, MAGIC.length); i++) {
    if (data[i] !== MAGIC[i]) throw new DecryptionFailed();
  }
  if (seen > 4 && data[4] !== VERSION) throw new UnsupportedEnvelope();
  if (seen > 5 && data[5] !== SUITE_AES256GCM_HKDFSHA256_STREAM) throw new UnsupportedEnvelope();
  if (seen > 6 && !(data[6] >= MIN_CHUNK_SIZE_LOG2 && data[6] <= MAX_CHUNK_SIZE_LOG2)) {
    throw new DecryptionFailed();
  }
  // A new flag would come with a new reader, like a new suite: tell the user to upgrade.
  if (seen > 7 && (data[7] & ~KNOWN_FLAGS) !== 0) throw new UnsupportedEnvelope();
  if (seen < HEADER_BYTES_WITHOUT_PASSPHRASE) return null;
  const chunkSizeLog2 = data[6];
  const flags = data[7];
  const salt = data.slice(8, 40);
  let size = HEADER_BYTES_WITHOUT_PASSPHRASE;
  let argon2 = null;
  let argon2Salt = null;
  if ((flags & FLAG_PASSPHRASE) !== 0) {
    if (seen < HEADER_BYTES_WITH_PASSPHRASE) return null;
    const view = new DataView(data.buffer, data.byteOffset, HEADER_BYTES_WITH_PASSPHRASE);
    argon2 = Object.freeze({
      memoryKib: view.getUint32(40),
      iterations: view.getUint32(44),
      lanes: view.getUint32(48),
    });
    if (!isValidArgon2(argon2)) throw new DecryptionFailed();
    argon2Salt = data.slice(52, 68);
    size = HEADER_BYTES_WITH_PASSPHRASE;
  }
  let ephemeralPublic = null;
  let sealedDeviceSecret = null;
  const sealAad = data.slice(0, size);
  if ((flags & FLAG_DEVICE) !== 0) {
    if (seen < size + DEVICE_FIELDS_BYTES) return null;
    ephemeralPublic = data.slice(size, size + PUBLIC_KEY_BYTES);
    sealedDeviceSecret = data.slice(size + PUBLIC_KEY_BYTES, size + DEVICE_FIELDS_BYTES);
    size += DEVICE_FIELDS_BYTES;
  }
  return Object.freeze({
    chunkSizeLog2,
    salt,
    argon2,
    argon2Salt,
    isDeviceBound: ephemeralPublic !== null,
    ephemeralPublic,
    sealedDeviceSecret,
    // The header bytes before the device fields: the AAD of the sealed device secret.
    sealAad: ephemeralPublic === null ? null : sealAad,
    raw: data.slice(0, size),
  });
}

// -- sizes -------------------------------------------------------------------------------------

function checkChunkSizeLog2(chunkSizeLog2) {
  if (
    !Number.isInteger(chunkSizeLog2) ||
    chunkSizeLog2 < MIN_CHUNK_SIZE_LOG2 ||
    chunkSizeLog2 > MAX_CHUNK_SIZE_LOG2
  ) {
    throw new RangeError(
      `chunkSizeLog2 must be between ${MIN_CHUNK_SIZE_LOG2} and ${MAX_CHUNK_SIZE_LOG2}`,
    );
  }
}

function chunkCount(plaintextSize, chunkSizeLog2) {
  const count = Math.ceil(plaintextSize / 2 ** chunkSizeLog2);
  if (count > MAX_CHUNKS) throw new RangeError("the content is too large for this chunk size");
  return count;
}

/**
 * The padded plaintext size, the chunk count and the envelope size. The caller has checked
 * `chunkSizeLog2`; throws RangeError beyond 2**32 chunks.
 */
function layout(metadataLength, contentSize, chunkSizeLog2, { hasPassphrase, isDeviceBound }) {
  const plaintextSize = paddedSize(4 + metadataLength + contentSize);
  const count = chunkCount(plaintextSize, chunkSizeLog2);
  const headerSize =
    (hasPassphrase ? HEADER_BYTES_WITH_PASSPHRASE : HEADER_BYTES_WITHOUT_PASSPHRASE) +
    (isDeviceBound ? DEVICE_FIELDS_BYTES : 0);
  return { plaintextSize, chunkCount: count, size: headerSize + plaintextSize + count * TAG_BYTES };
}

/** The exact byte length of the envelope a Sealer makes for this metadata. */
export function sealedSize(
  metadata,
  { hasPassphrase = false, isDeviceBound = false, chunkSizeLog2 = DEFAULT_CHUNK_SIZE_LOG2 } = {},
) {
  checkChunkSizeLog2(chunkSizeLog2);
  const metadataLength = encodeMetadata(metadata).length;
  const { size } = layout(metadataLength, metadata.size, chunkSizeLog2, {
    hasPassphrase,
    isDeviceBound,
  });
  return size;
}

// -- shared by both directions ---------------------------------------------------------------

function nonceFor(prefix, index, isLast) {
  const nonce = new Uint8Array(12);
  nonce.set(prefix);
  new DataView(nonce.buffer).setUint32(7, index);
  nonce[11] = isLast ? 1 : 0;
  return nonce;
}

function aesGcm(nonce, header) {
  return { name: "AES-GCM", iv: nonce, additionalData: header, tagLength: TAG_BYTES * 8 };
}

function secureRandomBytes(size) {
  return crypto.getRandomValues(new Uint8Array(size));
}

function draw(randomBytes, size) {
  const drawn = randomBytes(size);
  if (!(drawn instanceof Uint8Array) || drawn.length !== size) {
    throw new RangeError(`randomBytes(${size}) must return ${size} bytes`);
  }
  return drawn.slice();
}

function checkLinkKey(linkKey) {
  if (!(linkKey instanceof Uint8Array) || linkKey.length !== LINK_KEY_BYTES) {
    throw new RangeError(`the link key must be ${LINK_KEY_BYTES} bytes`);
  }
}

/** A FIFO of byte arrays that hands out exact-length slices without re-copying the rest. */
class ByteQueue {
  #pieces = [];
  #offset = 0;
  length = 0;

  push(bytes) {
    if (bytes.length > 0) {
      this.#pieces.push(bytes);
      this.length += bytes.length;
    }
  }

  take(size) {
    const out = new Uint8Array(size);
    let filled = 0;
    while (filled < size) {
      const piece = this.#pieces[0];
      const count = Math.min(piece.length - this.#offset, size - filled);
      out.set(piece.subarray(this.#offset, this.#offset + count), filled);
      filled += count;
      this.#offset += count;
      if (this.#offset === piece.length) {
        this.#pieces.shift();
        this.#offset = 0;
      }
    }
    this.length -= size;
    return out;
  }
}

// -- sealing -----------------------------------------------------------------------------------

const CONSTRUCTING = Symbol("Sealer.create");

/**
 * Encrypt one envelope incrementally. Make one with `await Sealer.create(...)`, pass the
 * content to `update()` in pieces, then call `finalize()`. Both return arrays of envelope
 * bytes (the first starts with the header). `size` is the envelope's length, known before
 * the first byte, so uploads can announce it and show progress.
 */
export class Sealer {
  #key;
  #noncePrefix;
  #header;
  #chunk;
  #chunkSize;
  #chunkFilled = 0;
  #chunkIndex = 0;
  #lastIndex;
  #plaintextSize;
  #contentLeft;
  #isHeaderSent = false;
  #isFinalized = false;
  // The length prefix and metadata, written ahead of the content on the first call.
  #buffered;

  static async create(
    linkKey,
    metadata,
    {
      randomBytes = secureRandomBytes,
      passphrase = null,
      argon2 = DEFAULT_ARGON2,
      chunkSizeLog2 = DEFAULT_CHUNK_SIZE_LOG2,
      device = null,
    } = {},
  ) {
    checkLinkKey(linkKey);
    if (device !== null) {
      const key = device.sealingKey;
      if (!(key instanceof Uint8Array) || key.length !== PUBLIC_KEY_BYTES) {
        throw new RangeError("the device needs its 32-byte X25519 public key (sealingKey)");
      }
    }
    checkChunkSizeLog2(chunkSizeLog2);
    if (passphrase !== null) {
      if (typeof passphrase !== "string" || passphrase === "") {
        throw new RangeError("the passphrase must not be empty");
      }
      if (!passphrase.isWellFormed()) throw new RangeError("the passphrase is not valid text");
      if (!isValidArgon2(argon2)) throw new RangeError("Argon2 parameters out of range");
    }
    const encodedMetadata = encodeMetadata(metadata);
    const { plaintextSize, chunkCount: totalChunks, size } = layout(
      encodedMetadata.length,
      metadata.size,
      chunkSizeLog2,
      { hasPassphrase: passphrase !== null, isDeviceBound: device !== null },
    );

    // The order of draws is part of the test vectors: salt, then the Argon2 salt, then the
    // ephemeral X25519 private key and the device secret.
    const salt = draw(randomBytes, ENVELOPE_SALT_BYTES);
    let passphraseKey = null;
    let argon2Salt = null;
    if (passphrase !== null) {
      argon2Salt = draw(randomBytes, ARGON2_SALT_BYTES);
      passphraseKey = await derivePassphraseKey(passphrase, argon2Salt, argon2);
    }
    let header = encodeHeader(
      chunkSizeLog2,
      salt,
      passphrase === null ? null : argon2,
      argon2Salt,
      device !== null,
    );
    let deviceSecret = null;
    if (device !== null) {
      // A real envelope gets its ephemeral key from WebCrypto (the private half never exists
      // as bytes here); injected randomness (test vectors) is imported instead.
      const ephemeral = await ephemeralKeyPair(
        randomBytes === secureRandomBytes ? null : draw(randomBytes, PUBLIC_KEY_BYTES),
      );
      deviceSecret = draw(randomBytes, DEVICE_SECRET_BYTES);
      // The seal's AAD is the header so far: flags, salts and costs are bound to it.
      const sealed = await sealDeviceSecret(device.sealingKey, deviceSecret, ephemeral, header);
      header = concatBytes([header, ephemeral.publicKey, sealed]);
    }
    const keys = await deriveEnvelopeKeys(linkKey, salt, passphraseKey, deviceSecret);
    // The public access key to upload with the envelope (docs/protocol/access.md).
    const { publicKey: accessKey } = await accessKeyOf(linkKey, passphraseKey);
    passphraseKey?.fill(0);
    deviceSecret?.fill(0);
    return new Sealer(CONSTRUCTING, {
      keys,
      header,
      chunkSizeLog2,
      plaintextSize,
      totalChunks,
      encodedMetadata,
      size,
      contentSize: metadata.size,
      accessKey,
    });
  }

  constructor(token, state) {
    if (token !== CONSTRUCTING) throw new TypeError("use `await Sealer.create(...)`");
    this.size = state.size;
    /** The Ed25519 access key (32 bytes) the server checks access proofs against. */
    this.accessKey = state.accessKey;
    this.#key = state.keys.key;
    this.#noncePrefix = state.keys.noncePrefix;
    this.#header = state.header;
    this.#plaintextSize = state.plaintextSize;
    this.#lastIndex = state.totalChunks - 1;
    this.#chunkSize = 2 ** state.chunkSizeLog2;
    // One buffer, reused for every chunk; a short envelope needs less than a full chunk.
    this.#chunk = new Uint8Array(Math.min(this.#chunkSize, state.plaintextSize));
    this.#contentLeft = state.contentSize;
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, state.encodedMetadata.length);
    this.#buffered = [prefix, state.encodedMetadata];
  }

  /** Add content; returns the envelope bytes that are ready. */
  async update(content) {
    if (this.#isFinalized) throw new RangeError("the envelope is already finalized");
    if (content.length > this.#contentLeft) throw new RangeError("more content than metadata.size");
    this.#contentLeft -= content.length;
    const output = this.#takeHeader();
    for (const bytes of this.#buffered.splice(0)) await this.#write(bytes, output);
    await this.#write(content, output);
    return output;
  }

  /** Pad, seal the last chunk (the only one with the flag set) and return the rest. */
  async finalize() {
    if (this.#isFinalized) throw new RangeError("the envelope is already finalized");
    if (this.#contentLeft !== 0) throw new RangeError("less content than metadata.size");
    this.#isFinalized = true;
    const output = this.#takeHeader();
    for (const bytes of this.#buffered.splice(0)) await this.#write(bytes, output);
    for (;;) {
      const length = this.#chunkLength(this.#chunkIndex);
      this.#chunk.fill(0, this.#chunkFilled, length);
      this.#chunkFilled = length;
      const isLast = this.#chunkIndex === this.#lastIndex;
      output.push(await this.#sealChunk(isLast));
      if (isLast) return output;
    }
  }

  #takeHeader() {
    if (this.#isHeaderSent) return [];
    this.#isHeaderSent = true;
    return [this.#header];
  }

  #chunkLength(index) {
    return Math.min(this.#chunkSize, this.#plaintextSize - index * this.#chunkSize);
  }

  async #write(bytes, output) {
    let offset = 0;
    while (offset < bytes.length) {
      const length = this.#chunkLength(this.#chunkIndex);
      const count = Math.min(length - this.#chunkFilled, bytes.length - offset);
      this.#chunk.set(bytes.subarray(offset, offset + count), this.#chunkFilled);
      this.#chunkFilled += count;
      offset += count;
      // A full chunk is sealed at once unless it is the last: that one waits for finalize().
      if (this.#chunkFilled === length && this.#chunkIndex < this.#lastIndex) {
        output.push(await this.#sealChunk(false));
      }
    }
  }

  async #sealChunk(isLast) {
    const nonce = nonceFor(this.#noncePrefix, this.#chunkIndex, isLast);
    const plaintext = this.#chunk.subarray(0, this.#chunkFilled);
    const sealed = await crypto.subtle.encrypt(aesGcm(nonce, this.#header), this.#key, plaintext);
    this.#chunkIndex += 1;
    this.#chunkFilled = 0;
    return new Uint8Array(sealed);
  }
}

// -- opening -----------------------------------------------------------------------------------

/** Whether `stretched` was made with the salt and cost `header` names. */
function isStretchedFor(stretched, header) {
  if (stretched === null) return false;
  const { salt, argon2 } = stretched;
  return (
    salt.length === header.argon2Salt.length &&
    salt.every((byte, index) => byte === header.argon2Salt[index]) &&
    argon2.memoryKib === header.argon2.memoryKib &&
    argon2.iterations === header.argon2.iterations &&
    argon2.lanes === header.argon2.lanes
  );
}

/**
 * Open an envelope fed in arbitrary slices: `await feed(bytes)` returns the content that
 * became available, `await finish()` the rest. Content is provisional until finish()
 * returns: only then is the whole envelope proven. Any failure is DecryptionFailed (or
 * UnsupportedEnvelope, or PassphraseRequired when the header asks for a passphrase that
 * was not given); after a failure the opener refuses further input.
 */
export class Opener {
  header = null;
  metadata = null;
  #linkKey;
  #passphrase;
  #stretched;
  #device;
  #headerBytes = new Uint8Array(0);
  #key = null;
  #noncePrefix = null;
  #sealed = new ByteQueue();
  #chunkIndex = 0;
  #isFailed = false;
  #isFinished = false;
  // The plaintext stream: u32 length, metadata, content, zero padding.
  #lengthPrefix = new Uint8Array(4);
  #lengthFilled = 0;
  #metadataBytes = null;
  #metadataFilled = 0;
  #plaintextSize = null;
  #plaintextSeen = 0;
  #contentLeft = 0;

  /**
   * `device`, for an envelope sealed to one: {sealingKey (32 bytes, its X25519 public key),
   * sharedSecret(ephemeralPublic) -> 32 bytes} — see device.js `deviceFromKeys`.
   * `stretched`: the passphrase's Argon2id output already computed for this secret (the
   * reveal page has it from the access proof), {key, salt, argon2: {memoryKib, iterations,
   * lanes}}; used only when the header names the same salt and cost, so the slow step runs
   * once. The caller keeps (and wipes) it.
   */
  constructor(linkKey, { passphrase = null, device = null, stretched = null } = {}) {
    checkLinkKey(linkKey);
    this.#linkKey = linkKey.slice();
    this.#passphrase = passphrase;
    this.#stretched = stretched;
    this.#device = device;
  }

  async feed(data) {
    return this.#guarded(() => this.#feed(data));
  }

  async finish() {
    return this.#guarded(() => this.#finish());
  }

  async #guarded(step) {
    if (this.#isFailed || this.#isFinished) throw new DecryptionFailed();
    try {
      return await step();
    } catch (error) {
      this.#isFailed = true;
      if (
        error instanceof DecryptionFailed ||
        error instanceof PassphraseRequired ||
        error instanceof DeviceRequired
      ) {
        throw error;
      }
      throw new DecryptionFailed();
    }
  }

  async #feed(data) {
    let offset = 0;
    if (this.header === null) {
      const wanted = Math.min(data.length, HEADER_BYTES_MAX - this.#headerBytes.length);
      const headerBytes = new Uint8Array(this.#headerBytes.length + wanted);
      headerBytes.set(this.#headerBytes);
      headerBytes.set(data.subarray(0, wanted), this.#headerBytes.length);
      this.#headerBytes = headerBytes;
      offset = wanted;
      const header = parseHeader(headerBytes);
      if (header === null) return [];
      this.header = header;
      this.#sealed.push(headerBytes.slice(header.raw.length));
      await this.#deriveKeys(header);
    }
    this.#sealed.push(data.slice(offset));
    const sealedChunkSize = 2 ** this.header.chunkSizeLog2 + TAG_BYTES;
    const output = [];
    // Hold one chunk back: only the end of input tells which chunk is the last.
    while (this.#sealed.length > sealedChunkSize) {
      output.push(...(await this.#openChunk(this.#sealed.take(sealedChunkSize), false)));
    }
    return output;
  }

  async #finish() {
    if (this.header === null || this.#sealed.length <= TAG_BYTES) throw new DecryptionFailed();
    const output = await this.#openChunk(this.#sealed.take(this.#sealed.length), true);
    if (this.metadata === null || this.#plaintextSeen !== this.#plaintextSize) {
      throw new DecryptionFailed();
    }
    this.#isFinished = true;
    return output;
  }

  async #deriveKeys(header) {
    let deviceSecret = null;
    if (header.isDeviceBound) {
      // Before the passphrase: without the device no passphrase can help.
      if (this.#device === null) throw new DeviceRequired(header);
      // Before Argon2: a wrong device fails without spending the passphrase's cost.
      try {
        deviceSecret = await openDeviceSecret(
          this.#device,
          header.ephemeralPublic,
          header.sealedDeviceSecret,
          header.sealAad,
        );
      } catch {
        throw new DecryptionFailed();
      }
    }
    let passphraseKey = null;
    if (header.argon2 !== null) {
      if (this.#passphrase === null) throw new PassphraseRequired(header);
      if (typeof this.#passphrase !== "string" || !this.#passphrase.isWellFormed()) {
        throw new DecryptionFailed();
      }
      passphraseKey = isStretchedFor(this.#stretched, header)
        ? this.#stretched.key.slice()
        : await derivePassphraseKey(this.#passphrase, header.argon2Salt, header.argon2);
      this.#stretched = null;
    }
    const keys = await deriveEnvelopeKeys(this.#linkKey, header.salt, passphraseKey, deviceSecret);
    passphraseKey?.fill(0);
    deviceSecret?.fill(0);
    this.#linkKey.fill(0);
    this.#device = null;
    this.#key = keys.key;
    this.#noncePrefix = keys.noncePrefix;
  }

  async #openChunk(sealed, isLast) {
    if (this.#chunkIndex >= MAX_CHUNKS) throw new DecryptionFailed();
    const nonce = nonceFor(this.#noncePrefix, this.#chunkIndex, isLast);
    let plaintext;
    try {
      plaintext = new Uint8Array(
        await crypto.subtle.decrypt(aesGcm(nonce, this.header.raw), this.#key, sealed),
      );
    } catch {
      throw new DecryptionFailed();
    }
    this.#chunkIndex += 1;
    return this.#readPlaintext(plaintext);
  }

  /** Section 7 step 3, on one authenticated chunk: returns the content it holds. */
  #readPlaintext(plaintext) {
    let position = 0;
    this.#plaintextSeen += plaintext.length;
    if (this.#lengthFilled < 4) {
      const count = Math.min(4 - this.#lengthFilled, plaintext.length);
      this.#lengthPrefix.set(plaintext.subarray(0, count), this.#lengthFilled);
      this.#lengthFilled += count;
      position += count;
      if (this.#lengthFilled < 4) return [];
      const metadataLength = new DataView(this.#lengthPrefix.buffer).getUint32(0);
      if (metadataLength > MAX_METADATA_BYTES) throw new DecryptionFailed();
      this.#metadataBytes = new Uint8Array(metadataLength);
    }
    if (this.metadata === null) {
      const wanted = this.#metadataBytes.length - this.#metadataFilled;
      const count = Math.min(wanted, plaintext.length - position);
      this.#metadataBytes.set(plaintext.subarray(position, position + count), this.#metadataFilled);
      this.#metadataFilled += count;
      position += count;
      if (this.#metadataFilled < this.#metadataBytes.length) return [];
      this.metadata = decodeMetadata(this.#metadataBytes);
      this.#plaintextSize = paddedSize(4 + this.#metadataBytes.length + this.metadata.size);
      this.#contentLeft = this.metadata.size;
    }
    if (this.#plaintextSeen > this.#plaintextSize) throw new DecryptionFailed();
    const output = [];
    const count = Math.min(this.#contentLeft, plaintext.length - position);
    if (count > 0) output.push(plaintext.subarray(position, position + count));
    this.#contentLeft -= count;
    position += count;
    for (let i = position; i < plaintext.length; i++) {
      if (plaintext[i] !== 0) throw new DecryptionFailed();
    }
    return output;
  }
}

// -- one-shot forms ----------------------------------------------------------------------------

/** Seal `content` (a Uint8Array) in one call; see Sealer.create for the options. */
export async function seal(content, metadata, linkKey, options = {}) {
  const sealer = await Sealer.create(linkKey, metadata, options);
  return concatBytes([...(await sealer.update(content)), ...(await sealer.finalize())]);
}

/** Open a whole envelope: returns {metadata, content}. */
export async function openEnvelope(envelope, linkKey, { passphrase = null, device = null } = {}) {
  const opener = new Opener(linkKey, { passphrase, device });
  const pieces = [...(await opener.feed(envelope)), ...(await opener.finish())];
  return { metadata: opener.metadata, content: concatBytes(pieces) };
}
