"""Amazon SES (API v2) raw sending with boto3.

botocore's own retries are switched off: a retry after a read timeout could
send twice, and postroom's delivery loop already retries with backoff and
records each attempt. SES has no idempotency key, so like SMTP the request is
the commit point.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from postroom.errors import ConfigError
from postroom.outbound.transports.base import (
    Outgoing,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
    UnknownOutcome,
)

TEMPORARY_CODES = frozenset({
    "Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServiceError",
    "SendingPausedException", "RequestTimeout",
})


@dataclass
class SesTransport:
    region: str
    endpoint_url: str | None = None
    configuration_set: str | None = None
    name: str = "ses"
    idempotent: bool = False
    _client: Any = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SesTransport:
        """``ses://eu-west-1?endpoint_url=http://127.0.0.1:5000&configuration_set=x``."""
        parsed = urlparse(url)
        if not parsed.hostname:
            raise ConfigError(f"POSTROOM_OUTBOUND_URL {url!r}: give the region, e.g. ses://eu-west-1")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        endpoint = query.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_SESV2") or None
        return cls(region=parsed.hostname, endpoint_url=endpoint, configuration_set=query.get("configuration_set"))

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("sesv2", region_name=self.region, endpoint_url=self.endpoint_url,
                                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                      connect_timeout=10, read_timeout=60))
        return self._client

    def send(self, message: Outgoing, on_commit: Callable[[], None]) -> SendResult:
        from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

        request: dict[str, Any] = {
            "FromEmailAddress": message.mail_from,
            "Destination": {"ToAddresses": list(message.recipients)},
            "Content": {"Raw": {"Data": message.raw}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        client = self.client
        on_commit()
        try:
            reply = client.send_email(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) or None
            text = f"{code}: {error.get('Message', '')}"
            if code in TEMPORARY_CODES or (status or 0) >= 500 or status == 429:
                raise TemporaryFailure(text, status) from exc
            raise PermanentFailure(text, status) from exc
        except EndpointConnectionError as exc:
            raise TemporaryFailure(f"cannot reach SES: {exc}") from exc
        except (ReadTimeoutError, ConnectionClosedError) as exc:
            raise UnknownOutcome(f"SES request sent but no answer: {exc}") from exc
        return SendResult(provider_id=reply.get("MessageId"), response="SES accepted", code=200)
