"""The orjson fast paths read and write exactly what the stdlib would.

Through their public users: the server's JSON log lines (JsonFormatter.line) and the
request token's requestBody as SrtVerifier.verify parses it.
"""

from __future__ import annotations

import enum
import json
import math
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from host.errors import InvalidArgument
from host.kas.srt import SrtVerifier
from host.server.logs import JsonFormatter

_SIGNER = ec.generate_private_key(ec.SECP256R1())


def _request_body(text: str):
    """requestBody `text` in a request token, as SrtVerifier.verify parses it (signed with the DPoP key)."""
    now = int(time.time())
    token = jwt.encode({"requestBody": text, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex},
                       _SIGNER, algorithm="ES256")
    return SrtVerifier().verify(token, dpop_key=_SIGNER.public_key()).body


def _log_line(doc: dict) -> str:
    return JsonFormatter().line(0.0, "info", "t", "m", doc)


class Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize("doc", [
    {"a": 1, "b": "x", "c": True, "d": None, "e": [1, "two", None]},
    {"f": 0.5, "g": 1e20, "h": 1e-7, "i": 0.0, "j": -3.25},
    {"big": 2 ** 70, "neg": -(2 ** 65)},
    {"nan": math.nan, "inf": math.inf},
    {"text": "caf\u00e9 \u2603", "del": "a\x7fb", "ctl": "tab\there\nnl"},
    {"enum": Color.RED, "uuid": uuid.UUID(int=7), "nested": {"k": [1, {"x": 2}]}},
    {"a": 1, 2: "int key", None: "none key"},
    {"list": [1, "x", 0.5], "tuple": (1, 2), "bytes": b"\x00"},
])
def test_access_line_json_is_byte_identical(doc):
    line = {"ts": "1970-01-01T00:00:00.000Z", "level": "info", "logger": "t", "msg": "m", **doc}
    assert _log_line(doc) == json.dumps(line, separators=(",", ":"), default=str)


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [true, false, null], "c": "x"}',
    '{"big": 123456789012345678901234567890}',
    '{"nan": NaN, "inf": Infinity}',
    '{"s": "\\ud800 lone surrogate"}',
    '{"u": "\\u00e9\\u2603", "f": 1.5e300}',
    '{"neg": -123456789012345678901234, "edge": 18446744073709551616, "e19": 1000000000000000000}',
    '{"digits in a string": "12345678901234567890123", "n": 7}',
])
def test_token_json_parse_matches_stdlib(text):
    expected = json.loads(text)
    got = _request_body(text)
    assert json.dumps(got, sort_keys=True, default=repr) == json.dumps(expected, sort_keys=True, default=repr)


@pytest.mark.parametrize("bad", ["{", "[1,]", "\udcff", "", '{"a":}'])
def test_token_json_refusals_match_stdlib(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(InvalidArgument, match="requestBody is not valid JSON"):
        _request_body(bad)


def test_token_json_parse_of_text_with_a_lone_surrogate():
    # the claim is a str holding a lone surrogate (not only its escape): it still reaches the stdlib's parse
    text = '{"s": "\ud800", "big": 123456789012345678901}'
    assert _request_body(text) == json.loads(text)
    assert _request_body('{"a": [1, 2]}') == {"a": [1, 2]}

