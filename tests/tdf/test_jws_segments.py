"""The request token's base64url segments decode exactly as a plain reading of RFC 7515 says.

host.kas.srt decodes segments with its own fast checks (alphabet, padding,
canonical trailing bits) and a SIMD decoder; this pins it to a slow, obvious
reference on crafted and random segments, so a faster rewrite cannot change
what is accepted.
"""

from __future__ import annotations

import base64
import random

import pytest

from host.errors import InvalidArgument
# Private on purpose: the JWS segment decoder is compared with a reference on thousands of
# crafted and random inputs; through SrtVerifier.verify each would need a signed token.
from host.kas.srt import _segment

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def reference(segment: bytes) -> bytes:
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1:
        raise ValueError("padding")
    if any(c not in ALPHABET for c in stripped):
        raise ValueError("alphabet")
    data = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != stripped:  # canonical: no stray trailing bits
        raise ValueError("not canonical")
    return data


def outcome(fn, segment: bytes):
    try:
        return fn(segment)
    except (ValueError, InvalidArgument):
        return "refused"


CRAFTED = [
    b"", b"A", b"AA", b"AAA", b"AAAA", b"AB", b"AQ", b"AR", b"AAE", b"AAF", b"QQ==", b"QQ=", b"QQ===",
    b"QUI=", b"QUI", b"QUJD", b"Q===", b"=", b"==", b"QQ==QQ==", b"Q=Q=", b"+/+/", b"-_-_", b"ab+c", b"ab/c",
    b"ab c", b"ab\nc", b"ab\x00c", b"\xff\xfe", b"ab.c", b"eyJhbGciOiJSUzI1NiJ9", b"_-8", b"__8", b"__9",
]


@pytest.mark.parametrize("segment", CRAFTED)
def test_crafted_segments(segment):
    assert outcome(_segment, segment) == outcome(reference, segment)


def test_random_segments_match_the_reference():
    rng = random.Random(7)
    odd = b"+/=. \n\x00\x80"
    checked = refused = 0
    for _ in range(20_000):
        n = rng.randrange(0, 40)
        segment = bytes(rng.choice(ALPHABET) for _ in range(n))
        if rng.random() < 0.3 and n:  # a stray character somewhere
            i = rng.randrange(n)
            segment = segment[:i] + bytes([rng.choice(odd)]) + segment[i + 1:]
        if rng.random() < 0.3:
            segment += b"=" * rng.randrange(1, 4)
        expected = outcome(reference, segment)
        assert outcome(_segment, segment) == expected, segment
        checked += 1
        refused += expected == "refused"
    assert 0 < refused < checked  # both outcomes were exercised
