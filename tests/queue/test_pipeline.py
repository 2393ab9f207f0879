"""The pipeline through the configured broker (in-process, Redis or RabbitMQ)."""

from __future__ import annotations

from sqlalchemy import delete, select

from postroom import flow
from postroom.gateway.ingest import ingest
from postroom.queue.actors import Pipeline
from postroom.queue.broker import make_broker
from postroom.storage import inbound
from postroom.storage.tables import BlobData, InboundMessage
from postroom.testing import make_eml, wait_until


def _store(app, tenant_id, tmp_path, count=3):
    folder = tmp_path / "mail"
    folder.mkdir(exist_ok=True)
    for n in range(count):
        (folder / f"{n}.eml").write_bytes(make_eml(subject=f"queued {n}"))
    return ingest(app.sessions, app.blobs, tenant_id=tenant_id, inbox_address="inbox@acme.mail.test",
                  path=folder).ids


def _statuses(app):
    with app.session() as session:
        return dict(session.execute(select(InboundMessage.id, InboundMessage.status)).tuples().all())


def test_ids_sent_several_times_are_processed_once(app, settings, tenant_ids, tmp_path):
    ids = _store(app, tenant_ids["acme"], tmp_path)
    pipeline = Pipeline(app, make_broker(settings))
    pipeline.broker.flush_all()
    try:
        pipeline.dispatch([*ids, *ids, *ids])
        pipeline.start_worker(2)
        wait_until(lambda: set(_statuses(app).values()) == {"done"})
        pipeline.join()
    finally:
        pipeline.stop()
    with app.session() as session:
        assert [inbound.get_inbound(session, i).attempts for i in ids] == [1, 1, 1]


def test_a_failing_stage_is_retried_then_marked_failed_with_its_error(app, tenant_ids, tmp_path):
    [inbound_id] = _store(app, tenant_ids["acme"], tmp_path, count=1)
    with app.session() as session:
        sha = inbound.get_inbound(session, inbound_id).sha256
    raw = app.blobs.get(sha)
    with app.engine.begin() as conn:  # a small message: its blob is a blob_data row (tiered_blobs)
        assert conn.execute(delete(BlobData).where(BlobData.sha256 == sha)).rowcount == 1
    for _ in range(app.settings.max_attempts - 1):
        try:
            flow.process_inbound(app, inbound_id)
        except flow.RetryLater:
            pass
        else:
            raise AssertionError("a missing blob must make the stage fail")
    with app.session() as session:
        record = inbound.get_inbound(session, inbound_id)
    assert record.status == "retrying" and "NotFound" in (record.last_error or "")
    assert flow.process_inbound(app, inbound_id) == "failed"
    assert app.blobs.put(raw) == sha  # back, in the file store this time: readers find it in either tier
    with app.session() as session:
        inbound.set_status(session, inbound_id, "pending", allowed_from=("failed",))
    assert flow.process_inbound(app, inbound_id) == "done"


def test_rows_stuck_by_a_broker_outage_are_swept_up(app, settings, tenant_ids, tmp_path):
    ids = _store(app, tenant_ids["acme"], tmp_path, count=2)
    pipeline = Pipeline(app, make_broker(settings))
    pipeline.broker.flush_all()
    try:
        pipeline.start_worker(1)
        assert pipeline.recover() == 2
        wait_until(lambda: [_statuses(app)[i] for i in ids] == ["done", "done"])
        assert pipeline.recover() == 0
    finally:
        pipeline.stop()


def test_the_claim_brings_its_own_raw_message_only_when_inline(app, tenant_ids, tmp_path):
    """Each small row's claim returns exactly its own bytes (other blobs are stored beside it); a message kept in
    the file store, none: the pipeline then reads it there."""
    folder = tmp_path / "mail"
    folder.mkdir()
    large = make_eml(subject="large", body="x" * (app.settings.inline_blob_max + 1))
    for n, raw in enumerate([make_eml(subject="small 0"), make_eml(subject="small 1"), large]):
        (folder / f"{n}.eml").write_bytes(raw)
    ids = sorted(ingest(app.sessions, app.blobs, tenant_id=tenant_ids["acme"], inbox_address="inbox@acme.mail.test",
                        path=folder).ids)
    with app.engine.begin() as conn:
        claims = [inbound.claim_with_raw(conn, inbound_id) for inbound_id in ids]
    raws = [raw for _, raw in claims]
    assert raws[0] is not None and raws[1] is not None and raws[0] != raws[1]
    assert [raw == app.blobs.get(record.sha256) for record, raw in claims[:2]] == [True, True]
    assert raws[2] is None and large in app.blobs.get(claims[2][0].sha256)
