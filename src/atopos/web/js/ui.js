// Small DOM helpers shared by the pages: switching between a page's states, progress bars,
// copy buttons, confirmation boxes and human-readable sizes and times. Everything writes
// text, never HTML.

export function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`missing #${id}`);
  return element;
}

/**
 * Show the <section data-state> with this name and hide the others; move focus to its
 * heading so keyboard and screen-reader users land on what changed.
 */
export function showState(name, { focus = true } = {}) {
  let shown = null;
  for (const section of document.querySelectorAll("[data-state]")) {
    section.hidden = section.dataset.state !== name;
    if (!section.hidden) shown = section;
  }
  document.body.dataset.currentState = name;
  const heading = shown?.querySelector("h1, h2");
  if (focus && heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: false });
  }
}

/** Set a <progress> to a fraction in [0, 1], or make it indeterminate with null. */
export function setProgress(progress, fraction, label) {
  if (fraction === null) {
    progress.removeAttribute("value");
  } else {
    progress.max = 1;
    progress.value = Math.max(0, Math.min(1, fraction));
  }
  if (label !== undefined) progress.setAttribute("aria-valuetext", label);
}

const sizeFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function formatBytes(bytes) {
  const units = ["bytes", "kB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  if (unit === 0) return bytes === 1 ? "1 byte" : `${bytes} bytes`;
  return `${sizeFormat.format(value)} ${units[unit]}`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** "12 Mar 2026, 14:05 (in 3 hours)" for a Unix time in seconds. */
export function formatWhen(unixSeconds) {
  const seconds = unixSeconds - Date.now() / 1000;
  const steps = [
    [60, "second"],
    [60, "minute"],
    [24, "hour"],
    [Number.POSITIVE_INFINITY, "day"],
  ];
  let amount = seconds;
  let unit = "second";
  for (const [size, name] of steps) {
    unit = name;
    if (Math.abs(amount) < size) break;
    amount /= size;
  }
  return `${absolute.format(unixSeconds * 1000)} (${relative.format(Math.round(amount), unit)})`;
}

/**
 * Make `button` copy `text()` to the clipboard, saying so next to it. Falls back to
 * selecting the text where the Clipboard API is missing (plain http on a LAN address).
 */
export function bindCopy(button, text, status) {
  const original = button.textContent;
  let timer = 0;
  button.addEventListener("click", async () => {
    let message;
    try {
      await navigator.clipboard.writeText(text());
      message = "Copied";
    } catch {
      message = "Press Ctrl+C (⌘C) to copy";
      selectContents(button.dataset.copySource);
    }
    button.textContent = message === "Copied" ? "Copied ✓" : original;
    if (status) status.textContent = message;
    clearTimeout(timer);
    timer = setTimeout(() => {
      button.textContent = original;
      if (status) status.textContent = "";
    }, 2500);
  });
}

/**
 * A confirmation box for a step that cannot be undone: `openButton` shows `box` and moves
 * focus to `cancelButton` (the safe choice); `cancelButton` hides it and gives focus back.
 */
export function bindConfirmBox(openButton, box, cancelButton) {
  openButton.addEventListener("click", () => {
    box.hidden = false;
    cancelButton.focus();
  });
  cancelButton.addEventListener("click", () => {
    box.hidden = true;
    openButton.focus();
  });
}

function selectContents(id) {
  const element = id ? document.getElementById(id) : null;
  if (element === null) return;
  if (element instanceof HTMLTextAreaElement || element instanceof HTMLInputElement) {
    element.select();
    return;
  }
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

/** Plural helper: count("view", 3) -> "3 views". */
export function count(noun, value) {
  return `${value} ${noun}${value === 1 ? "" : "s"}`;
}

/** True when this page can do its cryptography (WebCrypto needs a secure context). */
export function hasWebCrypto() {
  return globalThis.isSecureContext && globalThis.crypto?.subtle !== undefined;
}
