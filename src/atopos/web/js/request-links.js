// Request links `{root}q/{id}#{request key}.{device code}` (for the filler) and pickup links
// `{root}ask/{id}#{request key}.{request token}` (kept by the requester): docs/protocol/
// requests.md, "Links". The twin of src/atopos/client/request_links.py.

import { decode, encode } from "./base64url.js";
import { InvalidDeviceCode, parseDeviceCode } from "./device.js";
import { MANAGE_TOKEN_BYTES, serverRoot } from "./links.js";
import { REQUEST_KEY_BYTES } from "./request-keys.js";

export function requestLink(requestId, requestKey, deviceCode) {
  return `${new URL(`q/${requestId}`, serverRoot)}#${encode(requestKey)}.${deviceCode}`;
}

export function pickupPath(requestId, requestKey, requestToken) {
  const path = new URL(`ask/${requestId}`, serverRoot).pathname;
  return `${path}#${encode(requestKey)}.${requestToken}`;
}

/** The request key of a fragment's first part, or null. */
function requestKeyOf(text) {
  const key = decode(text);
  return key !== null && key.length === REQUEST_KEY_BYTES ? key : null;
}

/** {requestKey, device} of a request link's fragment, or null when it is damaged. */
export async function parseRequestFragment(fragment) {
  const [keyText, code, ...rest] = fragment.split(".");
  const requestKey = requestKeyOf(keyText ?? "");
  if (requestKey === null || code === undefined || rest.length > 0) return null;
  try {
    return { requestKey, device: await parseDeviceCode(code) };
  } catch (error) {
    if (error instanceof InvalidDeviceCode) return null;
    throw error;
  }
}

/** {requestKey, requestToken} of a pickup link's fragment, or null when it is damaged. */
export function parsePickupFragment(fragment) {
  const [keyText, token, ...rest] = fragment.split(".");
  const requestKey = requestKeyOf(keyText ?? "");
  const tokenBytes = token === undefined ? null : decode(token);
  if (requestKey === null || rest.length > 0) return null;
  if (tokenBytes === null || tokenBytes.length !== MANAGE_TOKEN_BYTES) return null;
  return { requestKey, requestToken: token };
}
