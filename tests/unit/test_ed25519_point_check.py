"""`is_valid_ed25519_public_key` against a reference computed independently of it.

The reference is RFC 8032's own Python (section 6: decoding with an inversion and the
(p+3)/8 root, affine-free extended addition, no doubling formula), and pyca/OpenSSL's
verification: a signature we build for a mixed-order key (a real key plus a torsion point)
verifies with pyca exactly when the point pyca decoded is the one the reference encoded.
Inputs: random bytes, every non-canonical y >= p, x = 0 with the sign bit, the eight
small-order points and their non-canonical twins, real keys, and mixed-order points. The
check leans on libsodium's point decoding, which is held to the reference's too.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_core_ed25519_add
from nacl.exceptions import RuntimeError as SodiumRuntimeError

from atopos.crypto import device
from atopos.crypto.device import is_valid_ed25519_public_key

# -- RFC 8032, section 6, as the RFC writes it (one reduction added) -------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]
NEUTRAL: Point = (0, 1, 1, 0)


def _recover_x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    # Reduced mod p: as printed, the RFC's code leaves x2 a non-zero multiple of p for
    # y = p - 1 and then accepts x = 0 with the sign bit as x = p.
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decompress(raw: bytes) -> Point | None:
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _compress(point: Point) -> bytes:
    zinv = pow(point[2], P - 2, P)
    x, y = point[0] * zinv % P, point[1] * zinv % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _add(a: Point, b: Point) -> Point:
    big_a = (a[1] - a[0]) * (b[1] - b[0]) % P
    big_b = (a[1] + a[0]) * (b[1] + b[0]) % P
    c = 2 * a[3] * b[3] * D % P
    d = 2 * a[2] * b[2] % P
    e, f, g, h = big_b - big_a, d - c, d + c, big_b + big_a
    return (e * f, g * h, f * g, e * h)


def _mul(scalar: int, point: Point) -> Point:
    result = NEUTRAL
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _reference_is_valid(raw: bytes) -> bool:
    point = _decompress(raw)
    return point is not None and not _equal(_mul(8, point), NEUTRAL)


# -- inputs -------------------------------------------------------------------------------

_RNG = random.Random(8032)  # reproducible test inputs, not key material


def _torsion() -> list[Point]:
    """The eight points of small order: multiples of one point of order 8, found as L times a
    point that is not in the prime-order subgroup."""
    while True:
        point = _decompress(_RNG.randbytes(32))
        if point is None:
            continue
        candidate = _mul(L, point)
        if not _equal(_mul(4, candidate), NEUTRAL):
            return [_mul(k, candidate) for k in range(8)]


TORSION = _torsion()


def _with_y(y: int, sign: int) -> bytes:
    return int.to_bytes(y | (sign << 255), 32, "little")


def _adversarial_encodings() -> list[bytes]:
    encodings = [_with_y(y, sign) for y in range(P, 2**255) for sign in (0, 1)]
    encodings += [_with_y(1, 1), _with_y(P - 1, 1), _with_y(0, 0), _with_y(0, 1)]
    for point in TORSION:
        raw = _compress(point)
        y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
        encodings += [raw, _with_y(y, 1 - (raw[31] >> 7))]
        if y + P < 2**255:
            encodings += [_with_y(y + P, sign) for sign in (0, 1)]
    return encodings


def test_the_torsion_points_are_eight_distinct_points_of_small_order() -> None:
    assert len({_compress(point) for point in TORSION}) == 8
    assert all(_equal(_mul(8, point), NEUTRAL) for point in TORSION)


@pytest.mark.parametrize("raw", _adversarial_encodings(), ids=lambda raw: raw.hex())
def test_adversarial_encodings_are_judged_as_the_rfc_reference_judges_them(raw: bytes) -> None:
    assert is_valid_ed25519_public_key(raw) is _reference_is_valid(raw)
    assert not is_valid_ed25519_public_key(raw)


def test_the_small_order_ys_are_those_of_the_eight_torsion_points() -> None:
    # The check refuses small order by y alone: its constant must be exactly these five y.
    ys = {int.from_bytes(_compress(point), "little") & ((1 << 255) - 1) for point in TORSION}
    assert ys == device._SMALL_ORDER_Y
    assert len(ys) == 5


def test_random_encodings_are_judged_as_the_rfc_reference_judges_them() -> None:
    verdicts = []
    for _ in range(3000):
        raw = _RNG.randbytes(32)
        verdict = _reference_is_valid(raw)
        assert is_valid_ed25519_public_key(raw) is verdict, raw.hex()
        verdicts.append(verdict)
    # About half of all y have a point: both verdicts were exercised.
    assert 1200 < sum(verdicts) < 1800


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _secret_scalar(seed: bytes) -> int:
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return int.from_bytes(digest, "little")


def _signature_by(
    public: bytes, scalar: int, nonce_seed: bytes, *, k_is_multiple_of_8: bool
) -> tuple[bytes, bytes]:
    """A message and an Ed25519 signature by `scalar` under the encoding `public`, for a
    message whose challenge k is (or is not) a multiple of 8. Under `public` = [scalar]B + T
    with T of order 8, it verifies with cofactorless OpenSSL exactly when [k]T vanishes."""
    nonce_key = Ed25519PrivateKey.from_private_bytes(nonce_seed)
    r_encoded, r = _public_bytes(nonce_key), _secret_scalar(nonce_seed)
    for counter in range(400):
        message = counter.to_bytes(4, "big")
        k = int.from_bytes(hashlib.sha512(r_encoded + public + message).digest(), "little") % L
        if (k % 8 == 0) is k_is_multiple_of_8 and (k_is_multiple_of_8 or k % 2 == 1):
            s = (r + k * scalar) % L
            return message, r_encoded + s.to_bytes(32, "little")
    raise AssertionError("no fitting challenge in 400 messages")


@pytest.mark.parametrize("torsion_index", range(8))
def test_real_and_mixed_order_keys_match_pyca_and_the_reference(torsion_index: int) -> None:
    for _ in range(4):
        seed = _RNG.randbytes(32)
        real = _public_bytes(Ed25519PrivateKey.from_private_bytes(seed))
        assert is_valid_ed25519_public_key(real)
        assert _reference_is_valid(real)
        point = _decompress(real)
        assert point is not None
        assert _compress(point) == real
        mixed = _compress(_add(point, TORSION[torsion_index]))
        # Not of small order (8 times it is 8 times the real key): accepted, as the reference.
        assert is_valid_ed25519_public_key(mixed) is _reference_is_valid(mixed) is True
        # pyca decodes `mixed` to the reference's point: a signature that holds for that point
        # verifies, and for a T of order 8, one that misses [k]T by an odd k does not.
        key = Ed25519PublicKey.from_public_bytes(mixed)
        scalar = _secret_scalar(seed)
        message, signature = _signature_by(
            mixed, scalar, _RNG.randbytes(32), k_is_multiple_of_8=True
        )
        key.verify(signature, message)
        if torsion_index % 2:
            message, signature = _signature_by(
                mixed, scalar, _RNG.randbytes(32), k_is_multiple_of_8=False
            )
            with pytest.raises(InvalidSignature):
                key.verify(signature, message)


# -- libsodium decodes what the RFC decodes ---------------------------------------------


def _libsodium_decodes(raw: bytes) -> bool:
    try:
        crypto_core_ed25519_add(raw, device._NEUTRAL)
    except SodiumRuntimeError:
        return False
    return True


def _mixed_order_encodings(count: int) -> list[bytes]:
    mixed = []
    for index in range(count):
        real = _public_bytes(Ed25519PrivateKey.from_private_bytes(_RNG.randbytes(32)))
        point = _decompress(real)
        assert point is not None
        mixed.append(_compress(_add(point, TORSION[1 + index % 7])))
    return mixed


def test_libsodium_decodes_a_canonical_y_exactly_when_the_rfc_reference_does() -> None:
    # What the check asks of libsodium: for y < p, whether the point exists (whatever its
    # order, mixed-order keys included; its is_valid_point would refuse those).
    real = [
        _public_bytes(Ed25519PrivateKey.from_private_bytes(_RNG.randbytes(32))) for _ in range(200)
    ]
    mixed = _mixed_order_encodings(70)
    corpus = [*(_RNG.randbytes(32) for _ in range(2000)), *real, *mixed]
    corpus += [_compress(point) for point in TORSION]
    decoded = 0
    for raw in corpus:
        if int.from_bytes(raw, "little") & ((1 << 255) - 1) >= P:
            continue
        assert _libsodium_decodes(raw) is (_decompress(raw) is not None), raw.hex()
        decoded += _libsodium_decodes(raw)
        assert is_valid_ed25519_public_key(raw) is _reference_is_valid(raw), raw.hex()
    assert all(is_valid_ed25519_public_key(raw) for raw in [*real, *mixed])
    assert decoded >= len(real) + len(mixed) + len(TORSION)
