"""The orjson fast paths read and write exactly what the stdlib would."""

from __future__ import annotations

import enum
import json
import math
import uuid

import pytest

from host.kas.srt import _json
from host.server.logs import _dumps


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
    assert _dumps(doc) == json.dumps(doc, separators=(",", ":"), default=str)


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
    got = _json(text.encode())
    assert json.dumps(got, sort_keys=True, default=repr) == json.dumps(expected, sort_keys=True, default=repr)


@pytest.mark.parametrize("bad", [b"{", b"[1,]", b"\xff", b"", b'{"a":}'])
def test_token_json_refusals_match_stdlib(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        _json(bad)


def test_token_json_parse_accepts_text_too():
    assert _json('{"big": 123456789012345678901234567890}') == {"big": 123456789012345678901234567890}
    assert _json('{"a": [1, 2]}') == {"a": [1, 2]}
    # a str holding a lone surrogate (not only its escape) still reaches the stdlib's parse
    assert _json('{"s": "\ud800", "big": 123456789012345678901}') == json.loads('{"s": "\ud800", "big": 123456789012345678901}')

