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

async function postJson(path, body) {
  let response;
  try {
    response = await fetch(new URL(`api/v1/${path}`, serverRoot), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, NETWORK_ERROR);
  }
  if (response.status === 404) throw new RoomsUnavailable();
  const text = await response.text();
  if (!response.ok) throw errorFor(response.status, text, response.headers.get("retry-after"));
  return JSON.parse(text);
}

/**
 * Upload a room made by room-creation.js: a challenge bound to the room id, the proof of
 * work, then `POST /api/v1/rooms`. Resolves to {expires_at}.
 */
export async function uploadRoom(creation, onProgress = () => {}) {
  const { challenge, bits } = await postJson("rooms/challenge", { room_id: creation.room_id });
  const nonce = await solveChallenge(challenge, bits, onProgress);
  return postJson("rooms", { ...creation, challenge, nonce });
}

/** ws(s)://host/…/api/v1/rooms/{room_id}: the relay, on this page's own origin. */
export function relayUrl(roomIdText) {
  const url = new URL(`api/v1/rooms/${roomIdText}`, serverRoot);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
