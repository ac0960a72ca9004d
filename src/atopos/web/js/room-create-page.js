// The page that makes a room (/rooms): draws every secret in this browser (room-creation.js),
// uploads only what the relay needs after a proof of work (room-api.js), and shows the
// member link (copy button, QR code drawn here), the invites and the creator link. With
// Extra Lock the creator link and name are sealed under the passphrase (room-lock.js), and
// "Open the room" goes to the room without its key: the room page asks for the passphrase.

import { ApiError } from "./api.js";
import { createRoom } from "./room-api.js";
import { makeRoom } from "./room-creation.js";
import { isSealableName } from "./room-keys.js";
import { keepRoomLock } from "./room-lock.js";
import { missingRoomAlgorithms } from "./room-support.js";
import { qrSvg } from "./qr.js";
import { serverRoot } from "./links.js";
import { bindCopy, byId, formatWhen, showState } from "./ui.js";

function randomBytes(size) {
  return crypto.getRandomValues(new Uint8Array(size));
}

function linkRow(text, label) {
  const item = document.createElement("li");
  const row = document.createElement("div");
  row.className = "link-row";
  const code = document.createElement("code");
  code.className = "link";
  code.textContent = text;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "button secondary";
  button.textContent = "Copy";
  button.setAttribute("aria-label", `Copy ${label}`);
  const status = document.createElement("p");
  status.className = "hint";
  status.setAttribute("aria-live", "polite");
  bindCopy(button, () => text, status);
  row.append(code, button);
  item.append(row, status);
  return item;
}

async function create(event) {
  event.preventDefault();
  const error = byId("room-error");
  error.hidden = true;
  const invites = Number(byId("room-invites").value || "0");
  if (!Number.isInteger(invites) || invites < 0 || invites > 100) {
    error.textContent = "Invites: a whole number from 0 to 100.";
    error.hidden = false;
    byId("room-invites").focus();
    return;
  }
  const name = byId("room-name").value.trim();
  if (new TextEncoder().encode(name).length > 126) {
    error.textContent = "The room name is too long.";
    error.hidden = false;
    return;
  }
  const isLocked = byId("room-extra-lock").checked;
  const creatorName = byId("room-lock-name").value.trim();
  const passphrase = byId("room-lock-passphrase").value;
  if (isLocked && !isSealableName(creatorName)) {
    error.textContent = "Your name is too long.";
    error.hidden = false;
    byId("room-lock-name").focus();
    return;
  }
  if (isLocked && passphrase.length < 8) {
    error.textContent = "Extra Lock needs a passphrase of at least 8 characters.";
    error.hidden = false;
    byId("room-lock-passphrase").focus();
    return;
  }
  const knock = byId("room-knock").checked;
  const button = byId("create-room-button");
  const progress = byId("room-progress");
  button.disabled = true;
  progress.hidden = false;
  try {
    const options = { ttl: Number(byId("room-lifetime-select").value), knock, invites, name };
    const { room, expiresAt } = await createRoom(
      () => makeRoom(serverRoot.href, randomBytes, options),
      (tried, expected) => {
        progress.max = 1;
        progress.value = 1 - Math.exp(-tried / expected);
      },
    );
    const lock = isLocked
      ? { name: creatorName, passphrase, idleSeconds: Number(byId("room-lock-idle").value) }
      : null;
    show(room, expiresAt, knock, await lockRoom(room, lock));
  } catch (failure) {
    byId("failed-message").textContent =
      failure instanceof ApiError ? failure.message : "This browser could not make the room.";
    showState("failed");
  } finally {
    button.disabled = false;
    progress.hidden = true;
  }
}

/** Seal the creator link under Extra Lock; true when it is kept (or null: not asked for). */
async function lockRoom(room, lock) {
  if (lock === null) return null;
  try {
    await keepRoomLock(
      { link: room.creatorLink.text(), name: lock.name, idleSeconds: lock.idleSeconds },
      lock.passphrase,
    );
    return true;
  } catch {
    return false;
  }
}

function show(room, expiresAt, knock, isLocked) {
  const memberText = room.memberLink.text();
  const creatorText = room.creatorLink.text();
  byId("member-link").textContent = memberText;
  byId("creator-link").textContent = creatorText;
  // Kept under Extra Lock: the room page opens it with the passphrase, not from the link.
  byId("open-room").href = isLocked ? creatorText.split("#")[0] : creatorText;
  const note = byId("extra-lock-note");
  note.hidden = isLocked === null;
  note.textContent = isLocked
    ? 'Extra Lock is on: this browser keeps your creator link encrypted under your passphrase, and "Open the room" asks for it.'
    : "Extra Lock could not keep the room in this browser (its storage may be full or turned off): nothing was kept. Open the room with the creator link.";
  byId("room-expiry").textContent = `The room ends by itself ${formatWhen(expiresAt)}.`;
  byId("knock-note").textContent = knock ? " once a member admits them" : "";
  byId("member-qr").replaceChildren(qrSvg(memberText, "QR code of the room link"));
  const list = byId("invite-links");
  list.replaceChildren(
    ...room.inviteLinks.map((invite, i) => linkRow(invite.text(), `invite ${i + 1}`)),
  );
  byId("invites-card").hidden = room.inviteLinks.length === 0;
  byId("room-form").reset();
  byId("room-lock-fields").hidden = true;
  showState("done");
}

async function start() {
  const missing = await missingRoomAlgorithms();
  if (missing.length) {
    byId("missing-algorithms").textContent = missing.join(" and ");
    showState("unsupported", { focus: false });
    return;
  }
  bindCopy(byId("copy-member"), () => byId("member-link").textContent, byId("copy-member-status"));
  bindCopy(
    byId("copy-creator"),
    () => byId("creator-link").textContent,
    byId("copy-creator-status"),
  );
  byId("room-extra-lock").addEventListener("change", () => {
    byId("room-lock-fields").hidden = !byId("room-extra-lock").checked;
  });
  byId("room-lock-passphrase").addEventListener("input", () => {
    byId("room-error").hidden = true;
  });
  byId("room-form").addEventListener("submit", create);
  showState("compose", { focus: false });
}

start();
