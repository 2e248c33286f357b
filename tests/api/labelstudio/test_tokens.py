"""Label Studio token forms (the live exchange is in test_connect_live.py, against a real server)."""

from __future__ import annotations

import base64
import json

import pytest

from segpipe.errors import ConfigError
from segpipe.labelstudio.tokens import (
    LabelStudioAuth,
    bare_token,
    is_personal_access_token,
    jwt_expiry,
)


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize("written", ["abc123", "Token abc123", "token   abc123", "Bearer abc123", " abc123\n"])
def test_the_scheme_word_is_dropped(written: str) -> None:
    assert bare_token(written) == "abc123"


def test_kinds_and_legacy_header() -> None:
    pat = _jwt({"token_type": "refresh", "exp": 4_000_000_000})
    assert is_personal_access_token(f"Token {pat}") and not is_personal_access_token("a" * 40)
    assert LabelStudioAuth("http://ls", "Token " + "a" * 40).header() == {"Authorization": "Token " + "a" * 40}
    assert LabelStudioAuth("http://ls", "a" * 40).header() == {"Authorization": "Token " + "a" * 40}


def test_expiry_is_read_from_the_claims() -> None:
    assert jwt_expiry(_jwt({"exp": 1234})) == 1234.0
    assert jwt_expiry(_jwt({"sub": "x"})) is None
    assert jwt_expiry("not.a.jwt") is None


@pytest.mark.parametrize("written", ["", "Token ", "two words"])
def test_malformed_tokens_are_refused_with_a_reason(written: str) -> None:
    with pytest.raises(ConfigError, match="Label Studio token"):
        bare_token(written)
