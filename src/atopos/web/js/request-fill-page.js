// The fill page (`/q/{id}`): someone asked for a secret with a request link; the person who
// has it types or drops it here. It is sealed in this browser to the requester's device (the
// device code in the link's fragment, which the server never sees), with the request key as
// the link key, and uploaded once. Only the requester's device can then take it and open it.

import { ApiError } from "./api.js";
import { supportsDeviceKeys } from "./device-store.js";
import { Sealer } from "./envelope.js";
import { secretIdFromPath, takeFragment } from "./links.js";
import { LocalContentError, metadataOf, sealContent } from "./local-content.js";
import { fillRequest, RequestGone } from "./request-api.js";
import { fillTokenOf } from "./request-keys.js";
import { parseRequestFragment } from "./request-links.js";
import { byId, formatBytes, formatWhen, hasWebCrypto, setProgress, showState } from "./ui.js";

const form = byId("fill-form");
const textInput = byId("secret-text");
const fileInput = byId("secret-file");
const dropZone = byId("drop-zone");
const fileChosen = byId("file-chosen");
const formError = byId("form-error");
const fillButton = byId("fill-button");
const workingStep = byId("working-step");
const workingProgress = byId("working-progress");

let chosenFile = null;
let request = null; // {requestId, requestKey, device}

function showError(message) {
  formError.textContent = message;
  formError.hidden = false;
}

function hideError() {
  formError.hidden = true;
  formError.textContent = "";
}

function chooseFile(file) {
  chosenFile = file ?? null;
  fileChosen.hidden = chosenFile === null;
  fileChosen.textContent = chosenFile ? `${chosenFile.name} · ${formatBytes(chosenFile.size)}` : "";
  byId("clear-file").hidden = chosenFile === null;
  textInput.disabled = chosenFile !== null;
  if (chosenFile !== null) hideError();
}

function report(step, fraction) {
  workingStep.textContent = step;
  setProgress(workingProgress, fraction, step);
}

async function fill() {
  const file = chosenFile;
  const text = file === null ? new TextEncoder().encode(textInput.value) : null;
  const metadata = metadataOf(text, file);
  report("Encrypting…", 0);
  const sealer = await Sealer.create(request.requestKey, metadata, { device: request.device });
  const envelope = await sealContent(sealer, text, file, (done, total) =>
    report("Encrypting…", done / total),
  );
  report("Sending the encrypted secret…", 0);
  const fillToken = await fillTokenOf(request.requestKey);
  return fillRequest(request.requestId, fillToken, envelope, metadata.kind, (sent, total) =>
    report("Sending the encrypted secret…", sent / total),
  );
}

async function onSubmit(event) {
  event.preventDefault();
  hideError();
  if (chosenFile === null && textInput.value.trim() === "") {
    showError("Type or paste the secret first, or choose a file.");
    textInput.focus();
    return;
  }
  fillButton.disabled = true;
  showState("working");
  try {
    const filled = await fill();
    form.reset();
    chooseFile(null);
    byId("done-summary").textContent =
      "Only the device that asked for it can open it, once, until " +
      `${formatWhen(filled.expires_at)}. Then it is deleted from the server.`;
    showState("done");
  } catch (error) {
    if (error instanceof RequestGone) {
      showState("gone");
      return;
    }
    showState("compose");
    showError(
      error instanceof ApiError || error instanceof LocalContentError
        ? error.message
        : "Something went wrong while encrypting. Nothing was sent. Try again.",
    );
  } finally {
    fillButton.disabled = false;
  }
}

function chooseDroppedFiles(files) {
  if (files.length > 1) {
    showError(
      `${files.length} files were dropped, and a request takes one file. Drop one file, ` +
        "or put them in one archive (such as a .zip) first. Nothing was added.",
    );
    return;
  }
  chooseFile(files[0]);
}

async function start() {
  // The key leaves the address bar (and so the history) first, whatever happens next.
  const fragment = takeFragment();
  if (!hasWebCrypto() || !(await supportsDeviceKeys())) {
    showState("unsupported");
    return;
  }
  const requestId = secretIdFromPath();
  const parsed = await parseRequestFragment(fragment);
  if (requestId === null || parsed === null) {
    showState("broken");
    return;
  }
  request = { requestId, ...parsed };
  form.addEventListener("submit", onSubmit);
  fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));
  document.addEventListener("dragover", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    dropZone.classList.add("is-dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("is-dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    dropZone.classList.remove("is-dragging");
    chooseDroppedFiles(event.dataTransfer.files);
  });
  byId("clear-file").addEventListener("click", () => {
    fileInput.value = "";
    chooseFile(null);
  });
  showState("compose");
}

start();
