// The byte encoding of a suspended room (Extra Lock's idle lock, js/room-page.js): the
// member's state (RoomMember.suspend) and what the page showed, written straight into bytes so
// that no key ever becomes a JavaScript string (strings cannot be overwritten; byte arrays
// can, and the page overwrites this encoding once it is sealed). It is never sent and never
// stored unsealed; docs/browser.md describes it.
//
// A value is one tag byte and its body; lengths and counts are u32 big-endian:
//   0 null | 1 false | 2 true | 3 number: float64 | 4 string: length, UTF-8 | 5 bytes: length,
//   bytes | 6 array: count, values | 7 object: count, (string key, value) pairs |
//   8 Map: count, (key, value) pairs | 9 Set: count, values

const Tag = Object.freeze({
  null: 0,
  false: 1,
  true: 2,
  number: 3,
  string: 4,
  bytes: 5,
  array: 6,
  object: 7,
  map: 8,
  set: 9,
});
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The snapshot bytes are damaged or not a snapshot. */
export class DamagedSnapshot extends Error {
  constructor() {
    super("The kept room state is damaged.");
    this.name = "DamagedSnapshot";
  }
}

class Writer {
  #buffer = new Uint8Array(4096);
  #length = 0;

  #reserve(size) {
    if (this.#length + size <= this.#buffer.length) return;
    let capacity = this.#buffer.length * 2;
    while (capacity < this.#length + size) capacity *= 2;
    const larger = new Uint8Array(capacity);
    larger.set(this.#buffer.subarray(0, this.#length));
    this.#buffer.fill(0);
    this.#buffer = larger;
  }

  byte(value) {
    this.#reserve(1);
    this.#buffer[this.#length++] = value;
  }

  u32(value) {
    this.#reserve(4);
    new DataView(this.#buffer.buffer).setUint32(this.#length, value);
    this.#length += 4;
  }

  float(value) {
    this.#reserve(8);
    new DataView(this.#buffer.buffer).setFloat64(this.#length, value);
    this.#length += 8;
  }

  raw(bytes) {
    this.u32(bytes.length);
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** The written bytes (a copy); the working buffer is overwritten. */
  finish() {
    const out = this.#buffer.slice(0, this.#length);
    this.#buffer.fill(0);
    return out;
  }
}

function write(writer, value) {
  if (value === null || value === undefined) writer.byte(Tag.null);
  else if (value === false) writer.byte(Tag.false);
  else if (value === true) writer.byte(Tag.true);
  else if (typeof value === "number") {
    writer.byte(Tag.number);
    writer.float(value);
  } else if (typeof value === "string") {
    writer.byte(Tag.string);
    writer.raw(utf8.encode(value));
  } else if (value instanceof Uint8Array) {
    writer.byte(Tag.bytes);
    writer.raw(value);
  } else if (Array.isArray(value)) {
    writer.byte(Tag.array);
    writer.u32(value.length);
    for (const item of value) write(writer, item);
  } else if (value instanceof Map) {
    writer.byte(Tag.map);
    writer.u32(value.size);
    for (const [key, item] of value) {
      write(writer, key);
      write(writer, item);
    }
  } else if (value instanceof Set) {
    writer.byte(Tag.set);
    writer.u32(value.size);
    for (const item of value) write(writer, item);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    const entries = Object.entries(value);
    writer.byte(Tag.object);
    writer.u32(entries.length);
    for (const [key, item] of entries) {
      writer.raw(utf8.encode(key));
      write(writer, item);
    }
  } else {
    throw new TypeError(`a snapshot cannot hold ${Object.prototype.toString.call(value)}`);
  }
}

/**
 * The bytes of `value`: null, booleans, numbers, strings, Uint8Array, arrays, plain objects,
 * Map and Set, nested.
 */
export function encodeSnapshot(value) {
  const writer = new Writer();
  write(writer, value);
  return writer.finish();
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  #take(size) {
    if (this.at + size > this.bytes.length) throw new DamagedSnapshot();
    const start = this.at;
    this.at += size;
    return start;
  }

  byte() {
    return this.bytes[this.#take(1)];
  }

  u32() {
    return this.view.getUint32(this.#take(4));
  }

  float() {
    return this.view.getFloat64(this.#take(8));
  }

  raw() {
    const size = this.u32();
    const start = this.#take(size);
    return this.bytes.slice(start, start + size);
  }

  text() {
    const raw = this.raw();
    try {
      return strictUtf8.decode(raw);
    } catch {
      throw new DamagedSnapshot();
    }
  }
}

function read(reader, depth) {
  if (depth > 32) throw new DamagedSnapshot();
  const tag = reader.byte();
  switch (tag) {
    case Tag.null:
      return null;
    case Tag.false:
      return false;
    case Tag.true:
      return true;
    case Tag.number:
      return reader.float();
    case Tag.string:
      return reader.text();
    case Tag.bytes:
      return reader.raw();
    case Tag.array: {
      const count = reader.u32();
      const out = [];
      for (let i = 0; i < count; i++) out.push(read(reader, depth + 1));
      return out;
    }
    case Tag.object: {
      const count = reader.u32();
      const out = {};
      for (let i = 0; i < count; i++) {
        const key = reader.text();
        if (key === "__proto__") throw new DamagedSnapshot();
        out[key] = read(reader, depth + 1);
      }
      return out;
    }
    case Tag.map: {
      const count = reader.u32();
      const out = new Map();
      for (let i = 0; i < count; i++) out.set(read(reader, depth + 1), read(reader, depth + 1));
      return out;
    }
    case Tag.set: {
      const count = reader.u32();
      const out = new Set();
      for (let i = 0; i < count; i++) out.add(read(reader, depth + 1));
      return out;
    }
    default:
      throw new DamagedSnapshot();
  }
}

/** The value `encodeSnapshot` wrote; DamagedSnapshot for anything else. */
export function decodeSnapshot(bytes) {
  const reader = new Reader(bytes);
  const value = read(reader, 0);
  if (reader.at !== bytes.length) throw new DamagedSnapshot();
  return value;
}

/** Overwrite every byte array inside `value` (after it was encoded and is no longer used). */
export function wipeSnapshot(value) {
  if (value instanceof Uint8Array) {
    value.fill(0);
  } else if (Array.isArray(value) || value instanceof Set) {
    for (const item of value) wipeSnapshot(item);
  } else if (value instanceof Map) {
    for (const item of value.values()) wipeSnapshot(item);
  } else if (value !== null && typeof value === "object") {
    for (const item of Object.values(value)) wipeSnapshot(item);
  }
}
