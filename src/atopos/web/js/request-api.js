// The secret-request routes under /api/v1/requests (docs/protocol/requests.md). Failures are
// the ApiErrors of api.js; a 404 (unknown, expired, cancelled or already filled) is
// RequestGone.

import { ApiError, errorFor } from "./api.js";
import { encode } from "./base64url.js";
import { serverRoot } from "./links.js";

const NETWORK_ERROR = "The server could not be reached. Check your connection and try again.";

export class RequestGone extends ApiError {
  constructor() {
    super(
      404,
      "This request does not exist any more: it expired, was cancelled or was already filled.",
    );
    this.name = "RequestGone";
  }
}

function apiUrl(path) {
  return new URL(`api/v1/${path}`, serverRoot);
}

function failure(status, body, retryAfter) {
  return status === 404 ? new RequestGone() : errorFor(status, body, retryAfter);
}

async function send(method, path, { json, token } = {}) {
  const headers = {};
  if (json !== undefined) headers["content-type"] = "application/json";
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, NETWORK_ERROR);
  }
  if (!response.ok) {
    throw failure(response.status, await response.text(), response.headers.get("retry-after"));
  }
  return response.status === 204 ? null : response.json();
}

/** Open a request: resolves to {id, request_token, expires_at}. Keys are raw bytes. */
export function openRequest({ deviceKey, accessKey, fillToken, expiresIn }) {
  return send("POST", "requests", {
    json: {
      device_key: encode(deviceKey),
      access_key: encode(accessKey),
      fill_token: encode(fillToken),
      expires_in: expiresIn,
    },
  });
}

/** {state: "open" | "filling" | "filled", expires_at, created_at, secret_id}. */
export function requestStatus(requestId, requestToken) {
  return send("GET", `requests/${requestId}`, { token: requestToken });
}

/**
 * Close the request unfilled (docs/protocol/requests.md 4.4); resolves to null. A 409 (a fill
 * holds it or filled it) rejects with an ApiError of status 409, a 404 with RequestGone.
 */
export function cancelRequest(requestId, requestToken) {
  return send("DELETE", `requests/${requestId}`, { token: requestToken });
}

/**
 * Upload the envelope (a Blob) that fills the request, with upload progress
 * (`onProgress(sent, total)`); resolves to {expires_at}.
 */
export function fillRequest(requestId, fillToken, envelope, kind, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", apiUrl(`requests/${requestId}/fill?${new URLSearchParams({ kind })}`));
    request.setRequestHeader("content-type", "application/octet-stream");
    request.setRequestHeader("authorization", `Bearer ${encode(fillToken)}`);
    request.responseType = "text";
    request.upload.onprogress = (event) => onProgress(event.loaded, event.total || envelope.size);
    request.onerror = () => reject(new ApiError(0, NETWORK_ERROR));
    request.onload = () => {
      if (request.status === 201) {
        resolve(JSON.parse(request.responseText));
      } else {
        reject(
          failure(request.status, request.responseText, request.getResponseHeader("retry-after")),
        );
      }
    };
    request.send(envelope);
  });
}
