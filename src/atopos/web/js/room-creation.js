// Making a room on the creator's device (rooms.md section 3), as protocol/room_creation.py:
// draw room_id, S_link, S_relay, C and one I per invite; derive the verifiers; seal S_link
// once per invite and the room name with the mode flags in its AAD. Returns the body to
// upload (add the proof-of-work fields) and the links.

import {
  deriveProofKey,
  deriveRoomSecrets,
  ProofKind,
  ROOM_ID_BYTES,
  roomNameAad,
  SECRET_BYTES,
  sealInviteLink,
  sealMetadata,
} from "./room-keys.js";
import { RoomLink } from "./room-link.js";
import { b64 } from "./room-wire.js";

export const MIN_TTL_SECONDS = 60;
export const DEFAULT_TTL_SECONDS = 2 * 3600;
export const MAX_TTL_SECONDS = 7 * 86400;
export const MAX_INVITES = 100;

async function verifier(kind, secret, roomId) {
  return b64((await deriveProofKey(kind, secret, roomId)).publicKey);
}

/**
 * {creation (the JSON body, fields in the reference order), creatorLink, memberLink,
 * inviteLinks}. `randomBytes(n)` is crypto.getRandomValues in a page, a stream in tests.
 */
export async function makeRoom(baseUrl, randomBytes, options = {}) {
  const {
    ttl = DEFAULT_TTL_SECONDS,
    knock = false,
    invites = 0,
    inviteOnly = false,
    name = "",
  } = options;
  if (!Number.isInteger(invites) || invites < 0 || invites > MAX_INVITES) {
    throw new RangeError(`at most ${MAX_INVITES} invites`);
  }
  if (inviteOnly && invites === 0) throw new RangeError("an invite-only room needs invites");
  if (!Number.isInteger(ttl) || ttl < MIN_TTL_SECONDS || ttl > MAX_TTL_SECONDS) {
    throw new RangeError("the lifetime is 1 minute … 7 days");
  }
  const roomId = randomBytes(ROOM_ID_BYTES);
  const sLink = randomBytes(SECRET_BYTES);
  const sRelay = randomBytes(SECRET_BYTES);
  const creatorSecret = randomBytes(SECRET_BYTES);
  const inviteSecrets = Array.from({ length: invites }, () => randomBytes(SECRET_BYTES));
  const secrets = await deriveRoomSecrets(sLink, sRelay, roomId);
  const sealedName = b64(
    await sealMetadata(secrets, name ?? "", roomNameAad(roomId, knock, inviteOnly), randomBytes),
  );
  const creation = {
    room_id: b64(roomId),
    s_relay: b64(sRelay),
    join_verifier: await verifier(ProofKind.link, sLink, roomId),
    creator_verifier: await verifier(ProofKind.creator, creatorSecret, roomId),
    ttl,
    name: sealedName,
  };
  // The reference encoder omits fields left at their default.
  if (knock) creation.knock = true;
  if (inviteOnly) creation.invite_only = true;
  if (invites > 0) {
    creation.invites = [];
    for (const secret of inviteSecrets) {
      creation.invites.push({
        verifier: await verifier(ProofKind.invite, secret, roomId),
        sealed_link: b64(await sealInviteLink(secret, roomId, sLink)),
      });
    }
  }
  sRelay.fill(0);
  return {
    creation,
    creatorLink: new RoomLink({ baseUrl, roomId, sLink, creatorSecret }),
    memberLink: new RoomLink({ baseUrl, roomId, sLink }),
    inviteLinks: inviteSecrets.map(
      (inviteSecret) => new RoomLink({ baseUrl, roomId, inviteSecret }),
    ),
  };
}
