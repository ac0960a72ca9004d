// The request page: `/ask/new` opens a request bound to this browser's device (made on first
// use), and `/ask/{id}#{request key}.{request token}` (the pickup link it moves to) waits
// until the request is filled, then opens the secret on the reveal page, where only this
// device can take and decrypt it. docs/protocol/requests.md.

import { accessKeyOf } from "./access-proof.js";
import { ApiError } from "./api.js";
import { loadDevice, loadOrCreateDevice, supportsDeviceKeys } from "./device-store.js";
import { secretIdFromPath, shareLink } from "./links.js";
import { qrSvg } from "./qr.js";
import { cancelRequest, openRequest, RequestGone, requestStatus } from "./request-api.js";
import { fillTokenOf, REQUEST_KEY_BYTES } from "./request-keys.js";
import { parsePickupFragment, pickupPath, requestLink } from "./request-links.js";
import { bindCopy, byId, formatWhen, hasWebCrypto, showState } from "./ui.js";

// How often the page asks whether the secret arrived.
const POLL_MS = 2000;

let shownLink = "";
// Set once the requester cancelled: the wait loop stops at its next turn.
let isCancelled = false;

async function ask(event) {
  event.preventDefault();
  const button = byId("ask-button");
  button.disabled = true;
  try {
    const { device } = await loadOrCreateDevice();
    const requestKey = crypto.getRandomValues(new Uint8Array(REQUEST_KEY_BYTES));
    const access = await accessKeyOf(requestKey);
    const created = await openRequest({
      deviceKey: device.signingKey,
      accessKey: access.publicKey,
      fillToken: await fillTokenOf(requestKey),
      expiresIn: Number(byId("expires").value),
    });
    // The pickup address keeps the wait going across a reload; it opens only on this device.
    history.replaceState(null, "", pickupPath(created.id, requestKey, created.request_token));
    await wait(created.id, requestKey, created.request_token, device);
  } catch (error) {
    byId("ask-error").textContent =
      error instanceof ApiError ? error.message : "The request could not be made. Try again.";
    byId("ask-error").hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function cancel(requestId, requestToken) {
  const button = byId("cancel-request");
  const problem = byId("cancel-error");
  button.disabled = true;
  problem.hidden = true;
  try {
    await cancelRequest(requestId, requestToken);
    isCancelled = true;
    showState("cancelled");
  } catch (error) {
    if (error instanceof RequestGone) {
      isCancelled = true;
      showState("gone");
      return;
    }
    // 409: a fill holds or filled it; the wait below shows it arriving.
    problem.textContent =
      error instanceof ApiError ? error.message : "The request could not be cancelled.";
    problem.hidden = false;
    button.disabled = false;
  }
}

async function wait(requestId, requestKey, requestToken, device) {
  byId("cancel-request").onclick = () => cancel(requestId, requestToken);
  shownLink = requestLink(requestId, requestKey, device.code);
  byId("request-link").textContent = shownLink;
  byId("request-qr").replaceChildren(qrSvg(shownLink, "QR code of the request link"));
  showState("waiting");
  for (;;) {
    if (isCancelled) return;
    let status;
    try {
      status = await requestStatus(requestId, requestToken);
    } catch (error) {
      if (isCancelled) return;
      if (error instanceof RequestGone) {
        showState("gone");
        return;
      }
      if (error instanceof ApiError && error.status === 403) {
        // A wrong token stays wrong: asking again every two seconds would never end.
        showState("broken");
        return;
      }
      byId("wait-status").textContent = `${error.message} Still trying…`;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      continue;
    }
    if (isCancelled) return;
    byId("wait-expires").textContent = formatWhen(status.expires_at);
    if (status.state === "filled" && status.secret_id !== null) {
      byId("open-secret").href = shareLink(status.secret_id, requestKey);
      showState("arrived");
      return;
    }
    byId("wait-status").textContent =
      status.state === "filling" ? "It is being sent right now…" : "Waiting for the secret…";
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function start() {
  if (!hasWebCrypto() || !(await supportsDeviceKeys())) {
    showState("unsupported");
    return;
  }
  bindCopy(byId("copy-request"), () => shownLink, byId("copy-request-status"));
  if (location.pathname.endsWith("/ask/new")) {
    byId("ask-form").addEventListener("submit", ask);
    showState("ask");
    return;
  }
  const requestId = secretIdFromPath();
  const pickup = parsePickupFragment(location.hash.slice(1));
  if (requestId === null || pickup === null) {
    showState("broken");
    return;
  }
  const device = await loadDevice();
  if (device === null) {
    showState("other-device");
    return;
  }
  await wait(requestId, pickup.requestKey, pickup.requestToken, device);
}

start();
