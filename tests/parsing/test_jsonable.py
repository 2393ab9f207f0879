"""model.to_jsonable: the JSON shape of parsed mail (the pipeline stores it)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from postroom.model import Address, Attachment, Bounce, ParsedMessage, to_jsonable


def reference(value):
    """The contract spelled out plainly: dataclasses as dicts without bytes fields, ISO dates, lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: reference(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not isinstance(getattr(value, f.name), bytes)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [reference(v) for v in value]
    if isinstance(value, dict):
        return {k: reference(v) for k, v in value.items()}
    return value


def test_fixtures_match_the_contract(parsed):
    for name, msg in parsed.items():
        assert to_jsonable(msg) == reference(msg), name


def test_shape():
    msg = ParsedMessage(message_id="<a@b>", in_reply_to=(), references=("<r@b>",), subject="s",
                        date=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), sender=Address("N", "n@x.example"),
                        attachments=(Attachment("f.pdf", "application/pdf", 3, "ab", data=b"pdf"),),
                        bounce=Bounce(("p@x.example",), ()), headers=(("Subject", "s"),))
    out = to_jsonable({"parsed": msg, "n": 1, "ok": True, "blob": b"x"})
    assert out["parsed"]["date"] == "2024-01-02T03:04:05+00:00"
    assert out["parsed"]["sender"] == {"name": "N", "address": "n@x.example"}
    assert "data" not in out["parsed"]["attachments"][0] and out["parsed"]["attachments"][0]["size"] == 3
    assert out["parsed"]["bounce"] == {"permanent": ["p@x.example"], "temporary": [], "original_message_id": None,
                                       "status": None}
    assert out["parsed"]["headers"] == [["Subject", "s"]]
    assert (out["n"], out["ok"], out["blob"]) == (1, True, b"x")
