// The room routes of the server (docs/protocol/rooms.md sections 3 and 10): creating a room
// (proof of work first) and the relay's WebSocket address. The fragment of a room link never
// appears in any of these requests.

import { ApiError, errorFor } from "./api.js";
import { serverRoot } from "./links.js";
import { solveChallenge } from "./pow.js";

const NETWORK_ERROR = "The server could not be reached. Check your connection and try again.";

/** This server does not host rooms (the route is missing). */
export class RoomsUnavailable extends ApiError {
  constructor() {
    super(404, "This server does not host rooms.");
    this.name = "RoomsUnavailable";
  }
}

const ATTEMPTS = 3;

/** The answer's status and parsed JSON; ApiError for failures other than 409. */
async function postJson(path, body) {
  let response;
  try {
    response = await fetch(new URL(`api/v1/${path}`, serverRoot), {
      method: "POST",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, NETWORK_ERROR);
  }
  if (response.status === 404) throw new RoomsUnavailable();
  const text = await response.text();
  if (response.status === 409) return { status: 409, json: null };
  if (!response.ok) throw errorFor(response.status, text, response.headers.get("retry-after"));
  return { status: response.status, json: JSON.parse(text) };
}

/**
 * Make and upload a room: `makeRoom()` (room-creation.js, every secret drawn here), then
 * `POST /api/v1/rooms/{room_id}/challenge`, the proof of work, and `POST /api/v1/rooms`
 * with the body plus `challenge` and `nonce`. A room id already in use (409) is drawn
 * again. Resolves to {room, expiresAt}.
 */
export async function createRoom(makeRoom, onProgress = () => {}) {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const room = await makeRoom();
    const id = room.creation.room_id;
    const { json: challenge } = await postJson(`rooms/${id}/challenge`);
    if (!Number.isInteger(challenge?.bits) || typeof challenge.challenge !== "string") {
      throw new ApiError(0, "The server's answer was not understood.");
    }
    const nonce = await solveChallenge(challenge.challenge, challenge.bits, onProgress);
    const created = await postJson("rooms", {
      ...room.creation,
      challenge: challenge.challenge,
      nonce,
    });
    if (created.status !== 409) return { room, expiresAt: created.json.expires_at };
  }
  throw new ApiError(409, "The server refused every room id this page drew. Try again.");
}

/** ws(s)://host/…/api/v1/rooms/{room_id}: the relay, on this page's own origin. */
export function relayUrl(roomIdText) {
  const url = new URL(`api/v1/rooms/${roomIdText}`, serverRoot);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
