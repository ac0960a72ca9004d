// Room frames on the wire (rooms.md section 10), as protocol/room_wire.py: one JSON object per
// WebSocket text message, "t" names its type, field sets are closed, integers bounded and
// written without fraction or exponent, binary values unpadded base64url of an exact length
// in their one canonical spelling. decodeRelayFrame and decodeClientFrame throw only
// RoomProtocolError; encodeFrame writes fields in the reference encoder's order.

import { decode, encode } from "./base64url.js";
import { RoomProtocolError } from "./room-errors.js";
import {
  MAX_SEALED_SEEDS_BYTES,
  MIN_SEALED_SEEDS_BYTES,
  sealedSeedCount,
} from "./room-published-seeds.js";

export const PROTOCOL_VERSION = 1;
export const MAX_MEMBERS = 500;
export const MAX_FRAME_CHARS = 1 << 20;
export const MAX_CONTROL_FRAME_CHARS = 1 << 16;
const MAX_CIPHERTEXT_CHARS = 23232;
const MIN_CIPHERTEXT_CHARS = 704;
const MAX_INDEX = 2 ** 32 - 1;
const ALPHABET = "[A-Za-z0-9_-]";

function exactPattern(size) {
  const full = Math.floor(size / 3);
  const tail = { 0: "", 1: `${ALPHABET}[AQgw]`, 2: `${ALPHABET}${ALPHABET}[AEIMQUYcgkosw048]` }[
    size % 3
  ];
  return new RegExp(`^(?:${ALPHABET}{4}){${full}}${tail}$`);
}

// -- field types: each is (value) => true when the value is valid ----------------------------

const binary = (size) => {
  const pattern = exactPattern(size);
  return (value) => typeof value === "string" && pattern.test(value);
};
const B16 = binary(16);
const B32 = binary(32);
const B48 = binary(48);
const B64 = binary(64);
const PROFILE = binary(156);
const CIPHERTEXT_PATTERN = new RegExp(`^${ALPHABET}+$`);
const CIPHERTEXT = (value) =>
  typeof value === "string" &&
  value.length >= MIN_CIPHERTEXT_CHARS &&
  value.length <= MAX_CIPHERTEXT_CHARS &&
  CIPHERTEXT_PATTERN.test(value);
const integer = (max) => (value) =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
const INDEX = integer(MAX_INDEX);
const COUNT = integer(Number.MAX_SAFE_INTEGER);
const BOOL = (value) => typeof value === "boolean";
const oneOf =
  (...choices) =>
  (value) =>
    choices.includes(value);
const HUMAN_TEXT = (value) => typeof value === "string" && [...value].length <= 200;
const listOf = (item, max) => (value) =>
  Array.isArray(value) && value.length <= max && value.every(item);
const optional = (check) => Object.assign((value) => check(value), { optional: true });

// A schema is an ordered list of [field, check]; the order is the encoder's.
function struct(fields) {
  const check = (value) => matches(fields, value);
  check.fields = fields;
  return check;
}

function matches(fields, value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const names = new Set(fields.map(([name]) => name));
  for (const key of Object.keys(value)) if (!names.has(key)) return false;
  for (const [name, check] of fields) {
    const present = Object.hasOwn(value, name) && value[name] !== null;
    if (!present) {
      if (!check.optional) return false;
    } else if (!check(value[name])) {
      return false;
    }
  }
  return true;
}

export const ROSTER_ITEM = struct([
  ["index", INDEX],
  ["identity", B32],
  ["sign_key", B32],
  ["seal_key", B32],
  ["profile", PROFILE],
]);
export const JOIN_ITEM = struct([
  ["index", INDEX],
  ["sign_key", B32],
  ["seal_key", B32],
  ["nonce", B32],
  ["auth", B32],
  ["profile", PROFILE],
  ["admitted_by", optional(INDEX)],
  ["admission", optional(B64)],
]);
export const SEALED_ITEM = struct([
  ["index", INDEX],
  ["ephemeral", B32],
  ["secret", B48],
]);
const ROSTER = listOf(ROSTER_ITEM, MAX_MEMBERS);
const JOINS = listOf(JOIN_ITEM, MAX_MEMBERS);
const SEALED = listOf(SEALED_ITEM, MAX_MEMBERS);
const INDICES = listOf(INDEX, MAX_MEMBERS);
// Sealed signing seeds (11.4): canonical base64url of 12 + 32k + 16 bytes, 1 ≤ k ≤ 64.
const chars = (size) => Math.floor((size * 4 + 2) / 3);
const CANONICAL_PATTERN = new RegExp(
  `^(?:${ALPHABET}{4})*(?:${ALPHABET}[AQgw]|${ALPHABET}{2}[AEIMQUYcgkosw048])?$`,
);
const SEALED_SEEDS = (value) =>
  typeof value === "string" &&
  value.length >= chars(MIN_SEALED_SEEDS_BYTES) &&
  value.length <= chars(MAX_SEALED_SEEDS_BYTES) &&
  CANONICAL_PATTERN.test(value) &&
  sealedSeedCount(decode(value).length) !== null;
const EPOCH = (value) => COUNT(value) && value >= 1;
const REASON = oneOf("found", "change", "update");
const END_REASON = oneOf("creator", "ttl", "empty");

const COMMIT_FIELDS = [
  ["epoch", COUNT],
  ["committer", INDEX],
  ["reason", REASON],
  ["transcript", B32],
  ["membership", B32],
  ["roster", ROSTER],
  ["joins", JOINS],
  ["sealed", SEALED],
  ["room_auth", B32],
  ["member_tag", B32],
  ["confirm", B32],
  ["sig", B64],
];
const MESSAGE_FIELDS = [
  ["epoch", COUNT],
  ["sender", INDEX],
  ["counter", COUNT],
  ["ct", CIPHERTEXT],
  ["sig", B64],
];

/** Member → relay frames (10.1). */
export const CLIENT_FRAMES = Object.freeze({
  prove: [
    ["kind", oneOf("link", "invite", "creator")],
    ["key", B32],
    ["sig", B64],
  ],
  join: [
    ["sign_key", B32],
    ["seal_key", B32],
    ["auth", B32],
    ["profile", PROFILE],
  ],
  commit: COMMIT_FIELDS,
  msg: MESSAGE_FIELDS,
  admit: [
    ["index", INDEX],
    ["sig", B64],
  ],
  refuse: [["index", INDEX]],
  leave: [
    ["epoch", optional(EPOCH)],
    ["sealed_seeds", optional(SEALED_SEEDS)],
  ],
  end: [["sig", B64]],
});

/** Relay → member frames (10.2). */
export const RELAY_FRAMES = Object.freeze({
  challenge: [
    ["v", oneOf(1)],
    ["nonce", B32],
  ],
  unlock: [
    ["s_relay", B32],
    ["knock", BOOL],
    ["invite_only", BOOL],
    ["expires_at", COUNT],
    ["name", PROFILE],
    ["sealed_link", optional(B48)],
  ],
  welcome: [
    ["seq", COUNT],
    ["index", INDEX],
    ["epoch", COUNT],
  ],
  knock: [
    ["seq", COUNT],
    ["index", INDEX],
    ["sign_key", B32],
    ["seal_key", B32],
    ["nonce", B32],
    ["auth", B32],
    ["profile", PROFILE],
  ],
  change: [
    ["seq", COUNT],
    ["epoch", COUNT],
    ["committer", INDEX],
    ["reason", oneOf("found", "change")],
    ["roster", ROSTER],
    ["joins", JOINS],
    ["leaves", INDICES],
  ],
  commit: [["seq", COUNT], ...COMMIT_FIELDS],
  msg: [["seq", COUNT], ...MESSAGE_FIELDS],
  sent: [
    ["seq", COUNT],
    ["epoch", COUNT],
    ["counter", COUNT],
  ],
  left: [
    ["seq", COUNT],
    ["index", INDEX],
    ["epoch", optional(EPOCH)],
    ["sealed_seeds", optional(SEALED_SEEDS)],
  ],
  closing: [
    ["seq", COUNT],
    ["seconds", integer(60)],
    ["reason", END_REASON],
  ],
  ended: [["reason", END_REASON]],
  error: [
    [
      "code",
      oneOf(
        "malformed",
        "too_large",
        "unexpected",
        "bad_proof",
        "bad_commit",
        "stale",
        "not_admitted",
        "ended",
        "full",
        "rate_limited",
      ),
    ],
    ["message", HUMAN_TEXT],
  ],
});
const LARGE = new Set(["commit", "change"]);

// Rules across fields: `epoch` and `sealed_seeds` of leave and left come together or not at
// all (a leaver with no epoch publishes nothing).
const isPresent = (frame, name) => Object.hasOwn(frame, name) && frame[name] !== null;
const paired = (frame) => isPresent(frame, "epoch") === isPresent(frame, "sealed_seeds");
const FRAME_RULES = { leave: paired, left: paired };

/** True when every number token in the JSON text is an integer without fraction/exponent. */
function hasOnlyPlainIntegers(text) {
  const integerToken = /^-?(?:0|[1-9][0-9]*)$/;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
    } else if (char === "-" || (char >= "0" && char <= "9")) {
      let end = i;
      while (end < text.length && /[-+0-9.eE]/.test(text[end])) end++;
      if (!integerToken.test(text.slice(i, end))) return false;
      i = end - 1;
    }
  }
  return true;
}

function decodeWith(table, data) {
  if (typeof data !== "string")
    throw new RoomProtocolError("malformed", "A frame is a text message.");
  if (data.length > MAX_FRAME_CHARS)
    throw new RoomProtocolError("too_large", "The frame is too large.");
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    frame = undefined;
  }
  const fields =
    frame !== null &&
    typeof frame === "object" &&
    !Array.isArray(frame) &&
    Object.hasOwn(table, frame.t)
      ? table[frame.t]
      : null;
  if (
    fields === null ||
    !hasOnlyPlainIntegers(data) ||
    !matches([["t", oneOf(frame.t)], ...fields], frame) ||
    !(FRAME_RULES[frame.t]?.(frame) ?? true)
  ) {
    throw new RoomProtocolError("malformed", "The frame is not a valid room frame.");
  }
  if (!LARGE.has(frame.t) && data.length > MAX_CONTROL_FRAME_CHARS) {
    throw new RoomProtocolError("too_large", "The frame is too large.");
  }
  return frame;
}

/** A frame the relay sent, strictly validated (a plain object; binary fields as text). */
export function decodeRelayFrame(data) {
  return decodeWith(RELAY_FRAMES, data);
}

/** A frame a member sent, strictly validated (what a relay runs). */
export function decodeClientFrame(data) {
  return decodeWith(CLIENT_FRAMES, data);
}

function ordered(fields, value) {
  const out = {};
  for (const [name, check] of fields) {
    const item = value[name];
    if (item === null || item === undefined) {
      if (check.optional) continue;
      throw new RangeError(`the frame lacks ${name}`);
    }
    if (check.fields) out[name] = ordered(check.fields, item);
    else if (Array.isArray(item))
      out[name] = item.map((entry) =>
        ITEM_FIELDS[name] ? ordered(ITEM_FIELDS[name], entry) : entry,
      );
    else out[name] = item;
  }
  return out;
}

const ITEM_FIELDS = {
  roster: ROSTER_ITEM.fields,
  joins: JOIN_ITEM.fields,
  sealed: SEALED_ITEM.fields,
};

/** Compact JSON of a member frame {t, …}, fields in the reference order, absent optionals omitted. */
export function encodeClientFrame(frame) {
  const fields = CLIENT_FRAMES[frame.t];
  if (fields === undefined) throw new RangeError("unknown frame type");
  return JSON.stringify({ t: frame.t, ...ordered(fields, frame) });
}

/** Compact JSON of a relay frame (for tests and doubles). */
export function encodeRelayFrame(frame) {
  const fields = RELAY_FRAMES[frame.t];
  if (fields === undefined) throw new RangeError("unknown frame type");
  return JSON.stringify({ t: frame.t, ...ordered(fields, frame) });
}

export const b64 = encode;

/** Bytes of a field the decoder already checked; RoomProtocolError if it was not. */
export function unb64(text) {
  const bytes = decode(text);
  if (bytes === null) throw new RoomProtocolError("malformed", "A binary field is not base64url.");
  return bytes;
}

export { B16 as isBase64url16 };
