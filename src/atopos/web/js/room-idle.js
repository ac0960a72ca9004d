// Extra Lock's idle timer for the room page: `onIdle` runs once after `seconds` without a
// key or pointer input anywhere on the page. Time comes only from setTimeout and
// performance.now (monotonic: a wall clock set back does not hold the lock off), so a test
// drives it with Playwright's clock instead of waiting minutes.

const INPUT_EVENTS = ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"];

/** Calls `onIdle` after `seconds` of no input, once per `start`. */
export class IdleTimer {
  constructor(seconds, onIdle) {
    this.#periodMs = seconds * 1000;
    this.#onIdle = onIdle;
  }

  #periodMs;
  #onIdle;
  #lastInput = 0;
  #timer = 0;
  #isRunning = false;
  #noteInput = () => {
    this.#lastInput = performance.now();
  };

  /** Count from now; input on the page starts the count again. */
  start() {
    this.stop();
    this.#isRunning = true;
    this.#lastInput = performance.now();
    for (const name of INPUT_EVENTS) {
      window.addEventListener(name, this.#noteInput, { capture: true, passive: true });
    }
    this.#wait(this.#periodMs);
  }

  stop() {
    this.#isRunning = false;
    clearTimeout(this.#timer);
    for (const name of INPUT_EVENTS) {
      window.removeEventListener(name, this.#noteInput, { capture: true });
    }
  }

  #wait(delayMs) {
    // One timer, re-armed only when it fires: input itself just notes the time.
    this.#timer = setTimeout(() => {
      if (!this.#isRunning) return;
      const idleMs = performance.now() - this.#lastInput;
      if (idleMs >= this.#periodMs) {
        this.stop();
        this.#onIdle();
      } else {
        this.#wait(this.#periodMs - idleMs);
      }
    }, delayMs);
  }
}
