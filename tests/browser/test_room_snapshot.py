"""room-snapshot.js, the byte encoding of a suspended room (Extra Lock's idle lock), in
Chromium: every kind of value goes through the bytes unchanged, and damaged bytes (cut
short, trailing, an unknown tag, bad UTF-8, a `__proto__` key, nesting deeper than 32,
lengths and counts past the end, random bytes) give DamagedSnapshot and nothing else, fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.harness import open_vector_page
from tests.servers import ServerProcess

_TOOLS = """
window.snapshotTools = {
  load: () => import("/static/js/room-snapshot.js"),
  // Which error `decode` threw for `bytes`: "DamagedSnapshot", another name, or "none".
  outcome: (codec, bytes) => {
    try {
      codec.decodeSnapshot(bytes);
      return "none";
    } catch (error) {
      return error instanceof codec.DamagedSnapshot ? "DamagedSnapshot" : String(error);
    }
  },
};
"""

# A value with every kind the encoding holds, nested.
_SAMPLE = """
() => ({
  version: 1,
  nothing: null,
  yes: true,
  no: false,
  numbers: [0, -0.5, 2 ** 53 - 1, -7],
  text: "héllo ☃ \\u{1F511}",
  key: Uint8Array.from({ length: 40 }, (_, i) => i * 7),
  empty: new Uint8Array(0),
  map: new Map([[3, "three"], ["k", [new Uint8Array([1, 2])]]]),
  set: new Set(["1:0", "1:2"]),
  nested: { chains: [[0, new Uint8Array([9, 9]), 4]], deeper: { deepest: {} } },
})
"""


@pytest.fixture(scope="module")
def page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, _TOOLS) as vector_page:
        yield vector_page


def _outcomes(page: Page, build: str) -> list[str]:
    """Decode each byte array `build(codec, sample bytes)` gives; one outcome per array."""
    return list(
        page.evaluate(
            f"""async () => {{
              const codec = await window.snapshotTools.load();
              const good = codec.encodeSnapshot(({_SAMPLE})());
              const cases = (({build}))(codec, good);
              return cases.map((bytes) => window.snapshotTools.outcome(codec, bytes));
            }}"""
        )
    )


def test_every_kind_of_value_goes_through_the_bytes_unchanged(page: Page) -> None:
    same = page.evaluate(
        f"""async () => {{
          const codec = await window.snapshotTools.load();
          const value = ({_SAMPLE})();
          const back = codec.decodeSnapshot(codec.encodeSnapshot(value));
          const plain = (v) => {{
            if (v instanceof Uint8Array) return {{ bytes: [...v] }};
            if (v instanceof Map) return {{ map: [...v].map(([k, x]) => [plain(k), plain(x)]) }};
            if (v instanceof Set) return {{ set: [...v].map(plain) }};
            if (Array.isArray(v)) return v.map(plain);
            if (v !== null && typeof v === "object")
              return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
            return Object.is(v, -0) ? "-0" : v;
          }};
          return [JSON.stringify(plain(back)) === JSON.stringify(plain(value)),
                  back.map instanceof Map, back.set instanceof Set,
                  back.key instanceof Uint8Array];
        }}"""
    )
    assert same == [True, True, True, True]


def test_every_cut_and_every_trailing_byte_is_damage(page: Page) -> None:
    outcomes = _outcomes(
        page,
        """(codec, good) => [
          ...Array.from({ length: good.length }, (_, size) => good.slice(0, size)),
          Uint8Array.of(...good, 0),
          Uint8Array.of(0, 0),
        ]""",
    )
    assert len(outcomes) > 100
    assert set(outcomes) == {"DamagedSnapshot"}


def test_hostile_shapes_are_damage(page: Page) -> None:
    outcomes = _outcomes(
        page,
        """(codec, good) => {
          const u32 = (n) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
          const text = (s) => {
            const b = new TextEncoder().encode(s);
            return [...u32(b.length), ...b];
          };
          return [
            Uint8Array.of(10),                                  // unknown tag
            Uint8Array.of(255),
            Uint8Array.of(4, ...u32(2), 0xc3, 0x28),            // bad UTF-8 string
            Uint8Array.of(7, ...u32(1), ...u32(2), 0xff, 0xfe, 0), // bad UTF-8 key
            Uint8Array.of(7, ...u32(1), ...text("__proto__"), 7, ...u32(0)),
            Uint8Array.of(5, ...u32(0xffffffff), 1, 2, 3),      // bytes longer than what is left
            Uint8Array.of(4, ...u32(0xffffffff)),
            Uint8Array.of(6, ...u32(0xffffffff), 0),             // counts past the end
            Uint8Array.of(7, ...u32(0xffffffff)),
            Uint8Array.of(8, ...u32(0xffffffff), 0),
            Uint8Array.of(9, ...u32(0xffffffff), 0, 0),
            Uint8Array.of(3, 0, 0, 0),                          // a cut float64
            Uint8Array.of(...Array(34).fill([6, ...u32(1)]).flat(), 0), // 34 deep
            new Uint8Array(0),
          ];
        }""",
    )
    assert outcomes == ["DamagedSnapshot"] * 14


def test_nesting_up_to_32_is_read(page: Page) -> None:
    outcomes = _outcomes(
        page,
        """(codec, good) => [
          Uint8Array.of(...Array(32).fill([6, 0, 0, 0, 1]).flat(), 0),
          codec.encodeSnapshot({ constructor: 1, toString: "x", hasOwnProperty: null }),
        ]""",
    )
    assert outcomes == ["none", "none"]


def test_random_and_flipped_bytes_never_throw_anything_else(page: Page) -> None:
    outcomes: list[str] = _outcomes(
        page,
        """(codec, good) => {
          // A fixed xorshift stream: the same cases every run.
          let state = 0x9e3779b9;
          const next = () => {
            state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
            return state >>> 0;
          };
          const cases = [];
          for (let i = 0; i < 2000; i++) {
            const flipped = good.slice();
            flipped[next() % flipped.length] ^= 1 << (next() % 8);
            cases.push(flipped);
            cases.push(Uint8Array.from({ length: next() % 64 }, () => next() % 12));
          }
          return cases;
        }""",
    )
    assert len(outcomes) == 4000
    assert set(outcomes) <= {"DamagedSnapshot", "none"}, set(outcomes)


def test_encoding_refuses_what_it_cannot_hold(page: Page) -> None:
    refused: Any = page.evaluate(
        """async () => {
          const codec = await window.snapshotTools.load();
          const out = [];
          for (const value of [new Uint16Array(2), new ArrayBuffer(2), () => 1, 1n, new Date(0)]) {
            try { codec.encodeSnapshot({ value }); out.push("encoded"); }
            catch (error) { out.push(error.name); }
          }
          return out;
        }"""
    )
    assert refused == ["TypeError"] * 5
