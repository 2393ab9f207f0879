"""Reply tokens: round trip, forged, truncated, other tenant, compact."""

from __future__ import annotations

import secrets

import pytest

from postroom.tokens import TokenClaim, make_reply_address, make_token, token_of, verify_token

SECRET = secrets.token_bytes(32)


@pytest.mark.parametrize(("conversation_id", "contact_id"), [(1, 1), (127, 128), (2**40, 3), (0, 2**62)])
def test_round_trip(conversation_id: int, contact_id: int) -> None:
    token = make_token(SECRET, conversation_id, contact_id)
    assert verify_token(SECRET, token) == TokenClaim(conversation_id, contact_id)
    assert verify_token(SECRET, token.upper()) == TokenClaim(conversation_id, contact_id)


def test_compact_and_address_safe() -> None:
    address = make_reply_address(SECRET, "Acme.Mail.Test", 123456, 654321)
    local, _, domain = address.partition("@")
    assert domain == "acme.mail.test" and local.startswith("reply+")
    assert len(local) <= 64 and local == local.lower() and local[6:].isalnum()
    assert len(token_of(address) or "") < 32


def test_other_tenant_secret_fails() -> None:
    token = make_token(SECRET, 5, 6)
    assert verify_token(secrets.token_bytes(32), token) is None


def test_every_single_character_change_fails() -> None:
    token = make_token(SECRET, 5, 6)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for index in range(len(token)):
        for char in alphabet:
            if char != token[index]:
                forged = token[:index] + char + token[index + 1:]
                assert verify_token(SECRET, forged) is None, forged


@pytest.mark.parametrize("garbage", ["", "x", "!!!!", "a" * 200, "reply", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_garbage_fails(garbage: str) -> None:
    assert verify_token(SECRET, garbage) is None


def test_truncated_fails() -> None:
    token = make_token(SECRET, 5, 6)
    for cut in range(1, len(token)):
        assert verify_token(SECRET, token[:cut]) is None


def test_token_of() -> None:
    assert token_of("Reply+ABC@acme.mail.test") == "abc"
    assert token_of("<reply+abc@acme.mail.test>") == "abc"
    assert token_of("inbox@acme.mail.test") is None
    assert token_of("reply+@acme.mail.test") is None


def test_bounce_tokens_name_one_outbound_message_and_are_not_reply_tokens() -> None:
    import secrets as _secrets

    from postroom.tokens import make_bounce_address, make_token, token_of, verify_bounce_token, verify_token

    key = _secrets.token_bytes(32)
    address = make_bounce_address(key, "Acme.Mail.Test", 4242)
    assert address.startswith("bounce+") and address.endswith("@acme.mail.test")
    token = token_of(address, "bounce+")
    assert verify_bounce_token(key, token) == 4242
    assert verify_token(key, token) is None, "a bounce token is never a reply token"
    assert verify_bounce_token(key, make_token(key, 4242, 1)) is None, "nor the other way round"
    assert verify_bounce_token(_secrets.token_bytes(32), token) is None
    assert verify_bounce_token(key, token[:-2]) is None
