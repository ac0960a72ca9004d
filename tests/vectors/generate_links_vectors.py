"""Rebuild tests/vectors/links.json (share and manage links, docs/protocol/access.md).

    .venv/bin/python tests/vectors/generate_links_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_links_vectors.py --check  # exit 1 if stale

The expected results are written here by hand from the rules (nothing imported from
`atopos`): a share link is `{server}/s/{id}#{link key}`, a manage link
`{server}/m/{id}#{manage token}`; the id is the canonical unpadded base64url of 16 bytes
(22 characters), the key and the token of 32 bytes (43 characters). An invalid vector
names the `part` that is damaged: `id`, `fragment` (key or token), or `url` (scheme, host,
query, marker, characters: what only a client handed the whole link checks; a browser
page got there by following the link and reads just the id and the fragment).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PATH = HERE / "links.json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


SECRET_ID = b64url(bytes(range(16)))
KEY = bytes(range(32))
KEY_TEXT = b64url(KEY)
TOKEN = b64url(bytes(range(100, 132)))
OTHER_ID = b64url(bytes([0xFB, 0xFF] * 8))  # uses "-" and "_"
OTHER_KEY = bytes([0xFF] * 32)


def valid(name: str, kind: str, link: str, server: str, secret_id: str, fragment: str) -> Any:
    vector: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "link": link,
        "valid": True,
        "server": server,
        "secret_id": secret_id,
        "secret_id_hex": base64.urlsafe_b64decode(secret_id + "==").hex(),
    }
    if kind == "share":
        vector["link_key_hex"] = base64.urlsafe_b64decode(fragment + "=").hex()
    else:
        vector["manage_token"] = fragment
    vector["canonical"] = f"{server}/{kind[0]}/{secret_id}#{fragment}"
    return vector


def invalid(name: str, kind: str, link: str, part: str, says: str) -> dict[str, Any]:
    return {"name": name, "kind": kind, "link": link, "valid": False, "part": part, "says": says}


def build() -> dict[str, Any]:
    share = f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT}"
    manage = f"https://atopos.example/m/{SECRET_ID}#{TOKEN}"
    vectors = [
        valid("share", "share", share, "https://atopos.example", SECRET_ID, KEY_TEXT),
        valid(
            "share-port-prefix-case-spaces",
            "share",
            f"  https://Atopos.Example:8443/base/s/{SECRET_ID}#{KEY_TEXT}\n",
            "https://atopos.example:8443/base",
            SECRET_ID,
            KEY_TEXT,
        ),
        valid(
            "share-ipv6-dash-underscore",
            "share",
            f"http://[::1]:9000/s/{OTHER_ID}#{b64url(OTHER_KEY)}",
            "http://[::1]:9000",
            OTHER_ID,
            b64url(OTHER_KEY),
        ),
        valid(
            "share-onion",
            "share",
            f"http://abcdefghijklmnop.onion/s/{SECRET_ID}#{KEY_TEXT}",
            "http://abcdefghijklmnop.onion",
            SECRET_ID,
            KEY_TEXT,
        ),
        valid("manage", "manage", manage, "https://atopos.example", SECRET_ID, TOKEN),
        valid(
            "manage-prefix",
            "manage",
            f"http://127.0.0.1:8080/a/b/m/{SECRET_ID}#{TOKEN}",
            "http://127.0.0.1:8080/a/b",
            SECRET_ID,
            TOKEN,
        ),
        invalid(
            "share-no-key", "share", f"https://atopos.example/s/{SECRET_ID}", "fragment", "no key"
        ),
        invalid("share-empty-key", "share", f"{share[: share.index('#')]}#", "fragment", "no key"),
        invalid("share-key-short", "share", share[:-1], "fragment", "key after '#'"),
        invalid("share-key-long", "share", share + "A", "fragment", "key after '#'"),
        invalid("share-key-padded", "share", share + "=", "fragment", "key after '#'"),
        # Same length, a non-canonical last character: it would decode to the same key.
        invalid("share-key-noncanonical", "share", share[:-1] + "J", "fragment", "key after '#'"),
        invalid(
            "share-key-standard-alphabet",
            "share",
            f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT[:-2]}+/",
            "fragment",
            "key after '#'",
        ),
        invalid(
            "share-id-short",
            "share",
            f"https://atopos.example/s/{SECRET_ID[:-1]}#{KEY_TEXT}",
            "id",
            "secret id",
        ),
        invalid(
            "share-id-long",
            "share",
            f"https://atopos.example/s/{SECRET_ID}A#{KEY_TEXT}",
            "id",
            "secret id",
        ),
        invalid(
            "share-id-plus",
            "share",
            f"https://atopos.example/s/{SECRET_ID[:-1]}+#{KEY_TEXT}",
            "id",
            "secret id",
        ),
        invalid(
            "share-id-trailing-slash",
            "share",
            f"https://atopos.example/s/{SECRET_ID}/#{KEY_TEXT}",
            "id",
            "secret id",
        ),
        invalid(
            "share-query",
            "share",
            f"https://atopos.example/s/{SECRET_ID}?x=1#{KEY_TEXT}",
            "url",
            "query",
        ),
        invalid(
            "share-ftp", "share", f"ftp://atopos.example/s/{SECRET_ID}#{KEY_TEXT}", "url", "http://"
        ),
        invalid(
            "share-no-scheme", "share", f"atopos.example/s/{SECRET_ID}#{KEY_TEXT}", "url", "http://"
        ),
        invalid(
            "share-no-host", "share", f"https:///s/{SECRET_ID}#{KEY_TEXT}", "url", "no server host"
        ),
        invalid(
            "share-wrong-marker",
            "share",
            f"https://atopos.example/x/{SECRET_ID}#{KEY_TEXT}",
            "url",
            "<server>/s/<id>",
        ),
        invalid("share-is-manage", "share", manage, "url", "manage link, not a share link"),
        invalid(
            "share-credentials",
            "share",
            f"https://user:pw@atopos.example/s/{SECRET_ID}#{KEY_TEXT}",
            "url",
            "user name",
        ),
        invalid(
            "share-bad-port",
            "share",
            f"https://atopos.example:99999/s/{SECRET_ID}#{KEY_TEXT}",
            "url",
            "not a valid URL",
        ),
        invalid(
            "share-space-inside",
            "share",
            f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT[:20]} {KEY_TEXT[20:]}",
            "url",
            "spaces",
        ),
        invalid(
            "share-non-ascii-host",
            "share",
            f"https://atöpos.example/s/{SECRET_ID}#{KEY_TEXT}",
            "url",
            "unexpected characters",
        ),
        invalid("share-empty", "share", "", "url", "http://"),
        invalid("manage-is-share", "manage", share, "url", "share link, not a manage link"),
        invalid(
            "manage-no-token",
            "manage",
            f"https://atopos.example/m/{SECRET_ID}",
            "fragment",
            "no token",
        ),
        invalid("manage-token-short", "manage", manage[:-2], "fragment", "token after '#'"),
        invalid("manage-token-escaped", "manage", manage + "%20", "fragment", "token after '#'"),
        invalid(
            "manage-id-short",
            "manage",
            f"https://atopos.example/m/{SECRET_ID[:-2]}#{TOKEN}",
            "id",
            "secret id",
        ),
    ]
    return {
        "description": (
            "Share links {server}/s/{id}#{link key} and manage links {server}/m/{id}#{token}: "
            "id = canonical unpadded base64url of 16 bytes, key and token of 32 bytes. "
            "Invalid vectors name the damaged part (id, fragment, url) and a few words of the "
            "Python client's sentence. Generated by tests/vectors/generate_links_vectors.py."
        ),
        "vectors": vectors,
    }


def main() -> int:
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        return 0 if PATH.read_text(encoding="utf-8") == text else 1
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
