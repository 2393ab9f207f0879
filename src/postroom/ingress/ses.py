"""Amazon SES inbound: a receipt rule writes each message to S3 and notifies SQS (directly or SNS → SQS).

The consumer long-polls the queue, reads each notification, fetches the
object, stores it durably through the intake, and only then deletes the SQS
message. A crash between the store and the delete means SQS delivers the
notification again after its visibility timeout; the per-tenant SHA-256 dedup
turns the second store into the same row, so the message is kept exactly once.
A notification that cannot be read is left in the queue (set a redrive policy:
it ends in the dead-letter queue, where operators see it); one for recipients
that are not ours is logged, counted and deleted.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from postroom import metrics
from postroom.app import App
from postroom.errors import ConfigError
from postroom.ingress.intake import Dispatch, hand_on, item_for, store, tenant_rcpts
from postroom.storage.intake import IntakeItem

log = logging.getLogger(__name__)

SOURCE = "ses"
BATCH = 10  # SQS's maximum per receive


@dataclass(frozen=True)
class Notification:
    """What postroom needs from an SES "Received" notification with an S3 action."""

    bucket: str
    key: str
    recipients: tuple[str, ...]
    sender: str
    ses_id: str


def parse_notification(body: str) -> Notification | None:
    """The notification in an SQS body (raw, or wrapped by SNS); None for SES's setup notification.

    Raises ValueError for anything else: that message is not ours to drop.
    """
    data = _unwrapped(body)
    kind = data.get("notificationType")
    if kind == "AMAZON_SES_SETUP_NOTIFICATION":
        return None
    if kind != "Received":
        raise ValueError(f"notificationType {kind!r} is not 'Received'")
    return _received(data)


def _unwrapped(body: str) -> dict[str, Any]:
    """The JSON object SES wrote, taken out of the SNS envelope when it came through SNS."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _received(data: dict[str, Any]) -> Notification:
    """Where the receipt rule's S3 action put the message, and for whom."""
    receipt, mail = data.get("receipt") or {}, data.get("mail") or {}
    action = receipt.get("action") or {}
    if action.get("type") != "S3" or not action.get("bucketName") or not action.get("objectKey"):
        raise ValueError("the receipt rule's action is not S3 (postroom reads the message from the bucket)")
    return Notification(bucket=action["bucketName"], key=action["objectKey"],  # the full key, prefix included
                        recipients=tuple(receipt.get("recipients") or mail.get("destination") or ()),
                        sender=str(mail.get("source") or ""), ses_id=str(mail.get("messageId") or ""))


class SesInbound:
    """Consumes the notification queue on a thread (``postroom serve``) or in the foreground (``poll_once``)."""

    def __init__(self, app: App, dispatch: Dispatch | None) -> None:
        settings = app.settings
        if not settings.ses_inbound_queue_url:
            raise ConfigError("set POSTROOM_SES_INBOUND_QUEUE_URL to the SQS queue of the SES receipt notifications")
        self.app = app
        self.dispatch = dispatch
        self.queue_url = settings.ses_inbound_queue_url
        self.wait = max(0, min(20, settings.ses_inbound_wait_seconds))
        import boto3  # here, not at import time: every CLI command that lists tenants would pay for it
        from botocore.config import Config

        options: dict[str, Any] = {"region_name": settings.ses_inbound_region or None,
                                   "endpoint_url": settings.ses_inbound_endpoint_url or None,
                                   "config": Config(retries={"mode": "standard"}, read_timeout=self.wait + 10)}
        self.sqs = boto3.client("sqs", **options)
        self.s3 = boto3.client("s3", **options)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="postroom-ses-inbound", daemon=True)

    def start(self) -> SesInbound:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.wait + 15)

    def run_forever(self, stop: threading.Event) -> None:
        self._stop = stop
        self._run()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.poll_once()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(60.0, 2.0 ** failures)
                log.error("SES inbound: %s (retrying in %.0f s)", exc, delay)
                self._stop.wait(delay)

    def poll_once(self) -> int:
        """Receive up to 10 notifications, store their messages, delete what is stored; how many were stored."""
        received = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=BATCH,
                                            WaitTimeSeconds=self.wait).get("Messages", [])
        items: list[IntakeItem] = []
        finished: list[str] = []  # receipt handles to delete once the batch is stored
        for message in received:
            item = self._item(message)
            if item is not False:
                finished.append(message["ReceiptHandle"])
                if item is not None:
                    items.append(item)
        ids = store(self.app, items)  # raises: nothing is deleted, SQS delivers them again
        self._delete(finished)
        hand_on(self.dispatch, (i for row_ids in ids for i in row_ids))
        return len(items)

    def _item(self, message: dict) -> IntakeItem | None | bool:
        """The message to store; None when the notification is done with (setup, not ours); False to leave it."""
        try:
            note = parse_notification(message.get("Body", ""))
        except ValueError as exc:
            log.error("SES inbound: SQS message %s left in the queue: %s", message.get("MessageId"), exc)
            metrics.REFUSED.labels("ses_bad_notification").inc()
            return False
        if note is None:
            return None
        rcpts = tenant_rcpts(self.app, note.recipients)
        if not rcpts:
            log.warning("SES inbound: message %s for %s: no recipient is ours, dropped", note.ses_id,
                        ", ".join(note.recipients))
            metrics.REFUSED.labels("ses_unknown_recipient").inc()
            return None
        try:
            raw = self.s3.get_object(Bucket=note.bucket, Key=note.key)["Body"].read()
        except Exception as exc:  # S3 down or object missing: SQS redelivers, the DLQ keeps what never works
            log.error("SES inbound: cannot read s3://%s/%s: %s", note.bucket, note.key, exc)
            return False
        return item_for(raw, source=SOURCE, tenant_rcpts=rcpts, peer="ses", mail_from=note.sender)

    def _delete(self, handles: list[str]) -> None:
        for start in range(0, len(handles), BATCH):
            entries = [{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles[start:start + BATCH])]
            failed = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
            for failure in failed:  # stored already: a redelivery is deduplicated
                log.warning("SES inbound: could not delete an SQS message (it will come back, deduplicated): %s",
                            failure.get("Message") or failure.get("Code"))
