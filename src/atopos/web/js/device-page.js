// The "This device" page (`/device`): make this browser's device on first use (non-extractable
// Ed25519 and X25519 keys in IndexedDB, device-store.js), show its device code with a copy
// button and a QR code, and forget it after a confirmation.

import { forgetDevice, loadOrCreateDevice, supportsDeviceKeys } from "./device-store.js";
import { qrSvg } from "./qr.js";
import { bindConfirmBox, bindCopy, byId, showState } from "./ui.js";

const confirmBox = byId("confirm-forget");
const deviceError = byId("device-error");
let code = "";

function show(device, isNew) {
  code = device.code;
  byId("device-code").textContent = code;
  byId("device-qr").replaceChildren(qrSvg(code, "QR code of the device code"));
  byId("device-status").textContent = isNew
    ? "This browser is now a device. A sender can bind a secret to it, and then only this" +
      " browser can open that secret."
    : "This browser is a device: a sender can bind a secret to it, and then only this browser" +
      " can open that secret.";
  confirmBox.hidden = true;
  deviceError.hidden = true;
  document.body.dataset.deviceCode = code;
  showState("ready", { focus: false });
}

function fail(error) {
  byId("failed-message").textContent =
    error?.name === "QuotaExceededError" || error?.name === "InvalidStateError"
      ? "This browser does not let this page store keys (a private window, or storage is" +
        " blocked for this site)."
      : "This browser's storage could not be used for the device. Nothing was shared.";
  showState("failed", { focus: false });
}

async function start() {
  try {
    const { device, isNew } = await loadOrCreateDevice();
    show(device, isNew);
  } catch (error) {
    fail(error);
  }
}

async function forget() {
  const button = byId("confirm-forget-button");
  button.disabled = true;
  try {
    await forgetDevice();
    code = "";
    byId("device-code").textContent = "";
    byId("device-qr").replaceChildren();
    delete document.body.dataset.deviceCode;
    showState("forgotten");
  } catch {
    deviceError.textContent = "The device could not be deleted. Try again.";
    deviceError.hidden = false;
  } finally {
    button.disabled = false;
  }
}

if (!(await supportsDeviceKeys())) {
  showState("unsupported", { focus: false });
} else {
  bindCopy(byId("copy-code"), () => code, byId("copy-code-status"));
  bindConfirmBox(byId("forget-button"), confirmBox, byId("cancel-forget-button"));
  byId("confirm-forget-button").addEventListener("click", forget);
  byId("make-device").addEventListener("click", start);
  await start();
}
