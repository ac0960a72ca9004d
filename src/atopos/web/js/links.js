// Share and manage links: `{root}s/{id}#{link key}` and `{root}m/{id}#{manage token}`.
// The part after "#" never reaches a server; the pages read it once and then remove it
// from the address bar and the history entry.

import { decode, encode } from "./base64url.js";
import { SECRET_ID_BYTES } from "./device.js";
import { KEY_SHARE_BYTES, parseShare } from "./shamir.js";

/** A secret id's text form: unpadded base64url of SECRET_ID_BYTES. */
export const SECRET_ID_CHARS = 22;
/** The manage token after "#" in a manage link decodes to this many bytes. */
export const MANAGE_TOKEN_BYTES = 32;

/** The server's root URL, worked out from where this module was served (`/static/js/`),
 * so the pages also work behind a reverse proxy that mounts Atopos under a path. */
export const serverRoot = new URL("../../", import.meta.url);

export function shareLink(secretId, linkKey) {
  return `${new URL(`s/${secretId}`, serverRoot)}#${encode(linkKey)}`;
}

export function manageLink(secretId, manageToken) {
  return `${new URL(`m/${secretId}`, serverRoot)}#${manageToken}`;
}

/** The secret id in this page's path (`.../s/{id}` or `.../m/{id}`), or null if damaged. */
export function secretIdFromPath() {
  return secretIdOf(location.pathname);
}

/** The secret id that ends `pathname` (`.../s/{id}` or `.../m/{id}`), or null if damaged. */
export function secretIdOf(pathname) {
  const id = pathname.split("/").pop();
  return decode(id)?.length === SECRET_ID_BYTES && id.length === SECRET_ID_CHARS ? id : null;
}

/** Read the fragment and erase it from the address bar and the current history entry. */
export function takeFragment() {
  const fragment = location.hash.slice(1);
  if (location.hash !== "") {
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  return fragment;
}

/** The bytes of a fragment that must hold exactly `size` bytes, or null. */
export function fragmentBytes(fragment, size) {
  const bytes = decode(fragment);
  return bytes !== null && bytes.length === size ? bytes : null;
}

/** The key share in a split link's fragment (docs/protocol/links.md), or null if none. */
export function fragmentShare(fragment) {
  const bytes = fragmentBytes(fragment, KEY_SHARE_BYTES);
  if (bytes === null) return null;
  try {
    return parseShare(bytes);
  } catch {
    return null;
  }
}
