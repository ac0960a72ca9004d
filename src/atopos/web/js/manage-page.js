// The manage page (`/m/{id}#{manage token}`): the status of one secret, and deleting it.
// The manage token is read from the fragment, which is then removed from the address bar.
// It lists the minute each view was spent (reveal receipts), also once the last view burned
// the secret: the server keeps those minutes, and nothing else, until the secret's expiry.

import { ApiError, deleteSecret, SecretGone, secretReceipts, secretStatus } from "./api.js";
import { fragmentBytes, MANAGE_TOKEN_BYTES, secretIdFromPath, takeFragment } from "./links.js";
import { bindConfirmBox, byId, count, formatBytes, formatWhen, showState } from "./ui.js";

const secretId = secretIdFromPath();
const fragment = takeFragment();
const manageToken = fragmentBytes(fragment, MANAGE_TOKEN_BYTES) === null ? null : fragment;
const confirmBox = byId("confirm-delete");
const manageError = byId("manage-error");

function fail(error) {
  if (error instanceof SecretGone) {
    showState("gone");
    return;
  }
  byId("failed-message").textContent =
    error instanceof ApiError && error.status === 403
      ? "The token in this manage link is wrong. Copy the whole link and open it again."
      : error?.message || "Something went wrong.";
  showState("failed");
}

/** The minute a view was spent, in this browser's time zone (the server keeps no more). */
function formatMinute(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

function showViews(list, viewedAt) {
  const items = (viewedAt ?? []).map((minute) => {
    const item = document.createElement("li");
    item.textContent = formatMinute(minute);
    return item;
  });
  if (items.length === 0) {
    const item = document.createElement("li");
    item.textContent = "Not opened yet";
    items.push(item);
  }
  list.replaceChildren(...items);
}

function showStatus(status) {
  showViews(byId("status-viewed"), status.viewed_at);
  byId("status-views").textContent =
    status.views_left === 0 ? "No views left" : `${count("view", status.views_left)} left`;
  byId("status-expires").textContent = formatWhen(status.expires_at);
  byId("status-created").textContent = formatWhen(status.created_at);
  byId("status-kind").textContent = status.kind === "file" ? "File" : "Text";
  byId("status-size").textContent = `${formatBytes(status.size)}, encrypted and padded`;
  byId("status-bound").textContent = status.is_bound
    ? "Opens only on one device"
    : "Any device with the link";
}

async function refresh() {
  manageError.hidden = true;
  try {
    showStatus(await secretStatus(secretId, manageToken));
    showState("status", { focus: false });
  } catch (error) {
    if (error instanceof SecretGone) {
      await showSpent();
      return;
    }
    fail(error);
  }
}

/** Gone: if its last view burned it, its receipts are still there until it would expire,
 * and the "gone" page lists them. */
async function showSpent() {
  try {
    const receipts = await secretReceipts(secretId, manageToken);
    showViews(byId("spent-viewed"), receipts.viewed_at);
    byId("gone-receipts").hidden = false;
    showState("gone", { focus: false });
  } catch (error) {
    fail(error);
  }
}

async function confirmDelete() {
  const button = byId("confirm-delete-button");
  button.disabled = true;
  try {
    await deleteSecret(secretId, manageToken);
    showState("deleted");
  } catch (error) {
    if (error instanceof SecretGone || (error instanceof ApiError && error.status === 403)) {
      fail(error);
    } else {
      manageError.textContent = error?.message || "The secret could not be deleted.";
      manageError.hidden = false;
    }
  } finally {
    button.disabled = false;
    confirmBox.hidden = true;
  }
}

if (secretId === null || manageToken === null) {
  showState("broken", { focus: false });
} else {
  byId("refresh-button").addEventListener("click", refresh);
  bindConfirmBox(byId("delete-button"), confirmBox, byId("cancel-delete-button"));
  byId("confirm-delete-button").addEventListener("click", confirmDelete);
  refresh();
}
