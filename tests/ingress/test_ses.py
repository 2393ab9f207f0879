"""SES inbound through moto's S3 and SQS servers: notifications as SES sends them (SNS-wrapped), kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import func, select

from postroom.app import App
from postroom.ingress.intake import store
from postroom.ingress.ses import SesInbound
from postroom.service import Service
from postroom.storage.tables import InboundMessage
from postroom.testing import free_port, make_eml, wait_until

REGION = "eu-west-1"
BUCKET = "ses-inbound"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=url)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=url)
    queue = sqs.create_queue(QueueName="ses-inbound", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    yield {"url": url, "s3": s3, "sqs": sqs, "queue": queue}
    server.stop()


@pytest.fixture
def ses_settings(settings, aws):
    return settings.replace(ses_inbound_queue_url=aws["queue"], ses_inbound_region=REGION,
                            ses_inbound_endpoint_url=aws["url"], ses_inbound_wait_seconds=1)


def receive(aws: dict, raw: bytes, recipients: list[str], key: str) -> None:
    """What an SES receipt rule with an S3 action and an SNS topic subscribed by the queue produces."""
    aws["s3"].put_object(Bucket=BUCKET, Key=f"inbound/{key}", Body=raw)
    note = {"notificationType": "Received",
            "mail": {"source": "jean@example.com", "messageId": key, "destination": recipients},
            "receipt": {"recipients": recipients, "spfVerdict": {"status": "PASS"},
                        "action": {"type": "S3", "topicArn": "arn:aws:sns:eu-west-1:123456789012:ses",
                                   "bucketName": BUCKET, "objectKeyPrefix": "inbound", "objectKey": f"inbound/{key}"}}}
    aws["sqs"].send_message(QueueUrl=aws["queue"], MessageBody=json.dumps({
        "Type": "Notification", "MessageId": f"sns-{key}", "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses",
        "Subject": "Amazon SES Email Receipt Notification", "Message": json.dumps(note)}))


def _rows(app, status: str | None = None) -> int:
    query = select(func.count()).select_from(InboundMessage).where(InboundMessage.source == "ses")
    if status:
        query = query.where(InboundMessage.status == status)
    with app.session() as session:
        return session.scalar(query)


def _queue_empty(aws: dict) -> bool:
    attributes = aws["sqs"].get_queue_attributes(QueueUrl=aws["queue"], AttributeNames=["All"])["Attributes"]
    return attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_ses_mail_becomes_a_conversation_message_and_the_notification_is_deleted(ses_settings, tenant_ids,
                                                                                 aws) -> None:
    receive(aws, make_eml(subject="via ses", to="support@acme.mail.test"), ["support@acme.mail.test"], "m1")
    receive(aws, make_eml(to="someone@elsewhere.example"), ["someone@elsewhere.example"], "m2")  # not ours
    service = Service(ses_settings).start()
    try:
        wait_until(lambda: _rows(service.app, "done") == 1, timeout=30)
        wait_until(lambda: _queue_empty(aws), timeout=10)
        with service.app.session() as session:
            row = session.scalar(select(InboundMessage))
        assert (row.subject, row.rcpt_tos, row.mail_from, row.tenant_id) == (
            "via ses", ["support@acme.mail.test"], "jean@example.com", tenant_ids["acme"])
    finally:
        service.stop()


def test_a_crash_between_store_and_delete_is_redelivered_and_kept_once(app, ses_settings, tenant_ids, aws) -> None:
    for n in range(3):
        receive(aws, make_eml(subject=f"crash {n}"), ["inbox@acme.mail.test"], f"c{n}")
    app.settings = ses_settings
    consumer = SesInbound(app, None)
    taken = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    store(app, [consumer._item(message) for message in taken])  # stored, then the process "dies" before the delete
    assert _rows(app) == len(taken) > 0
    wait_until(lambda: consumer.poll_once() == 0 and _queue_empty(aws), timeout=20)
    assert _rows(app) == 3


def test_kill_9_of_the_consumer_loses_and_duplicates_nothing(settings, ses_settings, tenant_ids, aws, run) -> None:
    count = 40
    for n in range(count):
        receive(aws, make_eml(subject=f"kill {n}", message_id=f"<kill-{n}@example.com>"), ["inbox@acme.mail.test"],
                f"k{n}")
    env = {**run.env, "POSTROOM_SES_INBOUND_QUEUE_URL": aws["queue"], "POSTROOM_SES_INBOUND_REGION": REGION,
           "POSTROOM_SES_INBOUND_ENDPOINT_URL": aws["url"], "POSTROOM_SES_INBOUND_WAIT_SECONDS": "1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    app = App.open(settings)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "postroom", "ses-inbound", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _rows(app) > 0, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = subprocess.Popen([sys.executable, "-m", "postroom", "ses-inbound", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _rows(app) >= count and _queue_empty(aws), timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert _rows(app) == count
    finally:
        app.close()
