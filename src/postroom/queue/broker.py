"""Pick the dramatiq broker from a URL: in-process, Redis or RabbitMQ.

An empty URL gives dramatiq's in-memory broker with worker threads inside the
``postroom serve`` process: the database stays the record, so nothing is
lost when the process dies (rows are re-enqueued on start).
"""

from __future__ import annotations

from dramatiq import Broker
from dramatiq.brokers.stub import StubBroker

from postroom.errors import ConfigError
from postroom.settings import Settings


def make_broker(settings: Settings) -> Broker:
    """The broker named by ``settings.broker_url``; Redis keys live under ``broker_namespace``."""
    url = settings.broker_url
    if not url:
        broker = StubBroker()
        broker.emit_after("process_boot")
        return broker
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url, namespace=settings.broker_namespace)
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    raise ConfigError(f"POSTROOM_BROKER_URL {url!r}: use empty (in-process), redis://… or amqp://…")
