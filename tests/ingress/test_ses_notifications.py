"""Reading SES receipt notifications as SQS delivers them: raw or SNS-wrapped, and every shape refused."""

from __future__ import annotations

import json

import pytest

from postroom.ingress.ses import Notification, parse_notification

ACTION = {"type": "S3", "bucketName": "ses-inbound", "objectKeyPrefix": "inbound", "objectKey": "inbound/abc"}
RECEIVED = {"notificationType": "Received",
            "mail": {"source": "jean@example.com", "messageId": "abc", "destination": ["inbox@acme.mail.test"]},
            "receipt": {"recipients": ["support@acme.mail.test"], "action": ACTION}}


def sns(message: object) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": message})


@pytest.mark.parametrize("body", [json.dumps(RECEIVED), sns(json.dumps(RECEIVED))], ids=["raw", "sns"])
def test_a_received_notification_names_the_object_and_the_receipt_recipients(body: str) -> None:
    assert parse_notification(body) == Notification(bucket="ses-inbound", key="inbound/abc",
                                                    recipients=("support@acme.mail.test",),
                                                    sender="jean@example.com", ses_id="abc")


def test_without_receipt_recipients_the_mail_destination_counts_and_missing_fields_are_empty() -> None:
    note = {"notificationType": "Received", "mail": {"destination": ["inbox@acme.mail.test"]},
            "receipt": {"action": ACTION}}
    assert parse_notification(json.dumps(note)) == Notification("ses-inbound", "inbound/abc",
                                                                ("inbox@acme.mail.test",), "", "")
    bare = {"notificationType": "Received", "receipt": {"recipients": [], "action": ACTION}, "mail": None}
    assert parse_notification(json.dumps(bare)) == Notification("ses-inbound", "inbound/abc", (), "", "")


@pytest.mark.parametrize("body", [json.dumps({"notificationType": "AMAZON_SES_SETUP_NOTIFICATION"}),
                                  sns(json.dumps({"notificationType": "AMAZON_SES_SETUP_NOTIFICATION"}))])
def test_the_setup_notification_is_done_with(body: str) -> None:
    assert parse_notification(body) is None


@pytest.mark.parametrize(("body", "error"), [
    ("{not json", "not JSON: "),
    (sns("{not json"), "not JSON: "),
    ("[1, 2]", "not a JSON object"),
    (sns(json.dumps("text")), "not a JSON object"),
    (sns({"notificationType": "Received"}), "notificationType None is not 'Received'"),
    (json.dumps({"notificationType": "Bounce"}), "notificationType 'Bounce' is not 'Received'"),
    (json.dumps({**RECEIVED, "receipt": None}), "the receipt rule's action is not S3"),
    (json.dumps({**RECEIVED, "receipt": {"action": {**ACTION, "type": "Lambda"}}}), "the receipt rule's action"),
    (json.dumps({**RECEIVED, "receipt": {"action": {**ACTION, "bucketName": ""}}}), "the receipt rule's action"),
    (json.dumps({**RECEIVED, "receipt": {"action": {"type": "S3", "bucketName": "b"}}}), "the receipt rule's action"),
])
def test_anything_else_is_refused_to_stay_in_the_queue(body: str, error: str) -> None:
    with pytest.raises(ValueError, match="^" + error):
        parse_notification(body)
