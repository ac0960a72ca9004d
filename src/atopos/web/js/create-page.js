// The create page (`/`): seal text or a file in this browser, upload the envelope, and show
// the share link (with its QR code) and the manage link. The link key is drawn here with
// crypto.getRandomValues and only ever written into the share link.
//
// "Bind to a device" takes a pasted device code (docs/protocol/device.md section 4): the
// device secret is sealed to its X25519 key in the envelope header, and its Ed25519 key goes
// to the server as `device_key`, so only that device can take a view and decrypt.

import { ApiError, createSecret, MAX_VIEWS } from "./api.js";
import { encode } from "./base64url.js";
import { InvalidDeviceCode, parseDeviceCode } from "./device.js";
import { supportsDeviceKeys } from "./device-store.js";
import { LINK_KEY_BYTES, Sealer } from "./envelope.js";
import { manageLink, shareLink } from "./links.js";
import { LocalContentError, metadataOf, sealContent } from "./local-content.js";
import { watchSlowPassphrase } from "./passphrase-progress.js";
import { qrSvg } from "./qr.js";
import {
  bindCopy,
  byId,
  count,
  formatBytes,
  formatWhen,
  hasWebCrypto,
  setProgress,
  showState,
} from "./ui.js";

const form = byId("create-form");
const kindText = byId("kind-text");
const kindFile = byId("kind-file");
const textPanel = byId("text-panel");
const filePanel = byId("file-panel");
const textInput = byId("secret-text");
const fileInput = byId("secret-file");
const dropZone = byId("drop-zone");
const fileChosen = byId("file-chosen");
const expiresInput = byId("expires");
const viewsInput = byId("views");
const passphraseInput = byId("passphrase");
const deviceCodeInput = byId("device-code");
const deviceCodeError = byId("device-code-error");
const formError = byId("form-error");
const createButton = byId("create-button");
const workingStep = byId("working-step");
const workingProgress = byId("working-progress");
const workingDetail = byId("working-detail");

let chosenFile = null;
// Set while the device code is checked, so a double click does not submit twice.
let isBusy = false;

let links = { share: "", manage: "" };

// -- composing -------------------------------------------------------------------------------

function selectedKind() {
  return kindFile.checked ? "file" : "text";
}

function syncKind() {
  textPanel.hidden = selectedKind() !== "text";
  filePanel.hidden = selectedKind() !== "file";
}

function chooseFile(file) {
  chosenFile = file ?? null;
  fileChosen.hidden = chosenFile === null;
  fileChosen.textContent = chosenFile ? `${chosenFile.name} · ${formatBytes(chosenFile.size)}` : "";
  if (chosenFile !== null) {
    kindFile.checked = true;
    syncKind();
    hideError();
  }
}

function showError(message) {
  formError.textContent = message;
  formError.hidden = false;
}

function hideError() {
  formError.hidden = true;
  formError.textContent = "";
}

function showDeviceCodeError(message) {
  deviceCodeError.textContent = message;
  deviceCodeError.hidden = false;
  deviceCodeInput.setAttribute("aria-invalid", "true");
}

function hideDeviceCodeError() {
  deviceCodeError.hidden = true;
  deviceCodeError.textContent = "";
  deviceCodeInput.removeAttribute("aria-invalid");
}

/**
 * The device the secret is to be bound to: null when the field is empty, else the parsed
 * code, or {error} with the sentence shown under the field.
 */
async function readDevice() {
  const text = deviceCodeInput.value.trim();
  if (text === "") return null;
  try {
    if (!(await supportsDeviceKeys())) {
      return {
        error:
          "This browser cannot bind secrets to a device (its WebCrypto has no X25519)." +
          " Use a current browser or `atopos secret create --bind-device`.",
      };
    }
    return await parseDeviceCode(text);
  } catch (error) {
    if (error instanceof InvalidDeviceCode) return { error: error.message };
    throw error;
  }
}

async function checkDeviceField() {
  const device = await readDevice();
  if (device?.error !== undefined) showDeviceCodeError(device.error);
  else hideDeviceCodeError();
  return device;
}

/** What the form asks for, or a sentence saying what is missing. */
function readForm() {
  const kind = selectedKind();
  const views = Number(viewsInput.value);
  if (kind === "text" && textInput.value.trim() === "") {
    return { error: "Type or paste the secret first.", focus: textInput };
  }
  if (kind === "file" && chosenFile === null) {
    return { error: "Choose a file first, or drop one on the page.", focus: fileInput };
  }
  if (!Number.isInteger(views) || views < 1 || views > MAX_VIEWS) {
    return { error: `Views must be a whole number from 1 to ${MAX_VIEWS}.`, focus: viewsInput };
  }
  return {
    kind,
    views,
    expiresIn: Number(expiresInput.value),
    passphrase: passphraseInput.value === "" ? null : passphraseInput.value,
    file: chosenFile,
    text: textInput.value,
  };
}

// -- sealing and sending ----------------------------------------------------------------------

function report(step, fraction, detail = "") {
  workingStep.textContent = step;
  setProgress(workingProgress, fraction, detail || step);
  workingDetail.textContent = detail;
}

// Without WebAssembly the passphrase step is slow: say so, with its progress.
watchSlowPassphrase((fraction, text) => report("Strengthening the passphrase…", fraction, text));

async function createFrom(request) {
  const linkKey = crypto.getRandomValues(new Uint8Array(LINK_KEY_BYTES));
  const text = request.kind === "text" ? new TextEncoder().encode(request.text) : null;
  const metadata = metadataOf(text, request.file);
  report(
    request.passphrase === null ? "Encrypting…" : "Strengthening the passphrase…",
    null,
    request.passphrase === null ? "" : "This takes a moment on purpose: it slows down guessing.",
  );
  const sealer = await Sealer.create(linkKey, metadata, {
    passphrase: request.passphrase,
    device: request.device,
  });
  report("Encrypting…", 0);
  const envelope = await sealContent(sealer, text, request.file, (done, total) =>
    report("Encrypting…", done / total, `${formatBytes(done)} of ${formatBytes(total)}`),
  );
  report("Uploading the encrypted secret…", 0, `0 of ${formatBytes(envelope.size)}`);
  const created = await createSecret(
    envelope,
    {
      expiresIn: request.expiresIn,
      views: request.views,
      kind: request.kind,
      accessKey: encode(sealer.accessKey),
      deviceKey: request.device === null ? null : encode(request.device.signingKey),
    },
    (sent, total) =>
      report(
        "Uploading the encrypted secret…",
        sent / total,
        `${formatBytes(sent)} of ${formatBytes(total)}`,
      ),
  );
  return {
    share: shareLink(created.id, linkKey),
    manage: manageLink(created.id, created.manage_token),
    expiresAt: created.expires_at,
  };
}

function messageFor(error) {
  if (error instanceof ApiError || error instanceof LocalContentError) return error.message;
  if (error instanceof DOMException && error.name === "NotReadableError") {
    return "The file could not be read. Was it moved or changed? Choose it again.";
  }
  return "Something went wrong while encrypting. Nothing was shared. Try again.";
}

function showResult(request, result) {
  links = { share: result.share, manage: result.manage };
  byId("share-link").textContent = result.share;
  byId("manage-link").textContent = result.manage;
  byId("share-qr").replaceChildren(qrSvg(result.share, "QR code of the share link"));
  const opens = request.views === 1 ? "once" : `up to ${count("time", request.views)}`;
  const passphrase = request.passphrase === null ? "" : " They will also need the passphrase.";
  const who =
    request.device === null
      ? "Anyone with this link"
      : "Only the device you bound it to, with this link,";
  byId("done-summary").textContent =
    `${who} can open the secret ${opens} until ${formatWhen(result.expiresAt)}.` +
    ` After that it is deleted from the server.${passphrase}`;
  showState("done");
}

function clearForm() {
  form.reset();
  chooseFile(null);
  kindText.checked = true;
  syncKind();
  hideError();
  hideDeviceCodeError();
}

async function onSubmit(event) {
  event.preventDefault();
  hideError();
  const request = readForm();
  if (request.error !== undefined) {
    showError(request.error);
    request.focus.focus();
    return;
  }
  if (isBusy) return;
  isBusy = true;
  try {
    request.device = await checkDeviceField();
  } finally {
    isBusy = false;
  }
  if (request.device?.error !== undefined) {
    deviceCodeInput.focus();
    return;
  }
  createButton.disabled = true;
  showState("working");
  try {
    const result = await createFrom(request);
    // The plaintext has been sent (encrypted); do not leave it lying in the form.
    clearForm();
    showResult(request, result);
  } catch (error) {
    showState("compose");
    showError(messageFor(error));
  } finally {
    createButton.disabled = false;
  }
}

// -- wiring -------------------------------------------------------------------------------

function startDragging(event) {
  if (!event.dataTransfer?.types.includes("Files")) return;
  event.preventDefault();
  dropZone.classList.add("is-dragging");
  if (selectedKind() !== "file") {
    kindFile.checked = true;
    syncKind();
  }
}

function drop(event) {
  if (!event.dataTransfer?.types.includes("Files")) return;
  event.preventDefault();
  dropZone.classList.remove("is-dragging");
  chooseDroppedFiles(event.dataTransfer.files);
}

/**
 * One secret holds one file. Several dropped at once are refused with a notice rather than
 * one of them taken silently (which one would be the browser's choice, not the sender's);
 * an earlier choice stays as it was.
 */
function chooseDroppedFiles(files) {
  if (files.length > 1) {
    showError(
      `${files.length} files were dropped, and a secret holds one file. Drop one file, ` +
        "or put them in one archive (such as a .zip) first. Nothing was added.",
    );
    return;
  }
  chooseFile(files[0]);
}

if (!hasWebCrypto()) {
  showState("unsupported");
} else {
  form.addEventListener("submit", onSubmit);
  kindText.addEventListener("change", syncKind);
  kindFile.addEventListener("change", syncKind);
  fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));
  // Checked on submit, before anything is encrypted or sent (checking on "change" would move
  // the button under a pointer that is clicking it). Typing clears the old complaint.
  deviceCodeInput.addEventListener("input", hideDeviceCodeError);
  // The whole page accepts a dropped file, so a near miss does not open it in the tab.
  document.addEventListener("dragover", startDragging);
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("is-dragging");
  });
  document.addEventListener("drop", drop);
  bindCopy(byId("copy-share"), () => links.share, byId("copy-share-status"));
  bindCopy(byId("copy-manage"), () => links.manage, byId("copy-manage-status"));
  byId("create-another").addEventListener("click", () => {
    links = { share: "", manage: "" };
    byId("share-link").textContent = "";
    byId("manage-link").textContent = "";
    byId("share-qr").replaceChildren();
    showState("compose");
  });
  syncKind();
}
