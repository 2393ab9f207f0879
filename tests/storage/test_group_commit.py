"""The pipelined group committer: shared commits, one bad message costs only its own acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import wait

import pytest

from postroom.app import App
from postroom.model import Envelope
from postroom.storage import inbound
from postroom.storage.blobs import FileBlobStore
from postroom.storage.intake import GroupCommitter, IntakeItem
from postroom.testing import make_eml

POISON = b"poison"


class FailingOn(FileBlobStore):
    """A real blob store that refuses one payload, as a full or broken disk would."""

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        if any(POISON in data for data in items):
            raise OSError("disk says no")
        return super().put_many(items)


def _item(raw: bytes, tenant_id: int) -> IntakeItem:
    return IntakeItem(raw=raw, envelope=Envelope("x@example.com", ("inbox@acme.mail.test",)),
                      tenant_rcpts={tenant_id: ("inbox@acme.mail.test",)})


def test_batch_with_a_failing_blob_acknowledges_the_others(app: App, tenant_ids: dict[str, int], tmp_path) -> None:
    blobs = FailingOn(tmp_path / "blobs")
    committer = GroupCommitter(app.sessions, blobs)
    raws = [make_eml(subject=f"n{n}", body=("poison\n" if n == 7 else "fine\n")) for n in range(40)]
    futures = [committer.submit(_item(raw, tenant_ids["acme"])) for raw in raws]
    wait(futures, timeout=30)
    committer.close()
    with pytest.raises(OSError):
        futures[7].result()
    ok = [f.result() for n, f in enumerate(futures) if n != 7]
    assert len({ids[0] for ids in ok}) == 39
    with app.session() as session:
        rows = inbound.list_inbound(session, limit=100)
    assert len(rows) == 39  # nothing for the refused message
    assert {blobs.get(r.sha256) for r in rows} == {raw for n, raw in enumerate(raws) if n != 7}


def test_same_message_twice_is_one_row_and_both_get_its_id(app: App, tenant_ids: dict[str, int]) -> None:
    committer = GroupCommitter(app.sessions, app.blobs)
    raw = make_eml(subject="twice")
    first, second = (committer.submit(_item(raw, tenant_ids["acme"])) for _ in range(2))
    assert first.result(10) == second.result(10)
    committer.close()
