// The secrets API under /api/v1 (docs/protocol/access.md). Every failure is an ApiError
// carrying a sentence for the person at the page; a secret that no longer exists is
// SecretGone.

import { serverRoot } from "./links.js";

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** 404 from any secret route: unknown, expired, already viewed or deleted. */
export class SecretGone extends ApiError {
  constructor() {
    super(404, "This secret does not exist any more.");
    this.name = "SecretGone";
  }
}

/** The most views a secret may allow (the server's default `max_views`). */
export const MAX_VIEWS = 100;
const NETWORK_ERROR = "The server could not be reached. Check your connection and try again.";

function apiUrl(path) {
  return new URL(`api/v1/${path}`, serverRoot);
}

/** The page's error for an unsuccessful answer (its status, body text and Retry-After). */
export function errorFor(status, body, retryAfterHeader) {
  if (status === 404) return new SecretGone();
  const retryAfter = Number.parseInt(retryAfterHeader ?? "", 10);
  if (status === 429) {
    const wait = Number.isFinite(retryAfter) ? ` in ${retryAfter} seconds` : " in a minute";
    return new ApiError(
      status,
      `Too many requests from your network. Try again${wait}.`,
      retryAfter,
    );
  }
  if (status === 413) {
    return new ApiError(status, "This is larger than this server accepts.");
  }
  let message = "The server refused the request.";
  try {
    const parsed = JSON.parse(body);
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    if (status >= 500) message = "The server failed. Try again later.";
  }
  return new ApiError(status, message);
}

async function send(method, path, options = {}) {
  const response = await fetchApi(method, apiUrl(path), options);
  if (!response.ok) {
    throw errorFor(response.status, await response.text(), response.headers.get("retry-after"));
  }
  return response;
}

/** The Response to `url`, whatever its status; ApiError only when the server is unreachable. */
async function fetchApi(method, url, { json, token } = {}) {
  const headers = {};
  if (json !== undefined) headers["content-type"] = "application/json";
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, NETWORK_ERROR);
  }
  return response;
}

/**
 * Upload an envelope (a Blob). XMLHttpRequest, because fetch cannot report upload
 * progress: `onProgress(sent, total)`. Resolves to {id, manage_token, expires_at}.
 * `accessKey` (base64url of the Ed25519 access key, docs/protocol/access.md) is required;
 * `deviceKey` (base64url of the device's Ed25519 public key) binds the secret to a device.
 */
export function createSecret(
  envelope,
  { expiresIn, views, kind, accessKey, deviceKey = null },
  onProgress = () => {},
) {
  const query = new URLSearchParams({
    expires_in: String(expiresIn),
    views: String(views),
    kind,
    access_key: accessKey,
  });
  if (deviceKey !== null) query.set("device_key", deviceKey);
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", apiUrl(`secrets?${query}`));
    request.setRequestHeader("content-type", "application/octet-stream");
    request.responseType = "text";
    request.upload.onprogress = (event) => onProgress(event.loaded, event.total || envelope.size);
    request.onerror = () => reject(new ApiError(0, NETWORK_ERROR));
    request.onload = () => {
      if (request.status === 201) {
        resolve(JSON.parse(request.responseText));
      } else {
        reject(
          errorFor(request.status, request.responseText, request.getResponseHeader("retry-after")),
        );
      }
    };
    request.send(envelope);
  });
}

/**
 * Send a request step of the access path (access-path.js: challenge, ticket, reveal; its
 * path is absolute from the server root) and return the Response, whatever its status: the
 * machine judges it. A successful reveal's body streams the envelope.
 */
export function sendAccessRequest({ method, path, json }) {
  return fetchApi(method, new URL(path.slice(1), serverRoot), { json: json ?? undefined });
}

/** Whether `response`'s media type is application/json (a ticket or an error, not an envelope). */
export function isJsonAnswer(response) {
  const type = response.headers.get("content-type") ?? "";
  return type.split(";", 1)[0].trim().toLowerCase() === "application/json";
}

/** {views_left, expires_at, created_at, kind, size, is_bound}. */
export async function secretStatus(secretId, manageToken) {
  return (await send("GET", `secrets/${secretId}/status`, { token: manageToken })).json();
}

/** Reveal receipts: {views_left, expires_at, viewed_at}, also after the last view. */
export async function secretReceipts(secretId, manageToken) {
  return (await send("GET", `secrets/${secretId}/receipts`, { token: manageToken })).json();
}

export async function deleteSecret(secretId, manageToken) {
  await send("DELETE", `secrets/${secretId}`, { token: manageToken });
}
