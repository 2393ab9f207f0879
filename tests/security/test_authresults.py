"""The one Authentication-Results reader, as the gateway and the rules both use it."""

from __future__ import annotations

import pytest

from postroom import authresults
from postroom.gateway.auth import authenticate
from postroom.model import Envelope
from postroom.parsing import parse
from postroom.rules import RuleInput
from postroom.testing import make_eml

STAMP = ("MX.Postroom.Example;\r\n spf=pass smtp.mailfrom=mail.supplier.be;\r\n"
         " dkim=pass header.d=Supplier.be; dmarc=fail header.from=supplier.be")


def test_parse_lowers_names_and_keeps_properties() -> None:
    stamp = authresults.parse(STAMP)
    assert stamp.authserv_id == "mx.postroom.example"
    assert [(v.method, v.result) for v in stamp.verdicts] == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "fail")]
    assert stamp.verdicts[1].properties["header.d"] == "Supplier.be"


def test_malformed_value_raises() -> None:
    with pytest.raises(Exception):  # noqa: B017 - authres raises several unrelated types
        authresults.parse("; ; =")


def test_gateway_and_rules_read_the_same_stamp() -> None:
    raw = make_eml(sender="billing@supplier.be", headers={"Authentication-Results": STAMP.replace("\r\n", "")})
    gateway = authenticate(raw, trusted_authserv_ids=("mx.postroom.example",))
    rules = RuleInput.from_parsed(parse(raw), Envelope(mail_from="billing@supplier.be", rcpt_tos=()),
                                  trusted_authserv_ids=("mx.postroom.example",))
    assert (gateway.spf, gateway.dkim, gateway.dmarc) == ("pass", "pass", "fail")
    assert (rules.spf, rules.dkim, rules.dmarc) == (("pass",), ("pass",), ("fail",))
    assert gateway.dkim_domains == ("supplier.be",)
    untrusted = authenticate(raw, trusted_authserv_ids=("other.example",))
    assert untrusted.dmarc == "none"
