// Room links (rooms.md section 2), as protocol/room_link.py:
//   /r/{room_id}#{S_link}        member link
//   /r/{room_id}#{S_link}.{C}    creator link (also ends the room)
//   /r/{room_id}#i.{I}           single-use invite link
// room_id is 16 bytes, S_link, C and I 32 bytes, unpadded base64url. The fragment never
// reaches a server.

import { decode, encode } from "./base64url.js";
import { ProofKind, ROOM_ID_BYTES, SECRET_BYTES } from "./room-keys.js";
import { RoomProtocolError } from "./room-errors.js";

const PATH_PREFIX = "/r/";
const INVITE_PREFIX = "i.";

/** What a link holds: {baseUrl, roomId, sLink?, creatorSecret?, inviteSecret?}. */
export class RoomLink {
  constructor({ baseUrl, roomId, sLink = null, creatorSecret = null, inviteSecret = null }) {
    if (!(roomId instanceof Uint8Array) || roomId.length !== ROOM_ID_BYTES) {
      throw new RangeError("a room id is 16 bytes");
    }
    if ((sLink === null) === (inviteSecret === null)) {
      throw new RangeError("a room link holds S_link or an invite secret, not both");
    }
    if (creatorSecret !== null && sLink === null)
      throw new RangeError("a creator link holds S_link");
    for (const value of [sLink, creatorSecret, inviteSecret]) {
      if (value !== null && value.length !== SECRET_BYTES)
        throw new RangeError("link secrets are 32 bytes");
    }
    Object.assign(this, { baseUrl, roomId, sLink, creatorSecret, inviteSecret });
    Object.freeze(this);
  }

  get proofKind() {
    if (this.inviteSecret !== null) return ProofKind.invite;
    return this.creatorSecret === null ? ProofKind.link : ProofKind.creator;
  }

  get proofKindName() {
    return { 1: "link", 2: "invite", 3: "creator" }[this.proofKind];
  }

  get proofSecret() {
    return { 1: this.sLink, 2: this.inviteSecret, 3: this.creatorSecret }[this.proofKind];
  }

  get roomPath() {
    return PATH_PREFIX + encode(this.roomId);
  }

  text() {
    let fragment;
    if (this.inviteSecret !== null) fragment = INVITE_PREFIX + encode(this.inviteSecret);
    else {
      fragment = encode(this.sLink);
      if (this.creatorSecret !== null) fragment += "." + encode(this.creatorSecret);
    }
    return `${this.baseUrl.replace(/\/+$/, "")}${this.roomPath}#${fragment}`;
  }
}

function secret(text) {
  const raw = decode(text);
  if (raw === null || raw.length !== SECRET_BYTES) {
    throw new RoomProtocolError("malformed", "The room link is damaged; copy it again.");
  }
  return raw;
}

/** Parse a room link strictly; RoomProtocolError("malformed") with one sentence. */
export function parseRoomLink(text) {
  let url;
  try {
    url = new URL(String(text).trim());
  } catch {
    throw new RoomProtocolError("malformed", "A room link starts with http:// or https://.");
  }
  if (!["http:", "https:"].includes(url.protocol) || !url.host || url.search) {
    throw new RoomProtocolError("malformed", "A room link starts with http:// or https://.");
  }
  const at = url.pathname.lastIndexOf(PATH_PREFIX);
  if (at < 0) throw new RoomProtocolError("malformed", "This is not a room link (no /r/ in it).");
  const baseUrl = `${url.protocol}//${url.host}${url.pathname.slice(0, at)}`;
  const roomId = decode(url.pathname.slice(at + PATH_PREFIX.length));
  if (roomId === null || roomId.length !== ROOM_ID_BYTES) {
    throw new RoomProtocolError("malformed", "The room link is damaged; copy it again.");
  }
  const fragment = url.hash.replace(/^#/, "");
  if (fragment.startsWith(INVITE_PREFIX)) {
    return new RoomLink({
      baseUrl,
      roomId,
      inviteSecret: secret(fragment.slice(INVITE_PREFIX.length)),
    });
  }
  const dot = fragment.indexOf(".");
  const linkText = dot < 0 ? fragment : fragment.slice(0, dot);
  const creatorSecret = dot < 0 ? null : secret(fragment.slice(dot + 1));
  return new RoomLink({ baseUrl, roomId, sLink: secret(linkText), creatorSecret });
}
