"""Sphinx packet benchmark: hop processings/s on one core and 5-hop packet build time, for
Atopos (crypto/sphinx.py), a bare hop written directly on pyca primitives (the floor) and
`sphinxmix` (the Loopix authors' library), side by side in the same run.

    .venv/bin/python bench/sphinx.py [--slice-seconds 0.05] [--slices 60]

Every implementation runs in turn for `--slice-seconds` of CPU time, `--slices` times;
each figure is the median slice, per CPU second (the machine is shared). Where a hop's time
goes (py-spy: `pip install --target DIR py-spy`, not a project dependency):

    DIR/bin/py-spy record -r 400 -f raw -o hop.txt -- .venv/bin/python bench/sphinx.py --hop-loop 10
    .venv/bin/python bench/sphinx.py --split hop.txt

sphinxmix (and petlib) are installed with `pip install --target /tmp/atopos-bench-sphinxmix`
on first use, never into the project's environment. Prints ONE JSON line on stdout (progress
on stderr). See docs/performance.md, "Mixnet packets".
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import hashlib
import hmac
import json
import linecache
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from atopos.crypto import sphinx

SPHINXMIX_DIR = Path("/tmp/atopos-bench-sphinxmix")
HOPS = 5


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def alternating_rates(
    works: dict[str, Callable[[], object]], seconds: float, slices: int
) -> dict[str, float]:
    """Calls per CPU second of each work: the median over `slices` slices of `seconds` of
    this process's CPU time each, the works taking turns slice by slice. CPU time, not wall
    time: on a machine shared with other engineers the wall clock counts their work too.
    Short alternating slices give every work the same share of the others' disturbance
    (caches, a busy sibling hyperthread), and the median drops the slices it hit hardest."""
    rates: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(slices):
        for name, work in works.items():
            calls, start = 0, time.process_time()
            while (elapsed := time.process_time() - start) < seconds:
                for _ in range(5):
                    work()
                calls += 5
            rates[name].append(calls / elapsed)
    return {name: statistics.median(values) for name, values in rates.items()}


_CTR = modes.CTR(bytes(16))


def bare_hop(private: X25519PrivateKey, packet: bytes) -> tuple[bytes, bytes]:
    """The same hop as crypto/sphinx.py with no structure around it: the floor."""
    alpha, beta, gamma = packet[:32], packet[32:377], packet[377:409]
    shared = private.exchange(X25519PublicKey.from_public_bytes(alpha))
    okm = HKDF(hashes.SHA256(), 256, None, b"atopos sphinx v1 hop keys").derive(shared)
    if not hmac.compare_digest(hmac.digest(okm[32:64], beta, hashlib.sha256), gamma):
        raise ValueError
    stream = Cipher(algorithms.AES(okm[:32]), _CTR).encryptor().update(bytes(414))
    opened = int.from_bytes(beta + bytes(69), "little") ^ int.from_bytes(stream, "little")
    routing = opened.to_bytes(414, "little")
    k = okm[64:192]
    left, right = packet[409:441], packet[441:]

    def x32(a: bytes, b: bytes) -> bytes:
        return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(32)

    left = x32(left, hmac.digest(k[96:], right, hashlib.sha256))
    right = Cipher(algorithms.AES(x32(left, k[64:96])), _CTR).encryptor().update(right)
    left = x32(left, hmac.digest(k[32:64], right, hashlib.sha256))
    right = Cipher(algorithms.AES(x32(left, k[:32])), _CTR).encryptor().update(right)
    blinding = X25519PrivateKey.from_private_bytes(okm[192:224])
    next_alpha = blinding.exchange(X25519PublicKey.from_public_bytes(alpha))
    return routing[:69], next_alpha + routing[69:] + routing[37:69] + left + right


def atopos_works() -> dict[str, Callable[[], object]]:
    keys = [X25519PrivateKey.generate() for _ in range(HOPS)]
    route = [
        sphinx.Hop(k.public_key().public_bytes_raw(), bytes([i]) * 32, 50)
        for i, k in enumerate(keys)
    ]
    message = os.urandom(sphinx.MESSAGE_BYTES)
    packet = sphinx.create_forward_packet(route, b"R" * 32, message, os.urandom)
    relay = sphinx.process_packet(keys[0], packet)
    assert isinstance(relay, sphinx.Relay)
    _routing, bare_next = bare_hop(keys[0], packet)
    assert bare_next == relay.packet, "the bare hop must compute the same packet"
    return {
        "atopos_hop": lambda: sphinx.process_packet(keys[0], packet),
        "bare_hop": lambda: bare_hop(keys[0], packet),
        "atopos_build": lambda: sphinx.create_forward_packet(route, b"R" * 32, message, os.urandom),
    }


def sphinxmix_works() -> tuple[dict[str, Callable[[], object]], str]:
    if not (SPHINXMIX_DIR / "sphinxmix").exists():
        log(f"installing sphinxmix into {SPHINXMIX_DIR}")
        command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(SPHINXMIX_DIR)]
        subprocess.run([*command, "sphinxmix"], check=True, timeout=600)
    sys.path.append(str(SPHINXMIX_DIR))
    from sphinxmix.SphinxClient import Nenc, create_forward_message
    from sphinxmix.SphinxNode import sphinx_process
    from sphinxmix.SphinxParams import SphinxParams

    # Same payload size; the header room for 5 hops of sphinxmix's own routing encoding.
    params = SphinxParams(header_len=192 * 2, body_len=sphinx.PAYLOAD_BYTES)
    group = params.group
    secrets = [group.gensecret() for _ in range(HOPS)]
    publics = [group.expon(group.g, [x]) for x in secrets]
    routing = [Nenc(i) for i in range(HOPS)]
    message = os.urandom(sphinx.MESSAGE_BYTES - 64)
    header, delta = create_forward_message(params, routing, publics, b"dest", message)
    sphinx_process(params, secrets[0], header, delta)
    works: dict[str, Callable[[], object]] = {
        "sphinxmix_hop": lambda: sphinx_process(params, secrets[0], header, delta),
        "sphinxmix_build": lambda: create_forward_message(
            params, routing, publics, b"dest", message
        ),
    }
    return works, type(group).__name__


# py-spy's raw (collapsed) stacks of `--hop-loop`, grouped by primitive: the innermost frame
# in atopos code decides, by its module or the text of its source line (first match wins).
_SPLIT_BY_MODULE = {
    "sphinx_x25519.py": "X25519 blinding b*alpha",
    "hkdf.py": "HKDF-SHA256",
}
_SPLIT_BY_LINE = [
    ("from_private_bytes", "X25519 key object from bytes (derives a public key)"),
    ("private_key.exchange(", "X25519 node exchange y*alpha"),
    ("blinding", "X25519 blinding b*alpha"),
    ("hmac.digest", "HMAC-SHA256"),
    ("_mac(", "HMAC-SHA256"),
    ("Cipher(", "AES-256-CTR"),
    (".update(", "AES-256-CTR"),
]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*):(?P<line>\d+)\)$")


def hop_loop(seconds: float) -> None:
    """Atopos hops only, for `seconds` of wall time, for a profiler to sample."""
    hop = atopos_works()["atopos_hop"]
    calls, start, deadline = 0, time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            hop()
        calls += 100
    log(f"{(time.process_time() - start) / calls * 1e6:.1f} us of CPU per hop")


def split(raw_stacks: Path) -> dict[str, float]:
    """Share of the hop's samples per primitive; the rest is our Python, by function. pyca's
    own Python (Cipher objects) counts with its primitive."""
    source = Path(sphinx.__file__).resolve().parent.parent
    shares: dict[str, float] = {}
    total = 0
    for line in raw_stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        ours = [m for f in frames if "atopos/" in f and (m := _FRAME.match(f))]
        if not any(m["function"] == "process_packet" for m in ours):
            continue
        total += int(count)
        inner = ours[-1]
        module = inner["path"].rsplit("/", 1)[-1]
        path = source / inner["path"][inner["path"].index("atopos/") + len("atopos/") :]
        text = linecache.getline(str(path), int(inner["line"]))
        group = _SPLIT_BY_MODULE.get(module) or next(
            (name for needle, name in _SPLIT_BY_LINE if needle in text),
            f"Python: {inner['function']}",
        )
        if module == "sphinx_lioness.py" and not group.startswith("Python"):
            group = f"Lioness {group}"
        shares[group] = shares.get(group, 0) + int(count)
    return {k: round(100 * v / total, 1) for k, v in sorted(shares.items(), key=lambda i: -i[1])}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--slice-seconds", type=float, default=0.05, help="CPU seconds per slice (0.05)"
    )
    parser.add_argument("--slices", type=int, default=60, help="slices per implementation (60)")
    parser.add_argument("--hop-loop", type=float, metavar="SECONDS", help="only run hops")
    parser.add_argument("--split", type=Path, metavar="RAW", help="group py-spy raw stacks")
    args = parser.parse_args()
    if args.hop_loop:
        hop_loop(args.hop_loop)
        return 0
    if args.split:
        print(json.dumps({"bench": "sphinx-split", "percent": split(args.split)}), flush=True)
        return 0
    works = atopos_works()
    theirs: dict[str, Any] = {}
    try:
        their_works, theirs["group"] = sphinxmix_works()
        works |= their_works
    except (subprocess.SubprocessError, ImportError, OSError) as error:
        theirs["error"] = f"{type(error).__name__}: {error}"
    log(f"{', '.join(works)}: {args.slices} slices of {args.slice_seconds} s CPU each, in turn")
    best = alternating_rates(works, args.slice_seconds, args.slices)
    ours = {
        "hop_per_s": round(best["atopos_hop"]),
        "bare_hop_per_s": round(best["bare_hop"]),
        "build_5_hops_ms": round(1000 / best["atopos_build"], 3),
        "packet_bytes": sphinx.PACKET_BYTES,
    }
    if "sphinxmix_hop" in best:
        theirs["hop_per_s"] = round(best["sphinxmix_hop"])
        theirs["build_5_hops_ms"] = round(1000 / best["sphinxmix_build"], 3)
    result: dict[str, Any] = {
        "bench": "sphinx",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "atopos": ours,
        "sphinxmix": theirs,
        "hop_vs_bare": round(best["atopos_hop"] / best["bare_hop"], 3),
    }
    if "sphinxmix_hop" in best:
        result["hop_vs_sphinxmix"] = round(best["atopos_hop"] / best["sphinxmix_hop"], 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
