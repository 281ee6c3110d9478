"""Rewrap request tokens against a served platform: a maximum lifetime, and no replay of a
token that carries a `jti` (issue 13 item 9). The SDK's own token (iat, exp = iat + 2 h, no
jti) is the positive control."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from host.kas import srt
from tests.tdf.conftest import start_kas_platform
from tests.tdf.test_bad_input import fresh_tdf, manifest_of, only_result, post_rewrap, request_body, rsa_key


def token(kp, claims: dict, key=None) -> str:
    body = request_body(manifest_of(fresh_tdf(kp)), rsa_key())
    return jwt.encode({"requestBody": json.dumps(body), **claims}, key or rsa_key(), algorithm="RS256")


@pytest.fixture(scope="module")
def short_lived_kas(tmp_path_factory):
    kp = start_kas_platform(tmp_path_factory.mktemp("tdf-lifetime"), env={srt.MAX_LIFETIME_ENV: "120"})
    kp.activate("rsa:2048", "local", key_id="r1")
    yield kp
    kp.stop()


def test_the_sdk_token_shape_is_accepted(basic_kas):
    now = int(time.time())
    resp = post_rewrap(basic_kas, token(basic_kas, {"iat": now, "exp": now + 7200}))
    assert only_result(resp)["status"] == "permit"


@pytest.mark.parametrize("claims", [
    lambda now: {"iat": now, "exp": 10 ** 15},
    lambda now: {"exp": 10 ** 15},
    lambda now: {"exp": now + 7200 + 600},                 # no iat: counted from now
    lambda now: {"iat": now - 86_400, "exp": now + 60},    # issued a day ago, still "valid"
], ids=["exp-1e15", "exp-1e15-no-iat", "no-iat-too-long", "old-iat"])
def test_a_token_living_longer_than_the_maximum_is_refused(basic_kas, claims):
    resp = post_rewrap(basic_kas, token(basic_kas, claims(int(time.time()))))
    assert resp.status_code == 401, resp.text
    assert resp.json() == {"code": "unauthenticated",
                           "message": "signed_request_token lives longer than the maximum lifetime (7200 s)"}


def test_the_maximum_lifetime_is_configurable(short_lived_kas):
    now = int(time.time())
    assert only_result(post_rewrap(short_lived_kas, token(short_lived_kas, {"iat": now, "exp": now + 120})))[
        "status"] == "permit"
    resp = post_rewrap(short_lived_kas, token(short_lived_kas, {"iat": now, "exp": now + 7200}))
    assert resp.status_code == 401
    assert resp.json()["message"] == "signed_request_token lives longer than the maximum lifetime (120 s)"


def test_a_replayed_token_with_jti_is_refused(basic_kas):
    now = int(time.time())
    once = token(basic_kas, {"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex})
    assert only_result(post_rewrap(basic_kas, once))["status"] == "permit"
    again = post_rewrap(basic_kas, once)
    assert again.status_code == 401
    assert again.json() == {"code": "unauthenticated", "message": "signed_request_token was already used (jti replay)"}
    # another jti is another token
    other = token(basic_kas, {"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex})
    assert only_result(post_rewrap(basic_kas, other))["status"] == "permit"


def test_a_token_without_jti_may_be_sent_again(basic_kas):
    """The SDK sends no jti; its tokens stay usable within their (bounded) lifetime."""
    now = int(time.time())
    t = token(basic_kas, {"iat": now, "exp": now + 300})
    for _ in range(2):
        assert only_result(post_rewrap(basic_kas, t))["status"] == "permit"


def test_a_non_string_jti_is_refused(basic_kas):
    now = int(time.time())
    resp = post_rewrap(basic_kas, token(basic_kas, {"iat": now, "exp": now + 300, "jti": 7}))
    assert resp.status_code == 401


def test_an_invalid_maximum_lifetime_is_a_clear_error():
    from host import errors

    for bad in ("0", "-5", "two hours", "1e9"):
        with pytest.raises(errors.InvalidArgument, match=srt.MAX_LIFETIME_ENV):
            srt.max_lifetime_from_env({srt.MAX_LIFETIME_ENV: bad})
    assert srt.max_lifetime_from_env({}) == srt.DEFAULT_MAX_LIFETIME_SECONDS == 7200
    assert srt.max_lifetime_from_env({srt.MAX_LIFETIME_ENV: " 600 "}) == 600


def test_the_replay_memory_is_bounded():
    seen = srt._SeenJti(limit=3, retention_seconds=100)
    for i in range(10):
        assert seen.add(f"j{i}", 1000.0)
    assert len(seen) == 3 and not seen.add("j9", 1000.0)
    assert seen.add("j9", 1000.0 + 101)  # past the retention (its token has expired by then)
